"""Config fields that carry their own rule: the helper every config dataclass uses, the schema's and
the components' own (connectors, MoE) alike. Imports nothing of mm1."""
from __future__ import annotations

from dataclasses import field

RULES = (">0", ">=0", "[0,1]", "[0,1)")


def checked(default, rule: str, factory: bool = False):
    """A field whose numbers (a number, or each number of a list or mapping) must satisfy `rule`, one of
    RULES; mm1.config.validate.check_fields checks it, and that every number of every field is finite."""
    assert rule in RULES, rule
    if factory:
        return field(default_factory=default, metadata={"allowed": rule})
    return field(default=default, metadata={"allowed": rule})
