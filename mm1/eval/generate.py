"""Batched greedy decoding for MM1 models: left padding, a KV cache, stop tokens and strings.

    prompts = [Prompt(ids, pixels), ...]          # ids with image placeholder runs expanded
    outs = generate(model, tokenizer, prompts, max_new_tokens=5, stop=("<|endofchunk|>",))
    outs[0].text, outs[0].token_ids, outs[0].stop_reason

Prompts are left-padded so every row's last prompt token sits in the last
column; position ids count real tokens only (0 at each row's first real
token), so a row decodes exactly as it would alone. Rows are decoded longest
first (results come back in the caller's order). The prompt pass runs in
chunks of rows, each padded only to its own longest row (the cache is padded
afterwards); each distinct image of the batch is encoded once (few-shot
demonstrations recur across a batch's prompts) and its tokens are spliced in
where `model.embed` would put them. Then each step feeds one token per row
through the decoder with its KV cache. `use_cache=False` runs `model.embed`
and the whole sequence every step instead (the reference the cache is tested
against).

Never generated: the image placeholder, padding (unless it is also EOS) and
embedding rows past the tokenizer's vocabulary (the table is rounded up).
Stopping: EOS always; a stop string that is one of the tokenizer's special
tokens stops on that id; any other stop string stops when it appears in the
decoded continuation, and the text is cut before it. Stop tokens are not part
of `token_ids` or `text`.

Shapes: B rows, L padded prompt length, V vocabulary rows, D decoder width.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from mm1.tokenizer import IMAGE_TOKEN


@dataclass
class Prompt:
    input_ids: list[int]  # prompt token ids; each image is a run of `tokens_per_image` placeholder ids
    images: torch.Tensor  # (n, 3, S, S) preprocessed pixels of this prompt's images, in order


@dataclass
class Generation:
    token_ids: list[int]  # generated ids, stop token excluded
    text: str  # decoded continuation, cut before the first stop string
    stop_reason: str  # "eos", "stop_token", "stop_string" or "length"


class _Stopper:
    """Per-row stopping state."""

    def __init__(self, tokenizer, stop: tuple[str, ...], rows: int):
        self.tok = tokenizer
        special = set(tokenizer.all_special_tokens)
        self.stop_ids = {tokenizer.convert_tokens_to_ids(s) for s in stop if s in special}
        self.eos_id = tokenizer.eos_token_id
        self.strings = [s for s in stop if s not in special]
        self.ids: list[list[int]] = [[] for _ in range(rows)]
        self.reason: list[str | None] = [None] * rows

    @property
    def done(self) -> list[bool]:
        return [r is not None for r in self.reason]

    def add(self, rows: list[int], next_ids: list[int]) -> None:
        """Record one new token for each of `rows` (indices into the prompts)."""
        for row, token in zip(rows, next_ids):
            if self.reason[row] is not None:
                continue
            if token == self.eos_id:
                self.reason[row] = "eos"
            elif token in self.stop_ids:
                self.reason[row] = "stop_token"
            else:
                self.ids[row].append(token)
                if self.strings and self._cut(row) is not None:
                    self.reason[row] = "stop_string"

    def _cut(self, row: int) -> int | None:
        text = self.tok.decode(self.ids[row], skip_special_tokens=True)
        hits = [text.find(s) for s in self.strings if s in text]
        return min(hits) if hits else None

    def results(self) -> list[Generation]:
        out = []
        for row, ids in enumerate(self.ids):
            text = self.tok.decode(ids, skip_special_tokens=True)
            cut = self._cut(row) if self.strings else None
            out.append(Generation(ids, text[:cut] if cut is not None else text, self.reason[row] or "length"))
        return out


def banned_token_ids(tokenizer, vocab_rows: int) -> list[int]:
    """Ids greedy decoding must never pick: image placeholder, padding (unless EOS), unused rows."""
    banned = [tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)]
    if tokenizer.pad_token_id is not None and tokenizer.pad_token_id != tokenizer.eos_token_id:
        banned.append(tokenizer.pad_token_id)
    banned += list(range(len(tokenizer), vocab_rows))
    return banned


def _pad_ids(prompts: list[Prompt], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """-> input_ids (B, L), attention_mask (B, L), each row's tokens in its last columns."""
    if not prompts:
        raise ValueError("generate() needs at least one prompt")
    length = max(len(p.input_ids) for p in prompts)
    ids = torch.full((len(prompts), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), length), dtype=torch.long)
    for row, p in enumerate(prompts):
        n = len(p.input_ids)
        if n == 0:
            raise ValueError(f"prompt {row} is empty")
        ids[row, length - n:] = torch.tensor(p.input_ids, dtype=torch.long)
        mask[row, length - n:] = 1
    return ids.to(device), mask.to(device)


def left_pad(prompts: list[Prompt], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """-> input_ids (B, L), attention_mask (B, L), images (N, 3, S, S) in row-major order."""
    ids, mask = _pad_ids(prompts, pad_id, device)
    images = torch.cat([p.images for p in prompts]) if any(len(p.images) for p in prompts) else None
    return ids, mask, None if images is None else images.to(device)


def _positions(mask: torch.Tensor) -> torch.Tensor:
    """(B, L) position of each token among its row's real tokens; 0 on padding."""
    return (mask.cumsum(-1) - 1).clamp(min=0)


def _last_logits(model, embeds, mask, positions, cache) -> torch.Tensor:
    """One decoder pass -> (b, V) float logits of each row's last position."""
    out = model.decoder(inputs_embeds=embeds, attention_mask=mask, position_ids=positions,
                        cache=cache, use_cache=cache is not None, logits_to_keep=1)
    return out.logits[:, -1].float()


def _distinct_images(prompts: list[Prompt]) -> tuple[list[torch.Tensor], list[int]]:
    """-> (the batch's distinct images, for each image of each prompt in order its index in them).

    Equal pixel tensors count once: a demonstration drawn for several queries is encoded once.
    Candidates are found by a sample of their pixels and confirmed by a full comparison."""
    distinct: list[torch.Tensor] = []
    index: list[int] = []
    by_probe: dict[tuple, list[int]] = {}
    for p in prompts:
        for image in p.images:
            flat = image.reshape(-1)
            probe = (tuple(image.shape), image.dtype, *flat[:: max(1, flat.numel() // 32)].tolist())
            same = by_probe.setdefault(probe, [])
            match = next((k for k in same if torch.equal(distinct[k], image)), None)
            if match is None:
                match = len(distinct)
                same.append(match)
                distinct.append(image)
            index.append(match)
    return distinct, index


def _encode_distinct(model, prompts: list[Prompt], device, per_pass: int) -> tuple[torch.Tensor | None, torch.Tensor]:
    """-> (U, T, D) tokens of the batch's distinct images (None without images), `per_pass` images
    per vision pass, and (N,) the row in them of every prompt's images in row-major order."""
    distinct, index = _distinct_images(prompts)
    if not distinct:
        return None, torch.zeros(0, dtype=torch.long)
    encoded = torch.cat([model.encode_images(torch.stack(distinct[i: i + per_pass]).to(device))
                         for i in range(0, len(distinct), per_pass)])
    return encoded, torch.tensor(index, device=device)


def _check_images(model, prompts: list[Prompt], ids: torch.Tensor) -> None:
    """Row i of `ids` (prompt i) must hold one run of `tokens_per_image` placeholder ids per image."""
    for row, p in enumerate(prompts):
        try:
            model.check_placeholders(ids[row: row + 1], len(p.images))
        except ValueError as e:
            raise ValueError(f"prompt {row}: {e}") from None


def _stack(chunks: list[torch.Tensor], widths: list[int], room: int = 0) -> torch.Tensor:
    """Per-chunk (b, heads, width, head_dim) keys or values -> (B, heads, L + room, head_dim):
    each chunk left-padded with zeros to the longest (L; those columns are masked out, as left
    padding is), then `room` zero columns."""
    length = max(widths)
    padded = [F.pad(t, (0, 0, length - w, room)) for t, w in zip(chunks, widths)]
    return padded[0] if len(padded) == 1 else torch.cat(padded)


class _RoomyLayer(DynamicLayer):
    """A DynamicLayer whose keys and values are the first `length` columns of larger buffers, so a
    decoding step writes its column in place where DynamicLayer concatenates (copies the whole
    cache every step)."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, length: int):
        super().__init__()
        self._keys, self._values = keys, values  # (B, heads, capacity, head_dim)
        self.dtype, self.device, self.is_initialized = keys.dtype, keys.device, True
        self._view(length)

    def _view(self, length: int) -> None:
        self.keys, self.values = self._keys[:, :, :length], self._values[:, :, :length]

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        start = self.keys.shape[-2]
        end = start + key_states.shape[-2]
        while end > self._keys.shape[-2]:  # out of room: grow (not reached when room covers the decoding steps)
            self._keys = torch.cat([self._keys, torch.zeros_like(self._keys)], dim=-2)
            self._values = torch.cat([self._values, torch.zeros_like(self._values)], dim=-2)
        self._keys[:, :, start:end] = key_states
        self._values[:, :, start:end] = value_states
        self._view(end)
        return self.keys, self.values

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        length = self.keys.shape[-2]
        self._keys, self._values = self._keys[indices], self._values[indices]
        self._view(length)


def _merge(caches: list[DynamicCache], widths: list[int], config, room: int) -> DynamicCache:
    """One batch cache from the per-chunk caches, with room for `room` decoding steps in plain
    (full attention) layers; other layer kinds (sliding window...) get the chunks stacked."""
    merged = caches[0] if len(caches) == 1 else DynamicCache(config=config)
    for i, layer in enumerate(merged.layers):
        keys, values = [c.layers[i].keys for c in caches], [c.layers[i].values for c in caches]
        if type(layer) is DynamicLayer:
            merged.layers[i] = _RoomyLayer(_stack(keys, widths, room), _stack(values, widths, room), max(widths))
        elif len(caches) > 1:
            layer.update(_stack(keys, widths), _stack(values, widths))
    return merged


def _prefill(model, prompts, ids, mask, positions, chunk_tokens: int, room: int):
    """The prompt pass over rows sorted longest first -> (logits (B, V), cache over all L columns
    with room for `room` more).

    Rows go through the decoder in chunks of about `chunk_tokens` tokens, each chunk cut to its own
    longest row (no column of padding only); chunks keep activations cache-sized: on a CPU a
    32 x 340-token pass runs about 25% slower per token than 2k-token chunks. Images go through the
    vision tower first, each distinct one once, in passes of about as many patches.
    """
    encoded, index = _encode_distinct(model, prompts, ids.device, max(1, chunk_tokens // model.vision.num_patches))
    counts = [len(p.images) for p in prompts]
    length = ids.shape[1]
    logits, caches, widths, i, first = [], [], [], 0, 0
    while i < len(prompts):
        width = len(prompts[i].input_ids)  # the chunk's longest row
        j = min(len(prompts), i + max(1, chunk_tokens // width))
        n = sum(counts[i:j])
        cols = slice(length - width, length)
        embeds = model.splice(ids[i:j, cols], encoded[index[first: first + n]] if n else None)
        caches.append(DynamicCache(config=model.decoder.config))
        logits.append(_last_logits(model, embeds, mask[i:j, cols], positions[i:j, cols], caches[-1]))
        widths.append(width)
        i, first = j, first + n
    return torch.cat(logits), _merge(caches, widths, model.decoder.config, room)


@torch.inference_mode()
def generate(
    model, tokenizer, prompts: list[Prompt], max_new_tokens: int, stop: tuple[str, ...] = (),
    use_cache: bool = True, prefill_tokens: int = 2048,
) -> list[Generation]:
    """Greedy continuation of every prompt, decoded as one left-padded batch (results in the order of `prompts`).

    Each distinct image is encoded once; the prompt pass runs longest rows first, in row
    chunks of about `prefill_tokens` tokens cut to their own longest row; decoding runs on
    the whole batch and writes each step into KV buffers sized for `max_new_tokens`. Rows
    that have stopped leave the batch (and the KV cache), so later steps only compute the
    rows still decoding.
    """
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    ids, mask = _pad_ids(prompts, pad_id, device)
    _check_images(model, prompts, ids)
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i].input_ids))  # longest first
    prompts = [prompts[i] for i in order]  # batch row r holds prompt order[r]
    rows = torch.tensor(order, device=device)  # prompt index of each batch row still decoding
    ids, mask = ids[rows], mask[rows]
    embed_table = model.decoder.get_input_embeddings()
    banned = torch.tensor(banned_token_ids(tokenizer, embed_table.num_embeddings), device=device)
    stopper = _Stopper(tokenizer, tuple(stop), len(prompts))
    positions = _positions(mask)  # (B, L)
    if use_cache:
        logits, cache = _prefill(model, prompts, ids, mask, positions, prefill_tokens, max_new_tokens - 1)
    else:
        images = torch.cat([p.images for p in prompts]).to(device) if any(len(p.images) for p in prompts) else None
        embeds, cache = model.embed(ids, images), None  # (B, L, D); recomputed through every step
        logits = _last_logits(model, embeds, mask, positions, None)
    for step in range(max_new_tokens):
        logits[:, banned] = float("-inf")
        next_ids = logits.argmax(-1)  # (b,)
        row_list = rows.tolist()
        stopper.add(row_list, next_ids.tolist())
        done = stopper.done
        keep = [i for i, r in enumerate(row_list) if not done[r]]
        if not keep or step == max_new_tokens - 1:
            break
        if len(keep) < len(rows):  # drop finished rows
            keep_t = torch.tensor(keep, dtype=torch.long, device=device)
            rows, next_ids, mask, positions = rows[keep_t], next_ids[keep_t], mask[keep_t], positions[keep_t]
            if use_cache:
                cache.batch_select_indices(keep_t)
            else:
                embeds = embeds[keep_t]
        new_embeds = embed_table(next_ids)[:, None]  # (b, 1, D)
        mask = torch.cat([mask, mask.new_ones((len(rows), 1))], dim=1)
        positions = torch.cat([positions, positions[:, -1:] + 1], dim=1)
        if use_cache:
            logits = _last_logits(model, new_embeds, mask, positions[:, -1:], cache)
        else:
            embeds = torch.cat([embeds, new_embeds], dim=1)
            logits = _last_logits(model, embeds, mask, positions, None)
    return stopper.results()
