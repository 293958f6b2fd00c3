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
import types

import open_clip
import torch
from open_clip.model import CLIPVisionCfg, _build_vision_tower, resize_pos_embed
from torch import nn

from mm1.config.schema import VisionConfig

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
        if cfg.pretrained:
            load_pretrained(self.visual, cfg)
        self.layer_index = cfg.feature_layer % cfg.layers
        # Drop the blocks after the feature layer and the pooled head: they never run.
        self.visual.prune_intermediate_layers([self.layer_index], prune_norm=True, prune_head=True)
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


def load_pretrained(visual: nn.Module, cfg: VisionConfig) -> None:
    """Load a local checkpoint file, or an open_clip tag from open_clip's cache."""
    path = cfg.pretrained
    if not os.path.isfile(path):
        if cfg.name is None:
            raise ValueError(f"model.vision.pretrained: {path!r} is not a file, and a tag needs model.vision.name")
        tag_cfg = open_clip.pretrained.get_pretrained_cfg(cfg.name, path)
        if not tag_cfg:
            tags = open_clip.pretrained.list_pretrained_tags_by_model(cfg.name)
            raise ValueError(f"model.vision.pretrained: {path!r} is neither a file nor a tag of {cfg.name}; "
                             f"allowed tags: {', '.join(tags)}")
        path = open_clip.pretrained.download_pretrained(tag_cfg)
    load_visual_weights(visual, _read_state_dict(path), f"model.vision.pretrained: {path!r}")


def load_visual_weights(visual: nn.Module, state: dict, what: str) -> None:
    """The `visual.*` entries of an open_clip state dict into the tower (positional embedding resized to
    its grid; heads the tower has pruned are not needed). `what` names the weights in errors."""
    state = {k: v for k, v in state.items() if k.startswith("visual.")}
    if not state:
        raise ValueError(f"{what} holds no 'visual.*' weights")
    resize_pos_embed(state, types.SimpleNamespace(visual=visual))
    missing, _ = visual.load_state_dict({k[len("visual."):]: v for k, v in state.items()}, strict=False)
    if missing:
        raise ValueError(f"{what} lacks weights for {missing[:5]}")


def _read_state_dict(path: str) -> dict:
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path)
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    return {k.removeprefix("module."): v for k, v in state.items()}
