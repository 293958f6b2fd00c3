"""Decoder: a transformers causal LM, random init from dims or a local HF directory."""
from __future__ import annotations

import transformers
from torch import nn

from mm1.config.schema import DecoderConfig

# arch name -> (transformers config class, causal-LM class)
ARCHS: dict[str, tuple[type, type]] = {
    "llama": (transformers.LlamaConfig, transformers.LlamaForCausalLM),
    "mistral": (transformers.MistralConfig, transformers.MistralForCausalLM),
    "qwen2": (transformers.Qwen2Config, transformers.Qwen2ForCausalLM),
}


def hf_config(cfg: DecoderConfig, vocab_size: int):
    """The transformers config for a random-init decoder of these dims."""
    config_cls, _ = ARCHS[cfg.arch]
    return config_cls(
        vocab_size=vocab_size,
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_kv_heads,
        max_position_embeddings=cfg.max_position_embeddings,
        tie_word_embeddings=cfg.tie_embeddings,
        rope_theta=cfg.rope_theta,
        attn_implementation="sdpa",
    )


def build_decoder(cfg: DecoderConfig, vocab_size: int, hf_cfg=None) -> nn.Module:
    """A causal LM whose embedding table holds at least `vocab_size` rows.

    `hf_cfg` (a transformers config) builds that architecture with random init,
    which is how a saved checkpoint is rebuilt without the original directory.
    """
    if hf_cfg is not None:
        return transformers.AutoModelForCausalLM.from_config(hf_cfg, attn_implementation="sdpa")
    if cfg.pretrained:
        model = transformers.AutoModelForCausalLM.from_pretrained(
            cfg.pretrained, local_files_only=True, attn_implementation="sdpa"
        )
        if model.get_input_embeddings().num_embeddings < vocab_size:
            model.resize_token_embeddings(vocab_size)
        return model
    _, model_cls = ARCHS[cfg.arch]
    return model_cls(hf_config(cfg, vocab_size))


def embedding_param_count(decoder: nn.Module) -> int:
    """Parameters of the token embedding and (if untied) the output head."""
    emb = decoder.get_input_embeddings().weight
    head = decoder.get_output_embeddings().weight
    return emb.numel() + (0 if head is emb else head.numel())
