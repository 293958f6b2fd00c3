"""Derived values, computed after overrides so that they are never stale."""
from __future__ import annotations

import math

from mm1.config.schema import Config, VisionConfig
from mm1.config.tree import ConfigError
from mm1.model.connectors import CONNECTORS


def open_clip_vision_dims(name: str) -> dict:
    """The vision-tower dims of an open_clip model name, from open_clip's own config files."""
    import open_clip

    model_cfg = open_clip.get_model_config(name)
    if model_cfg is None:
        known = [m for m in open_clip.list_models() if m.startswith("ViT")]
        raise ConfigError(
            f"model.vision.name: unknown open_clip model {name!r}; allowed: {', '.join(known)}"
        )
    vc = model_cfg["vision_cfg"]
    if "timm_model_name" in vc or isinstance(vc.get("layers"), (list, tuple)):
        raise ConfigError(f"model.vision.name: {name!r} is not an open_clip VisionTransformer")
    image_size = vc.get("image_size", 224)
    image_size = image_size[0] if isinstance(image_size, (list, tuple)) else image_size
    width = vc.get("width", 768)
    return {
        "image_size": image_size,
        "patch_size": vc.get("patch_size", 16),
        "width": width,
        "layers": vc["layers"],
        "heads": width // vc.get("head_width", 64),
        "mlp_ratio": vc.get("mlp_ratio", 4.0),
    }


def derive_vision(v: VisionConfig) -> None:
    if v.name is None:
        if v.image_size is None:
            v.image_size = 64
        return
    dims = open_clip_vision_dims(v.name)
    native = dims.pop("image_size")
    for key, value in dims.items():
        setattr(v, key, value)
    if v.image_size is None:
        v.image_size = native


def grid_side(v: VisionConfig) -> int:
    return v.image_size // v.patch_size


def derive(cfg: Config) -> None:
    m = cfg.model
    derive_vision(m.vision)
    if m.connector.kind in CONNECTORS:  # an unknown kind is reported by validate
        CONNECTORS[m.connector.kind].derive(m.connector, m.vision.width, grid_side(m.vision))
    d = m.decoder
    if d.num_kv_heads is None:
        d.num_kv_heads = d.num_heads
    if d.intermediate_size is None:
        d.intermediate_size = 64 * math.ceil(8 * d.hidden_size / 3 / 64)
    if d.max_position_embeddings is None:
        d.max_position_embeddings = cfg.data.seq_len
    if cfg.data.root is None and cfg.data.synth is not None:
        from mm1.data.synth import corpus_folder

        cfg.data.root = str(corpus_folder(cfg.data.synth))
    if m.tokenizer.kind is None:  # a pretrained decoder takes its own tokenizer
        m.tokenizer.kind = "pretrained" if d.pretrained else "synth"
    if m.tokenizer.kind == "pretrained" and m.tokenizer.path is None:
        m.tokenizer.path = d.pretrained
