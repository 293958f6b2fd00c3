"""Image encoder: an open_clip VisionTransformer that returns patch tokens.

Built from an open_clip model name (`ViT-L-14`, `ViT-H-14-378-quickgelu`, ...)
or from explicit dims. Only the vision tower is built (no text tower). Weights
come from a local checkpoint file or an open_clip pretrained tag (resolved by
open_clip's own cache; nothing here downloads unless the user asks for a tag
that is not cached). The positional embedding is interpolated when
`image_size` differs from the checkpoint's.

Shapes: B images, P = grid * grid patches, D = width.
"""
from __future__ import annotations

import os
import re
import types

import open_clip
import torch
from open_clip.model import CLIPVisionCfg, _build_vision_tower, resize_pos_embed
from torch import nn

from mm1.config.schema import VisionConfig
from mm1.errors import ConfigError

# open_clip's CLIP normalisation, used by every CLIP / DFN tag.
IMAGE_MEAN = (0.48145466, 0.4578275, 0.40821073)
IMAGE_STD = (0.26862954, 0.26130258, 0.27577711)


class VisionEncoder(nn.Module):
    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.cfg = cfg
        self.grid = cfg.image_size // cfg.patch_size
        self.width = cfg.width
        self.visual = _build_tower(cfg)
        self.layer_index = cfg.feature_layer % cfg.layers
        # Drop the blocks after the feature layer and the pooled head: they never run.
        self.visual.prune_intermediate_layers([self.layer_index], prune_norm=True, prune_head=True)
        if cfg.pretrained:
            load_pretrained(self.visual, cfg)
        if cfg.freeze:
            self.requires_grad_(False)

    @property
    def num_patches(self) -> int:
        return self.grid * self.grid

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) pixels -> (B, P, D) patch features, CLS token dropped.

        uint8 pixels (what mm1's loaders produce) are CLIP-normalised here, on the
        model's device; floating-point input is taken as already normalised.
        """
        if images.dtype == torch.uint8:
            images = normalise_pixels(images)
        out = self.visual.forward_intermediates(
            images, indices=[self.layer_index], stop_early=True, intermediates_only=True, output_fmt="NLC"
        )
        return out["image_intermediates"][0]  # (B, P, D)


def normalise_pixels(pixels: torch.Tensor) -> torch.Tensor:
    """(..., 3, H, W) uint8 -> float32 (x / 255 - mean) / std per channel."""
    mean = torch.tensor(IMAGE_MEAN, device=pixels.device).view(3, 1, 1)
    std = torch.tensor(IMAGE_STD, device=pixels.device).view(3, 1, 1)
    return pixels.float().div_(255.0).sub_(mean).div_(std)


def _build_tower(cfg: VisionConfig) -> nn.Module:
    vision_cfg, embed_dim, quick_gelu = vision_cfg_of(cfg)
    return _build_vision_tower(embed_dim, CLIPVisionCfg(**vision_cfg), quick_gelu=quick_gelu)


def vision_cfg_of(cfg: VisionConfig) -> tuple[dict, int, bool]:
    """open_clip's vision-tower settings for `cfg`: (CLIPVisionCfg fields, embed_dim, quick_gelu)."""
    if cfg.name is not None:
        model_cfg = open_clip.get_model_config(cfg.name)
        vision_cfg = dict(model_cfg["vision_cfg"], image_size=cfg.image_size)
        return vision_cfg, model_cfg["embed_dim"], model_cfg.get("quick_gelu", False)
    vision_cfg = dict(
        image_size=cfg.image_size, patch_size=cfg.patch_size, width=cfg.width,
        layers=cfg.layers, head_width=cfg.width // cfg.heads, mlp_ratio=cfg.mlp_ratio,
    )
    return vision_cfg, cfg.width, False


def load_pretrained(visual: nn.Module, cfg: VisionConfig) -> list[str]:
    """Load the (pruned) tower's weights from a local checkpoint file, or an open_clip tag from open_clip's
    cache. What the tower does not use (the text tower, the projection head, the final norm, the blocks
    after the feature layer) is ignored and said so; the visual.* keys ignored are returned. A weight of another
    shape than the tower's, or one the file lacks, is a ConfigError naming it."""
    path = _checkpoint_path(cfg)
    return load_visual_weights(visual, _read_state_dict(path), f"model.vision.pretrained: {path!r}")


def load_visual_weights(visual: nn.Module, full: dict, what: str) -> list[str]:
    """The `visual.*` entries of an open_clip state dict into the (pruned) tower, positional embedding resized
    to its grid; the rest ignored and named. `what` names the weights in messages and errors."""
    state = {k: v for k, v in full.items() if k.startswith("visual.")}
    others = len(full) - len(state)  # the text tower, logit scale, ...: not an image tower's
    if not state:
        raise ConfigError(f"{what} holds no 'visual.*' weights")
    resize_pos_embed(state, types.SimpleNamespace(visual=visual))
    state = {k[len("visual."):]: v for k, v in state.items()}
    own = visual.state_dict()
    wrong = [f"{k} is {tuple(v.shape)} there, {tuple(own[k].shape)} here" for k, v in state.items()
             if k in own and v.shape != own[k].shape]
    if wrong:
        raise ConfigError(f"{what} does not fit the tower of model.vision: {wrong[0]}"
                          f"{f' (and {len(wrong) - 1} more)' if len(wrong) > 1 else ''}; set model.vision.name "
                          f"to the checkpoint's open_clip model, or the dims it was trained with")
    missing = [k for k in own if k not in state]
    if missing:
        raise ConfigError(f"{what} lacks weights for {missing[:5]}")
    visual.load_state_dict({k: state[k] for k in own}, strict=True)
    ignored = sorted(k for k in state if k not in own)
    if ignored or others:
        outside = f"{others} outside visual.* (text tower, logit scale)" if others else ""
        print(f"mm1: {what}: loaded {len(own)} tensors of the image tower; ignored what it does not use: "
              f"{', '.join(filter(None, [_summary(ignored), outside]))}")
    return ignored


def _checkpoint_path(cfg: VisionConfig) -> str:
    """A local file as given, or an open_clip tag's file in open_clip's cache."""
    path = cfg.pretrained
    if os.path.isfile(path):
        return path
    if cfg.name is None:
        raise ConfigError(f"model.vision.pretrained: {path!r} is not a file, and a tag needs model.vision.name")
    tag_cfg = open_clip.pretrained.get_pretrained_cfg(cfg.name, path)
    if not tag_cfg:
        tags = open_clip.pretrained.list_pretrained_tags_by_model(cfg.name)
        raise ConfigError(f"model.vision.pretrained: {path!r} is neither a file nor a tag of {cfg.name}; "
                          f"allowed tags: {', '.join(tags)}")
    return open_clip.pretrained.download_pretrained(tag_cfg)


def _summary(keys: list[str]) -> str:
    """`proj, ln_post.weight, transformer.resblocks.{4..11}.*`: ignored keys, the pruned blocks in one entry."""
    blocks = sorted({int(m.group(1)) for k in keys if (m := re.match(r"transformer\.resblocks\.(\d+)\.", k))})
    named = [k for k in keys if not k.startswith("transformer.resblocks.")]
    if blocks:
        named.append(f"transformer.resblocks.{{{blocks[0]}..{blocks[-1]}}}.* (after model.vision.feature_layer)")
    return ", ".join(named)


def _read_state_dict(path: str) -> dict:
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path)
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    return {k.removeprefix("module."): v for k, v in state.items()}
