"""What several connectors share: the square token grid of the pooling ones, and a width that defaults
to the vision width."""
from __future__ import annotations

import math

from mm1.errors import ConfigError


def square_side(num_tokens: int, grid: int, kind: str) -> int:
    """sqrt(num_tokens), which must be a whole number no larger than the patch grid's side."""
    side = math.isqrt(num_tokens)
    if side * side != num_tokens:
        squares = ", ".join(str(s * s) for s in range(1, grid + 1))
        raise ConfigError(f"model.connector.num_tokens: {num_tokens} is not a perfect square, which {kind} needs; "
                          f"allowed: {squares}")
    if side > grid:
        raise ConfigError(f"model.connector.num_tokens: {num_tokens} needs a {side}x{side} grid but the encoder "
                          f"gives {grid}x{grid} patches; allowed: at most {grid * grid}")
    return side


def hidden_from_vision(cfg, vision_width: int) -> None:
    """`hidden` (c_abstractor, attention_pool): None means the vision width."""
    if cfg.hidden is None:
        cfg.hidden = vision_width
