"""The three training streams, one sample at a time: caption, interleaved, text.

Each sample draws from its own random stream (`sample_rng(seed, stream,
index)`), so a sample depends only on the seed and its index. Scenes whose
`key()` is in `exclude` (the held-out eval scenes) are never drawn; a share
`corner_prob` of the scenes are corner scenes and a share `striped_prob` of
the others striped scenes (`scene.py`), and a share `gallery_prob` of the
interleaved documents are galleries (`documents.py`).
"""
from __future__ import annotations

from mm1.data.synth.describe import caption
from mm1.data.synth.documents import document
from mm1.data.synth.questions import detail_kind
from mm1.data.synth.render import label_box, png_bytes, render
from mm1.data.synth.scene import Scene, sample_scene
from mm1.data.synth.shards import Sample, json_bytes, sample_rng
from mm1.data.synth.textdocs import text_document

KEY_PREFIX = {"caption": "c", "interleaved": "i", "text": "t"}
CAPTION_LABEL_PROB = 0.5  # share of caption images with a label


def sample_key(stream: str, index: int) -> str:
    return f"{KEY_PREFIX[stream]}{index:07d}"


def scene_record(scene: Scene, image_size: int) -> dict:
    """The ground truth as stored in JSON: the scene plus the label's pixel box."""
    return {**scene.to_dict(), "label_box": label_box(scene, image_size)}


def caption_sample(seed: int, index: int, image_size: int, exclude, corner_prob: float = 0.0,
                   gallery_prob: float = 0.0, striped_prob: float = 0.0) -> Sample:
    rng = sample_rng(seed, "caption", index)
    scene = sample_scene(rng, CAPTION_LABEL_PROB, exclude, corner_prob, striped_prob)
    text = caption(scene, rng)
    meta = {"caption": text, "scene": scene_record(scene, image_size), "width": image_size, "height": image_size}
    members = {"png": png_bytes(render(scene, image_size)), "txt": text.encode("utf-8"), "json": json_bytes(meta)}
    return sample_key("caption", index), members


def interleaved_sample(seed: int, index: int, image_size: int, exclude, corner_prob: float = 0.0,
                       gallery_prob: float = 0.0, striped_prob: float = 0.0) -> Sample:
    rng = sample_rng(seed, "interleaved", index)
    kind, parts = document(lambda label_prob: sample_scene(rng, label_prob, exclude, corner_prob, striped_prob), rng,
                           detail_kind(corner_prob), gallery_prob)
    texts, images, scenes, members = [], [], [], {}
    for part in parts:
        if isinstance(part, str):
            texts.append(part)
            images.append(None)
            scenes.append(None)
        else:
            name = f"{len(members)}.png"
            members[name] = png_bytes(render(part, image_size))
            texts.append(None)
            images.append(name)
            scenes.append(scene_record(part, image_size))
    doc = {"texts": texts, "images": images, "kind": kind, "scenes": scenes}
    members["json"] = json_bytes(doc)
    return sample_key("interleaved", index), members


def text_sample(seed: int, index: int, image_size: int, exclude, corner_prob: float = 0.0,
                gallery_prob: float = 0.0, striped_prob: float = 0.0) -> Sample:
    rng = sample_rng(seed, "text", index)
    _kind, text = text_document(rng)
    return sample_key("text", index), {"txt": text.encode("utf-8")}


SAMPLERS = {"caption": caption_sample, "interleaved": interleaved_sample, "text": text_sample}
