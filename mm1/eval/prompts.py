"""Few-shot prompts: choosing demonstrations and writing the interleaved prompt.

Layout (OpenFlamingo's, in the tokens training uses): <s>, then each
demonstration followed by the separator, then the query, e.g. for VQA

    <s><image>Question:what colour is it? Short answer:red<|endofchunk|>\\n<image>Question:... Short answer:

where each <image> becomes the image's `tokens_per_image` placeholder ids.
Demonstrations come from the task's demo split; a demo is never the query
itself nor another entry about the query's image (same image file).

Zero-shot convention (per task, `prompt.zero_shot`):
  query_only  the bare query (the default);
  text_demos  OpenFlamingo's: `zero_shot_demos` demonstrations (chosen as the task's
              demos are) with their images removed (text only), then the query.

Demo selection:
  random  per query, a draw from the demo pool seeded by (seed, trial, query id), so
          a seed gives the same demos whatever the batch size or query order.
  rices   the k demos whose image features are most similar to the query's
          (cosine), ordered least to most similar: the most similar is last.
"""
from __future__ import annotations

import random
import re
import string
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError

from mm1.data.image import preprocess
from mm1.eval.loaders import EvalSample
from mm1.eval.tasks import PromptSpec
from mm1.tokenizer import END_OF_CHUNK, IMAGE_TOKEN


class SampleError(Exception):
    """One sample cannot be evaluated (its image is missing or unreadable); the message is the reason."""


def load_pixels(path: Path, size: int) -> torch.Tensor:
    """Image file -> (3, size, size) preprocessed pixels, or SampleError naming the reason."""
    try:
        with Image.open(path) as img:
            return preprocess(img.convert("RGB"), size)
    except FileNotFoundError:
        raise SampleError("missing image file") from None
    except (UnidentifiedImageError, OSError, ValueError):
        raise SampleError("unreadable image file") from None


@dataclass
class PromptText:
    segments: list[tuple[str, bool]]  # (text, is a structural special token) in order
    images: list[Path]  # image files in order of appearance (demos first, the query last)
    demo_ids: list[str]

    @property
    def text(self) -> str:
        """The prompt with one IMAGE_TOKEN per image."""
        return "".join(text for text, _ in self.segments)


STRUCTURE = re.compile(f"({re.escape(IMAGE_TOKEN)}|{re.escape(END_OF_CHUNK)})")


def _fields(sample: EvalSample, with_answer: bool) -> dict[str, str]:
    first = sample.answers[0].strip() if with_answer and sample.answers else ""
    return {"question": (sample.question or "").strip(), "answer": first, "caption": first}


def _render(template: str, fields: dict[str, str], text_only: bool = False) -> list[tuple[str, bool]]:
    """A template filled in: its own IMAGE_TOKEN / END_OF_CHUNK are special tokens (dropped images when
    `text_only`); the values of its fields are data, plain text whatever they hold."""
    out = []
    for literal, name, fmt, _ in string.Formatter().parse(template):
        for i, part in enumerate(STRUCTURE.split(literal)):
            if part and not (text_only and part == IMAGE_TOKEN):
                out.append((part, i % 2 == 1))
        if name is not None:
            out.append((format(fields[name], fmt or ""), False))
    return out


def _image_markers(segments: list[tuple[str, bool]]) -> int:
    return sum(special and text == IMAGE_TOKEN for text, special in segments)


def build_prompt(spec: PromptSpec, demos: list[EvalSample], query: EvalSample, text_only: bool = False) -> PromptText:
    """Demonstrations (with images unless `text_only`) then the query, as segments plus image list."""
    segments, images = [], []
    for demo in demos:
        part = _render(spec.demo, _fields(demo, with_answer=True), text_only)
        images += [demo.image] * _image_markers(part)
        segments += part + _render(spec.separator, {})
    query_part = _render(spec.query, _fields(query, with_answer=False))
    images += [query.image] * _image_markers(query_part)
    return PromptText(segments + query_part, images, [d.id for d in demos])


def encode_prompt(tokenizer, segments: list[tuple[str, bool]], num_images: int, tokens_per_image: int) -> list[int]:
    """Prompt segments -> ids with <s> first and each IMAGE_TOKEN expanded to `tokens_per_image` ids.
    Text between structural tokens is encoded as plain text: a question holding "<image>" stays words."""
    image_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    ids = [] if tokenizer.bos_token_id is None else [tokenizer.bos_token_id]
    run = ""
    for text, special in [*segments, ("", True)]:
        if not special:
            run += text
            continue
        if run:
            ids += tokenizer.encode(run, add_special_tokens=False, split_special_tokens=True)
            run = ""
        if text:
            token = tokenizer.convert_tokens_to_ids(text)
            ids += [token] * (tokens_per_image if token == image_id else 1)
    runs = ids.count(image_id) // tokens_per_image
    if runs != num_images:
        raise ValueError(f"prompt has {runs} {IMAGE_TOKEN} markers but {num_images} images")
    return ids


def _eligible(demo: EvalSample, query: EvalSample) -> bool:
    if query.image is None:  # text-only: any other question
        return demo.id != query.id
    return demo.image != query.image  # the same image file: the query itself or another question about it


class RandomDemos:
    """Seeded random demonstrations; the same (seed, trial, query id) always gives the same demos."""

    def __init__(self, pool: list[EvalSample], seed: int):
        if not pool:
            raise ValueError("the demo pool is empty")
        self.pool, self.seed = pool, seed

    def select(self, query: EvalSample, k: int, trial: int) -> list[EvalSample]:
        if k == 0:
            return []
        rng = random.Random(f"{self.seed}/{trial}/{query.id}")
        n = len(self.pool)
        picks = [self.pool[i] for i in rng.sample(range(n), min(n, k + 16))]
        chosen = [d for d in picks if _eligible(d, query)][:k]
        if len(chosen) < k:  # tiny pools: fall back to a full seeded shuffle
            everything = [d for d in self.pool if _eligible(d, query)]
            rng.shuffle(everything)
            chosen = everything[:k]
        if len(chosen) < k:
            raise ValueError(f"the demo pool has {len(chosen)} usable demos for query {query.id}, {k} needed")
        return chosen


class RicesDemos:
    """Retrieval-based in-context example selection (RICES) over precomputed image features."""

    def __init__(self, pool: list[EvalSample], pool_features: torch.Tensor, query_features: dict[str, torch.Tensor]):
        if len(pool) != len(pool_features):
            raise ValueError(f"{len(pool)} demos but {len(pool_features)} feature rows")
        self.pool, self.features, self.query_features = pool, pool_features.float(), query_features

    def select(self, query: EvalSample, k: int, trial: int = 0) -> list[EvalSample]:
        if k == 0:
            return []
        if query.id not in self.query_features:
            raise KeyError(f"no RICES feature for query {query.id}")
        sims = self.features @ self.query_features[query.id].float()  # (N,)
        order = torch.argsort(sims, descending=True, stable=True).tolist()
        chosen = [self.pool[i] for i in order if _eligible(self.pool[i], query)][:k]
        if len(chosen) < k:
            raise ValueError(f"the demo pool has {len(chosen)} usable demos for query {query.id}, {k} needed")
        return chosen[::-1]  # most similar last
