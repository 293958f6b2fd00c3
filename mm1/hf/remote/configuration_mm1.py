"""MM1Config: LlavaConfig plus the connector that maps patch features to image tokens.

`connector` holds mm1's `model.connector` settings (kind, num_tokens and the kind's options);
`image_seq_length` is its number of tokens per image. Shipped in an exported folder by
`mm1 export --format hf`; imports only transformers.
"""
from __future__ import annotations

from huggingface_hub.dataclasses import strict
from transformers import LlavaConfig


@strict
class MM1Config(LlavaConfig):
    model_type = "mm1"

    connector: dict | None = None  # {"kind": "c_abstractor", "num_tokens": 16, "hidden": 128, "depth": 1, ...}


__all__ = ["MM1Config"]
