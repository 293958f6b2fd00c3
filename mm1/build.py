"""Build the tokenizer and model of a config (the one place that wires them together)."""
from __future__ import annotations

import torch

from mm1.config.schema import Config
from mm1.model.decoder import embedding_param_count
from mm1.model.mm1 import MM1Model
from mm1.model.moe import inactive_expert_params
from mm1.tokenizer import IMAGE_TOKEN, build_tokenizer


def vocab_size_for(cfg: Config, tokenizer) -> int:
    size = len(tokenizer)
    if cfg.model.decoder.vocab_size is not None:
        size = max(size, cfg.model.decoder.vocab_size)
    return 64 * -(-size // 64)  # round up: friendlier matmul shapes


def build_model(cfg: Config, tokenizer, device: str | torch.device = "cpu", decoder_hf_cfg=None) -> MM1Model:
    with torch.device(device):
        return MM1Model(
            cfg.model, vocab_size_for(cfg, tokenizer), tokenizer.convert_tokens_to_ids(IMAGE_TOKEN), decoder_hf_cfg
        )


def build(cfg: Config, device: str | torch.device = "cpu"):
    tokenizer = build_tokenizer(cfg.model.tokenizer)
    return tokenizer, build_model(cfg, tokenizer, device)


def param_counts(model: MM1Model) -> dict[str, int]:
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    decoder = count(model.decoder)
    return {
        "vision": count(model.vision),
        "connector": count(model.connector),
        "decoder": decoder,
        "decoder_non_embedding": decoder - embedding_param_count(model.decoder),
        "decoder_active": decoder - inactive_expert_params(model.decoder),  # used per token (MoE: top-k experts)
        "total": count(model),
        "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
    }
