"""`mm1 info`: parameter counts and image-token budget, built on the meta device (no memory)."""
from __future__ import annotations

import copy

import torch

from mm1.build import param_counts
from mm1.config import Config
from mm1.model.mm1 import MM1Model


def _vocab_size(cfg: Config) -> int:
    if cfg.model.decoder.vocab_size is not None:
        return cfg.model.decoder.vocab_size
    from mm1.build import vocab_size_for
    from mm1.tokenizer import build_tokenizer

    return vocab_size_for(cfg, build_tokenizer(cfg.model.tokenizer))


def meta_model(cfg: Config) -> MM1Model:
    cfg = copy.deepcopy(cfg)
    cfg.model.vision.pretrained = None  # no weights are read on the meta device
    decoder_hf_cfg = None
    if cfg.model.decoder.pretrained:
        from transformers import AutoConfig

        decoder_hf_cfg = AutoConfig.from_pretrained(cfg.model.decoder.pretrained, local_files_only=True)
    with torch.device("meta"):
        return MM1Model(cfg.model, _vocab_size(cfg), image_token_id=0, decoder_hf_cfg=decoder_hf_cfg)


def info(cfg: Config) -> dict:
    model = meta_model(cfg)
    v = cfg.model.vision
    return {
        "params": param_counts(model),
        "tokens_per_image": cfg.model.connector.num_tokens,
        "patches_per_image": model.vision.num_patches,
        "image_size": v.image_size,
        "connector": cfg.model.connector.kind,
        "seq_len": cfg.data.seq_len,
        "max_images_per_seq": cfg.data.max_images_per_seq,
    }


def format_info(result: dict) -> str:
    p = result["params"]
    lines = [f"{'part':<24}{'parameters':>16}"]
    for key in ("vision", "connector", "decoder", "decoder_non_embedding", "total", "trainable"):
        lines.append(f"{key:<24}{p[key]:>16,}  ({p[key] / 1e6:,.1f}M)")
    lines += [
        f"image: {result['image_size']} px, {result['patches_per_image']} patches -> "
        f"{result['tokens_per_image']} tokens ({result['connector']})",
        f"sequence: {result['seq_len']} tokens, up to {result['max_images_per_seq']} images",
    ]
    return "\n".join(lines)
