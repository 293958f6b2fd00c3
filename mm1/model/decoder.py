"""Decoder: a transformers causal LM, random init from dims or a local HF directory,
optionally with MoE feed-forwards swapped into every `moe.every`-th layer."""
from __future__ import annotations

import transformers
from torch import nn

from typing import TYPE_CHECKING

from mm1.errors import ConfigError
from mm1.model.moe import MoEConfig, MoEFeedForward

if TYPE_CHECKING:  # the config tree imports the model's registries, not the other way round
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
    With `cfg.moe` set, the dense model (random or pretrained) gets its MoE layers
    afterwards, so a dense checkpoint is upcycled and a saved MoE one is rebuilt.
    """
    model = build_dense_decoder(cfg, vocab_size, hf_cfg)
    if cfg.moe is not None:
        add_moe_layers(model, cfg.moe)
    return model


def build_dense_decoder(cfg: DecoderConfig, vocab_size: int, hf_cfg=None) -> nn.Module:
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


def add_moe_layers(model: nn.Module, moe: MoEConfig) -> None:
    """Swap the MLP of layers every-1, 2*every-1, ... for an MoE block (in place)."""
    layers = getattr(getattr(model, "model", None), "layers", None)
    if layers is None:
        raise ConfigError(f"model.decoder.moe: {type(model).__name__} has no model.layers to put MoE blocks in")
    if not 1 <= moe.every <= len(layers):
        raise ConfigError(f"model.decoder.moe.every: {moe.every} is out of range; allowed: 1..{len(layers)} "
                          f"(the decoder's layer count)")
    init_std = getattr(model.config, "initializer_range", 0.02)
    for i in range(moe.every - 1, len(layers), moe.every):
        layers[i].mlp = MoEFeedForward.from_dense(layers[i].mlp, moe, init_std)


def embedding_param_count(decoder: nn.Module) -> int:
    """Parameters of the token embedding and (if untied) the output head."""
    emb = decoder.get_input_embeddings().weight
    head = decoder.get_output_embeddings().weight
    return emb.numel() + (0 if head is emb else head.numel())
