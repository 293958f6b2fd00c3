"""open_clip's VisionTransformer as transformers' CLIPVisionModel: the config and the weights.

The two compute the same function when the open_clip tower is a plain pre-norm ViT (what mm1
builds from explicit dims, and open_clip's CLIP and DFN ViT names such as ViT-H-14-378-quickgelu):
conv patch embedding without bias, a class token, learned positions, ln_pre, blocks of
LayerNorm -> multi-head attention -> LayerNorm -> MLP with GELU or QuickGELU. Names map as

    conv1                      embeddings.patch_embedding
    class_embedding            embeddings.class_embedding
    positional_embedding       embeddings.position_embedding.weight
    ln_pre                     pre_layrnorm
    resblocks.i.ln_1 / ln_2    encoder.layers.i.layer_norm1 / layer_norm2
    resblocks.i.attn           encoder.layers.i.self_attn: the fused in_proj split into q, k, v
    resblocks.i.mlp.c_fc/c_proj  encoder.layers.i.mlp.fc1 / fc2

mm1 keeps only the blocks up to its feature layer (the rest never run), so the CLIP tower has
that many layers and its last hidden state is mm1's feature (post_layernorm, written with its
default ones and zeros, only normalises the pooled CLS, which Llava never reads). Anything else
(no ln_pre, LayerScale, QK-norm, scaled attention, timm or ResNet towers) raises
UnmappableVision naming what differs.
"""
from __future__ import annotations

import torch
from open_clip.transformer import LayerNorm, QuickGELU, ResidualAttentionBlock, VisionTransformer
from torch import nn
from transformers import CLIPVisionConfig

ACTIVATIONS = {nn.GELU: "gelu", QuickGELU: "quick_gelu"}  # open_clip activation -> transformers hidden_act


class UnmappableVision(ValueError):
    """The open_clip tower computes something CLIPVisionModel cannot."""

    def __init__(self, reason: str):
        super().__init__(f"model.vision: the open_clip tower cannot be written as transformers' "
                         f"CLIPVisionModel: {reason}")


def _activation(block: ResidualAttentionBlock) -> str:
    act = block.mlp.gelu
    name = ACTIVATIONS.get(type(act))
    if name is None or getattr(act, "approximate", "none") != "none":
        raise UnmappableVision(f"activation {act!r} (CLIPVisionModel's: {', '.join(c.__name__ for c in ACTIVATIONS)})")
    return name


def _eps(visual: VisionTransformer) -> float:
    norms = [m for m in visual.modules() if isinstance(m, nn.LayerNorm)]
    if any(type(m) not in (LayerNorm, nn.LayerNorm) for m in norms) or len({m.eps for m in norms}) > 1:
        raise UnmappableVision("its LayerNorms differ in kind or eps (CLIPVisionModel has one eps)")
    return norms[0].eps


def check_mappable(visual: nn.Module) -> None:
    """UnmappableVision unless `visual` is a plain open_clip ViT."""
    if type(visual) is not VisionTransformer:
        raise UnmappableVision(f"the tower is a {type(visual).__name__}, not open_clip's VisionTransformer")
    for i, block in enumerate(visual.transformer.resblocks):
        if type(block) is not ResidualAttentionBlock:
            raise UnmappableVision(f"block {i} is a {type(block).__name__} (QK-norm or scaled attention), "
                                   f"which CLIPVisionModel lacks")
        if not (isinstance(block.ls_1, nn.Identity) and isinstance(block.ls_2, nn.Identity)):
            raise UnmappableVision(f"block {i} has LayerScale (ls_init_value), which CLIPVisionModel lacks")
        _activation(block)
    if isinstance(visual.ln_pre, nn.Identity):
        raise UnmappableVision("it has no ln_pre (no_ln_pre), and CLIPVisionModel always normalises before the blocks")
    if visual.image_size[0] != visual.image_size[1] or visual.patch_size[0] != visual.patch_size[1]:
        raise UnmappableVision(f"image {visual.image_size} or patch {visual.patch_size} is not square")
    _eps(visual)


def clip_vision_config(visual: VisionTransformer) -> CLIPVisionConfig:
    check_mappable(visual)
    blocks = visual.transformer.resblocks
    return CLIPVisionConfig(
        hidden_size=visual.transformer.width,
        intermediate_size=blocks[0].mlp.c_fc.out_features,
        num_hidden_layers=len(blocks),
        num_attention_heads=blocks[0].attn.num_heads,
        image_size=visual.image_size[0],
        patch_size=visual.patch_size[0],
        hidden_act=_activation(blocks[0]),
        layer_norm_eps=_eps(visual),
    )


def _norm(prefix: str, norm: nn.LayerNorm) -> dict[str, torch.Tensor]:
    return {f"{prefix}.weight": norm.weight, f"{prefix}.bias": norm.bias}


def clip_vision_state(visual: VisionTransformer) -> dict[str, torch.Tensor]:
    """CLIPVisionModel's state dict (its own names) holding `visual`'s weights."""
    check_mappable(visual)
    width = visual.transformer.width
    out = {
        "embeddings.patch_embedding.weight": visual.conv1.weight,
        "embeddings.class_embedding": visual.class_embedding,
        "embeddings.position_embedding.weight": visual.positional_embedding,
        **_norm("pre_layrnorm", visual.ln_pre),
        # mm1 drops ln_post; CLIP's post_layernorm normalises only the pooled CLS, which Llava never reads
        "post_layernorm.weight": torch.ones(width), "post_layernorm.bias": torch.zeros(width),
    }
    for i, block in enumerate(visual.transformer.resblocks):
        at = f"encoder.layers.{i}"
        for name, w, b in zip("qkv", block.attn.in_proj_weight.chunk(3), block.attn.in_proj_bias.chunk(3)):
            out[f"{at}.self_attn.{name}_proj.weight"], out[f"{at}.self_attn.{name}_proj.bias"] = w, b
        out[f"{at}.self_attn.out_proj.weight"] = block.attn.out_proj.weight
        out[f"{at}.self_attn.out_proj.bias"] = block.attn.out_proj.bias
        out.update(_norm(f"{at}.layer_norm1", block.ln_1))
        out.update(_norm(f"{at}.layer_norm2", block.ln_2))
        out[f"{at}.mlp.fc1.weight"], out[f"{at}.mlp.fc1.bias"] = block.mlp.c_fc.weight, block.mlp.c_fc.bias
        out[f"{at}.mlp.fc2.weight"], out[f"{at}.mlp.fc2.bias"] = block.mlp.c_proj.weight, block.mlp.c_proj.bias
    return out
