"""An MM1Model in transformers' Llava form: the config and the state dict.

Both export kinds share it: a standard LlavaForConditionalGeneration (mm1's `mlp` connector of
depth 2 is Llava's projector) and the shipped MM1ForConditionalGeneration (mm1.hf.remote: Llava
with mm1's connector as the projector). Llava's defaults that mm1 matches:

  vision_feature_layer = -1         the CLIP tower holds mm1's blocks up to its feature layer only
  vision_feature_select_strategy    "default": the CLS token is dropped, as mm1 drops it
  image_token_index                 the tokenizer's <image>; each image is `image_seq_length`
                                    (= mm1's tokens per image) placeholders in input_ids, replaced
                                    in order by the image's tokens, as MM1Model.splice does
"""
from __future__ import annotations

import dataclasses

import torch
from transformers import LlavaConfig

from mm1.hf.remote.configuration_mm1 import MM1Config
from mm1.hf.vision import clip_vision_config, clip_vision_state
from mm1.model.mm1 import MM1Model
from mm1.tokenizer import IMAGE_TOKEN

LLAVA, REMOTE = "llava", "remote"


class Unexportable(ValueError):
    """The model cannot be written in the Hugging Face layout; the message says what differs."""


def kind_of(model: MM1Model) -> str:
    """LLAVA for the `mlp` connector of depth 2 (Llava's projector), else REMOTE."""
    if model.cfg.decoder.moe is not None:
        raise Unexportable("model.decoder.moe: an MoE decoder has no transformers counterpart to export to")
    c = model.cfg.connector
    return LLAVA if c.kind == "mlp" and c.mlp_depth == 2 else REMOTE


def hf_config(model: MM1Model, tokenizer) -> LlavaConfig:
    """The LlavaConfig (LLAVA) or MM1Config (REMOTE) of `model`."""
    text = model.decoder.config.__class__.from_dict(model.decoder.config.to_dict())
    text.bos_token_id, text.eos_token_id, text.pad_token_id = (
        tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id)
    text._name_or_path = ""  # not the checkpoint's local decoder/ folder
    common = dict(
        vision_config=clip_vision_config(model.vision.visual), text_config=text,
        image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN), image_seq_length=model.tokens_per_image,
        vision_feature_layer=-1, vision_feature_select_strategy="default", projector_hidden_act="gelu",
        multimodal_projector_bias=True, tie_word_embeddings=text.tie_word_embeddings,
    )
    if kind_of(model) == LLAVA:
        return LlavaConfig(**common)
    return MM1Config(connector=dataclasses.asdict(model.cfg.connector), **common)


def projector_state(model: MM1Model) -> dict[str, torch.Tensor]:
    """The connector's weights under Llava's projector names (LLAVA) or its own (REMOTE)."""
    state = model.connector.state_dict()
    if kind_of(model) == LLAVA:  # proj.0 Linear, proj.1 GELU, proj.2 Linear
        return {"linear_1.weight": state["proj.0.weight"], "linear_1.bias": state["proj.0.bias"],
                "linear_2.weight": state["proj.2.weight"], "linear_2.bias": state["proj.2.bias"]}
    return state


def hf_state(model: MM1Model) -> dict[str, torch.Tensor]:
    """The state dict of the Llava-layout model holding `model`'s weights."""
    parts = {
        "model.vision_tower.": clip_vision_state(model.vision.visual),
        "model.multi_modal_projector.": projector_state(model),
        "model.language_model.": model.decoder.get_decoder().state_dict(),
    }
    out = {prefix + k: v for prefix, state in parts.items() for k, v in state.items()}
    out["lm_head.weight"] = model.decoder.get_output_embeddings().weight
    return out
