"""The open_clip image encoder: patch tokens, feature layer, local weights, pos-embed interpolation."""
from __future__ import annotations

import pytest
import torch

from mm1.config.schema import VisionConfig
from mm1.model.vision import IMAGE_MEAN, IMAGE_STD, VisionEncoder, _build_tower


def small(**kw) -> VisionConfig:
    base = dict(image_size=32, patch_size=8, width=32, layers=3, heads=2)
    return VisionConfig(**{**base, **kw})


def test_returns_patch_tokens_without_cls():
    enc = VisionEncoder(small())
    out = enc(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 16, 32)  # 4x4 patches, no CLS token


def test_uint8_pixels_are_clip_normalised_by_the_encoder():
    enc = VisionEncoder(small()).eval()
    pixels = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    mean = torch.tensor(IMAGE_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGE_STD).view(3, 1, 1)
    by_hand = (pixels.float() / 255 - mean) / std
    with torch.no_grad():
        assert torch.equal(enc(pixels), enc(by_hand))
        assert not torch.allclose(enc(pixels), enc(pixels.float() / 255))


def test_feature_layer_selects_block_and_prunes_the_rest():
    torch.manual_seed(0)
    full = VisionEncoder(small(feature_layer=-1))
    torch.manual_seed(0)
    early = VisionEncoder(small(feature_layer=0))
    assert len(early.visual.transformer.resblocks) == 1
    x = torch.randn(1, 3, 32, 32)
    assert not torch.allclose(full(x), early(x))


def test_local_checkpoint_loads_and_interpolates_positional_embedding(tmp_path):
    torch.manual_seed(0)
    tower = _build_tower(small())
    path = tmp_path / "vit.pt"
    torch.save({f"visual.{k}": v for k, v in tower.state_dict().items()}, path)

    same = VisionEncoder(small(pretrained=str(path)))
    assert torch.equal(same.visual.conv1.weight, tower.conv1.weight)
    assert torch.equal(same.visual.positional_embedding, tower.positional_embedding)

    bigger = VisionEncoder(small(pretrained=str(path), image_size=64))
    assert bigger.visual.positional_embedding.shape == (1 + 8 * 8, 32)  # 4x4 grid resized to 8x8
    assert torch.equal(bigger.visual.conv1.weight, tower.conv1.weight)
    assert torch.equal(bigger.visual.positional_embedding[0], tower.positional_embedding[0])  # CLS row kept
    assert bigger(torch.randn(1, 3, 64, 64)).shape == (1, 64, 32)


def test_freeze_stops_gradients():
    enc = VisionEncoder(small(freeze=True))
    assert not any(p.requires_grad for p in enc.parameters())


def test_unknown_pretrained_tag_is_a_clear_error_without_network():
    with pytest.raises(ValueError, match="neither a file nor a tag of ViT-B-32"):
        VisionEncoder(VisionConfig(name="ViT-B-32", image_size=224, patch_size=32, width=768, layers=12,
                                   heads=12, pretrained="no-such-tag"))


def real_clip(width: int = 32, embed_dim: int = 24):
    """A real open_clip CLIP (image and text towers, projections, logit scale), small."""
    import open_clip
    from open_clip.model import CLIPTextCfg, CLIPVisionCfg

    torch.manual_seed(3)
    vision = CLIPVisionCfg(image_size=32, patch_size=8, width=width, layers=3, head_width=16)
    text = CLIPTextCfg(context_length=16, vocab_size=100, width=32, heads=2, layers=1)
    return open_clip.CLIP(embed_dim=embed_dim, vision_cfg=vision, text_cfg=text)


def test_a_real_clip_checkpoint_loads_into_explicit_dims_ignoring_the_heads_it_does_not_use(tmp_path, capsys):
    """open_clip's CLIP projects to embed_dim (24) != width (32): mm1 drops that projection anyway."""
    clip = real_clip()
    path = tmp_path / "clip.pt"
    torch.save({"state_dict": clip.state_dict()}, path)  # as open_clip's training script saves it
    enc = VisionEncoder(small(pretrained=str(path), feature_layer=-2)).eval()
    out = capsys.readouterr().out
    assert "loaded" in out and "ignored what it does not use: ln_post.bias, ln_post.weight, proj, " in out
    assert "transformer.resblocks.{2..2}.* (after model.vision.feature_layer)" in out
    assert "outside visual.* (text tower, logit scale)" in out
    for name, value in enc.visual.state_dict().items():
        assert torch.equal(value, clip.visual.state_dict()[name]), name
    x = torch.randn(1, 3, 32, 32)
    want = clip.visual.forward_intermediates(x, indices=[1], intermediates_only=True, output_fmt="NLC")
    with torch.no_grad():
        torch.testing.assert_close(enc(x), want["image_intermediates"][0])


def test_a_checkpoint_of_other_dims_names_the_weight_that_does_not_fit(tmp_path):
    from mm1.errors import ConfigError

    path = tmp_path / "clip.pt"
    torch.save(real_clip(width=48).state_dict(), path)
    with pytest.raises(ConfigError, match=r"does not fit the tower of model.vision: class_embedding is \(48,\) "
                                          r"there, \(32,\) here \(and \d+ more\); set model.vision.name"):
        VisionEncoder(small(pretrained=str(path)))
