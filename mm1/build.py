"""Build the tokenizer and model of a config (the one place that wires them together)."""
from __future__ import annotations

from pathlib import Path

import torch

from mm1.config.schema import Config
from mm1.config.tree import ConfigError
from mm1.model.decoder import embedding_param_count
from mm1.model.mm1 import MM1Model
from mm1.model.moe import inactive_expert_params
from mm1.tokenizer import END_OF_CHUNK, IMAGE_TOKEN, build_tokenizer, load_tokenizer


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
    check_tokenizer_fits(cfg, tokenizer)
    return tokenizer, build_model(cfg, tokenizer, device)


MIN_TABLE_USE = 0.9  # a tokenizer for a decoder fills at least this share of its embedding table (padding aside)


def _base_vocab(tokenizer) -> dict[str, int]:
    """The tokenizer's vocabulary without the tokens mm1 adds (image placeholder, end of chunk)."""
    return {t: i for t, i in tokenizer.get_vocab().items() if t not in (IMAGE_TOKEN, END_OF_CHUNK)}


def check_tokenizer_fits(cfg: Config, tokenizer) -> None:
    """ConfigError (exit 2) when a pretrained decoder would train with a tokenizer that is not its own: one
    whose vocabulary differs from the tokenizer saved with the decoder or, when none is saved there, one
    larger than its embedding table or filling less than MIN_TABLE_USE of it."""
    d, t = cfg.model.decoder, cfg.model.tokenizer
    if not d.pretrained or (t.kind == "pretrained" and Path(t.path).resolve() == Path(d.pretrained).resolve()):
        return
    from transformers import AutoConfig

    rows = AutoConfig.from_pretrained(d.pretrained, local_files_only=True).get_text_config().vocab_size
    vocab = _base_vocab(tokenizer)
    what = f"model.tokenizer ({t.kind}{f' {t.path}' if t.kind == 'pretrained' else ''}, {len(vocab)} tokens)"
    try:
        own = _base_vocab(load_tokenizer(d.pretrained))
    except (OSError, ValueError):  # the decoder folder holds no tokenizer
        own = None
    if own is not None and own != vocab:
        reason = f"its vocabulary is not that of the tokenizer saved with the decoder ({len(own)} tokens)"
    elif own is None and not MIN_TABLE_USE * rows <= len(vocab) <= rows:
        reason = f"it does not fit the decoder's embedding table of {rows} rows"
    else:
        return
    raise ConfigError(f"{what} does not match model.decoder.pretrained {d.pretrained!r}: {reason}. A pretrained "
                      f"decoder needs the tokenizer it was trained with: leave model.tokenizer.kind unset (or "
                      f"null) to use the decoder's own, or set model.tokenizer.kind=pretrained "
                      f"model.tokenizer.path=ITS_TOKENIZER_DIR")


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
