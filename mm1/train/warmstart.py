"""Contrastive warm start of the image encoder: a small CLIP trained on the run's caption pairs.

MM1's image encoder is CLIP-pretrained before the multimodal pre-training starts. A randomly
initialised ViT trained only through the language loss learns colour quickly and form slowly, so a
tiny recipe without a pretrained encoder cannot show what resolution or image tokens do. With
`model.vision.warm_start` set, `mm1 pretrain` first trains the encoder contrastively (open_clip's
own `CLIP` model and `ClipLoss`, with a small text transformer over the run's tokenizer) on the
caption pairs of one data source, at the run's resolution, then starts the multimodal pre-training
from it. The text tower is thrown away.

The result is cached under the mm1 cache folder, keyed by everything that determines it (the
encoder's dims and resolution, the warm-start settings, the tokenizer and the caption shards'
names, sizes and times), so every run of a grid that shares those trains it once.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import math
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import numpy as np
import open_clip
import torch
from open_clip.model import CLIPTextCfg, CLIPVisionCfg

from mm1.cache import cache_dir
from mm1.config.schema import Config, VisionConfig, WarmStartConfig
from mm1.data.documents import caption_document
from mm1.data.image import resized, to_tensor
from mm1.data.shards import read_shard, resolve_shards
from mm1.model.vision import normalise_pixels, vision_cfg_of

CONTEXT = 32  # caption tokens the text tower reads (the embedded captions are shorter)
HELD_OUT = 256  # pairs kept out of training to measure retrieval (at most a quarter of them)


def warm_start_path(cfg: Config, tokenizer) -> Path:
    """Where the warm-started encoder of `cfg` is (or will be) cached."""
    return cache_dir() / "warm_start" / f"{_digest(cfg, tokenizer)}.safetensors"


def ensure_warm_start(cfg: Config, tokenizer) -> Path:
    """The cached encoder weights of `cfg`, trained first if absent (one writer at a time)."""
    path = warm_start_path(cfg, tokenizer)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.is_file():
            print(f"mm1: warm-starting the image encoder contrastively on {cfg.model.vision.warm_start.source!r} "
                  f"(first use; cached in {path})", flush=True)
            state, report = train_clip(cfg, tokenizer)
            _save(state, report, path)
    return path


def train_clip(cfg: Config, tokenizer) -> tuple[dict, dict]:
    """Train a CLIP on the caption pairs; returns its `visual.*` weights and a report."""
    ws, vision = cfg.model.vision.warm_start, cfg.model.vision
    pixels, text = load_pairs(cfg, tokenizer)
    held_out = min(HELD_OUT, len(pixels) // 4)
    if len(pixels) - held_out < ws.batch_size:
        raise ValueError(f"model.vision.warm_start.batch_size: {ws.batch_size} is more than the "
                         f"{len(pixels) - held_out} training pairs of {ws.source!r}")
    gen = torch.Generator().manual_seed(ws.seed)
    with torch.random.fork_rng():
        torch.manual_seed(ws.seed)
        model = build_clip(vision, len(tokenizer), tokenizer.pad_token_id, tokenizer.eos_token_id, ws)
    loss_fn = open_clip.ClipLoss()
    opt = torch.optim.AdamW(model.parameters(), lr=ws.lr, weight_decay=0.1)
    start, losses = time.time(), []
    for step in range(ws.steps):
        for group in opt.param_groups:
            group["lr"] = ws.lr * _schedule(step, ws.steps)
        idx = torch.randint(held_out, len(pixels), (ws.batch_size,), generator=gen)
        img_f, txt_f, scale = model(normalise_pixels(pixels[idx]), text[idx])
        loss = loss_fn(img_f, txt_f, scale)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if (step + 1) % max(1, ws.steps // 10) == 0:
            print(f"mm1: warm start step {step + 1}/{ws.steps} loss {loss.item():.3f}", flush=True)
    report = {"steps": ws.steps, "pairs": len(pixels) - held_out, "first_loss": losses[0], "last_loss": losses[-1],
              "held_out": held_out, "held_out_retrieval_top1": retrieval_top1(model, pixels[:held_out], text[:held_out]),
              "seconds": round(time.time() - start, 1)}
    print(f"mm1: warm start done in {report['seconds']:.0f} s; loss {report['first_loss']:.2f} -> "
          f"{report['last_loss']:.2f}; image->text top-1 on {held_out} held-out pairs "
          f"{100 * report['held_out_retrieval_top1']:.1f}% (chance {100 / held_out:.1f}%)", flush=True)
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items() if k.startswith("visual.")}
    return state, report


def build_clip(vision: VisionConfig, vocab: int, pad_id: int, eos_id: int, ws: WarmStartConfig) -> open_clip.CLIP:
    """open_clip's CLIP with mm1's vision tower and a small text transformer pooled at the end of text."""
    vcfg, embed_dim, quick_gelu = vision_cfg_of(vision)
    width = ws.text_width
    tcfg = CLIPTextCfg(context_length=CONTEXT, vocab_size=vocab, width=width, heads=max(1, width // 64),
                       layers=ws.text_layers, pad_id=pad_id, eos_id=eos_id, pool_type="eos")
    return open_clip.CLIP(embed_dim=embed_dim, vision_cfg=CLIPVisionCfg(**vcfg), text_cfg=tcfg,
                          quick_gelu=quick_gelu)


def load_pairs(cfg: Config, tokenizer) -> tuple[torch.Tensor, torch.Tensor]:
    """Up to `max_pairs` caption pairs of the source: (N, 3, S, S) uint8 pixels and (N, CONTEXT) token ids
    ending with the end-of-text token. Unreadable samples are skipped (as the loader skips them)."""
    ws, size = cfg.model.vision.warm_start, cfg.model.vision.image_size
    source = cfg.data.sources[ws.source]
    key = f"data.sources.{ws.source}.shards"
    images, ids, skips, damaged = [], [], Counter(), Counter()
    samples = (s for url in resolve_shards(source.shards, cfg.data.root, key) for s in read_shard(url, damaged))
    for sample in samples:
        doc = caption_document(sample, ws.source, skips)
        if doc is None:
            continue
        image, caption = doc.segments
        images.append(resized(image, size))
        ids.append(tokenizer(caption, add_special_tokens=False)["input_ids"][: CONTEXT - 1]
                   + [tokenizer.eos_token_id])
        if len(images) == ws.max_pairs:
            break
    if not images:
        raise ValueError(f"model.vision.warm_start.source: {ws.source!r} gave no readable caption pair "
                         f"(skipped: {dict(skips)})")
    return to_tensor(np.stack(images)), _pad(ids, tokenizer.pad_token_id)


@torch.no_grad()
def retrieval_top1(model: open_clip.CLIP, pixels: torch.Tensor, text: torch.Tensor) -> float:
    """Share of images whose most similar caption, among `len(pixels)`, is their own."""
    model.eval()
    img = model.encode_image(normalise_pixels(pixels), normalize=True)
    txt = model.encode_text(text, normalize=True)
    model.train()
    return (img @ txt.T).argmax(1).eq(torch.arange(len(pixels))).float().mean().item()


def _pad(ids: list[list[int]], pad_id: int) -> torch.Tensor:
    out = torch.full((len(ids), CONTEXT), pad_id, dtype=torch.long)
    for row, seq in enumerate(ids):
        out[row, : len(seq)] = torch.tensor(seq)
    return out


def _schedule(step: int, steps: int) -> float:
    """Linear warm-up over the first tenth, then cosine to zero."""
    warmup = max(1, steps // 10)
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))


def _digest(cfg: Config, tokenizer) -> str:
    v = cfg.model.vision
    ws = v.warm_start
    source = cfg.data.sources[ws.source]
    shards = resolve_shards(source.shards, cfg.data.root, f"data.sources.{ws.source}.shards")
    key = {
        "version": 1,
        "vision": {k: val for k, val in asdict(v).items() if k not in ("warm_start", "freeze", "feature_layer")},
        "warm_start": asdict(ws),
        "tokenizer": [len(tokenizer), tokenizer.pad_token_id, tokenizer.eos_token_id,
                      hashlib.sha256(json.dumps(sorted(tokenizer.get_vocab().items())).encode()).hexdigest()],
        "shards": [(str(Path(s).resolve()), Path(s).stat().st_size, Path(s).stat().st_mtime_ns) for s in shards],
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]


def _save(state: dict, report: dict, path: Path) -> None:
    from safetensors.torch import save_file

    tmp = path.with_suffix(".tmp")
    save_file(state, str(tmp))
    path.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    tmp.replace(path)  # complete or absent: a killed warm start leaves no half-written file
