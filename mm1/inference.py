"""Text from a loaded model and a prompt with images: what `mm1 generate` and `Loaded.generate` run.

    m = mm1.load("runs/tiny/checkpoint")
    m.generate("<image>a photo of", images=["photo.png"])
    m.generate("<image>a red circle .<|endofchunk|><image>", images=["demo.png", "photo.png"])  # 1-shot

A prompt is text with one "<image>" where each image goes, in the order of `images`, and
"<|endofchunk|>" closing the text that belongs to an image (demonstrations), as in mm1's training
documents and few-shot prompts; <s> is put first. A prompt without "<image>" gets one per image at
its start. Images (files or PIL images) are squash-resized to the encoder's size, as in training.
Decoding is mm1's greedy batched decoder (mm1.eval.generate); it stops at </s>, at each of `stop`
(default "<|endofchunk|>", which ends a caption or answer in mm1's data) or after `max_new_tokens`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence, Union

import torch
from PIL import Image

from mm1.data.image import preprocess
from mm1.eval.generate import Prompt, generate
from mm1.eval.prompts import STRUCTURE, SampleError, encode_prompt, load_pixels
from mm1.model.mm1 import MM1Model
from mm1.tokenizer import END_OF_CHUNK, IMAGE_TOKEN

ImageInput = Union[str, Path, Image.Image]


def check_inputs(prompt: str, images: Sequence[ImageInput]) -> None:
    """What can be checked before a model loads: the image files exist, one "<image>" per image."""
    for image in images:
        if not isinstance(image, Image.Image) and not Path(image).is_file():
            raise FileNotFoundError(f"{image}: no such image file")
    markers = prompt.count(IMAGE_TOKEN)
    if markers and markers != len(images):
        raise ValueError(f'the prompt holds {markers} "{IMAGE_TOKEN}" but {len(images)} images were given')


def segments(prompt: str, num_images: int) -> list[tuple[str, bool]]:
    """(text, is a structural special token) pieces; "<image>" first once per image when the prompt has none."""
    if IMAGE_TOKEN not in prompt:
        prompt = IMAGE_TOKEN * num_images + prompt
    return [(part, i % 2 == 1) for i, part in enumerate(STRUCTURE.split(prompt)) if part]


def pixels(image: ImageInput, size: int) -> torch.Tensor:
    """-> (3, size, size) uint8; ValueError names an unreadable file."""
    if isinstance(image, Image.Image):
        return preprocess(image.convert("RGB"), size)
    try:
        return load_pixels(Path(image), size)
    except SampleError as err:
        raise ValueError(f"{image}: {err}") from None


def generate_text(model: MM1Model, tokenizer, prompt: str, images: Sequence[ImageInput] = (),
                  max_new_tokens: int = 32, stop: Sequence[str] = (END_OF_CHUNK,)) -> str:
    """The greedy continuation of `prompt` (see the module docstring); ValueError when the prompt's
    "<image>" count differs from the number of images."""
    check_inputs(prompt, images)
    ids = encode_prompt(tokenizer, segments(prompt, len(images)), len(images), model.tokens_per_image)
    size = model.cfg.vision.image_size
    stacked = torch.stack([pixels(im, size) for im in images]) if images else torch.zeros(0, 3, size, size,
                                                                                         dtype=torch.uint8)
    was_training = model.training
    model.eval()
    try:
        return generate(model, tokenizer, [Prompt(ids, stacked)], max_new_tokens, tuple(stop))[0].text
    finally:
        model.train(was_training)
