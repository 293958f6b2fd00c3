"""Batched greedy decoding: KV cache == full recompute, batched == one by one, stops, banned ids."""
from __future__ import annotations

import contextlib

import pytest
import torch
import torch.nn.functional as F
from transformers.cache_utils import DynamicLayer

from mm1.eval.generate import Prompt, _RoomyLayer, _stack, generate
from mm1.tokenizer import END_OF_CHUNK, IMAGE_TOKEN
from tests.conftest import build_tiny


@pytest.fixture(scope="module")
def tiny():
    """The tiny recipe's model, re-initialised with wider weights so greedy outputs vary with the input."""
    _, tokenizer, model = build_tiny()
    with torch.no_grad():
        for p in model.decoder.parameters():
            if p.dim() == 2:
                p.normal_(0, 0.08)
        # eos scores 0 while the best of ~180 random logits is well above it, so rows run to length
        model.decoder.get_output_embeddings().weight[tokenizer.eos_token_id].zero_()
    return tokenizer, model.eval()


def make_prompts(tokenizer, model, image_counts=(1, 3, 2, 0, 1, 2)) -> list[Prompt]:
    """Prompts of different lengths and image counts (so left padding differs per row)."""
    image_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    words = tokenizer.encode("question : what colour is the circle ? short answer : red", add_special_tokens=False)
    g = torch.Generator().manual_seed(1)
    prompts = []
    for i, n in enumerate(image_counts):
        ids = [tokenizer.bos_token_id]
        for j in range(n):
            ids += [image_id] * model.tokens_per_image + words[: 2 + (i + j) % 7]
        ids += words[: 3 + i]
        prompts.append(Prompt(ids, torch.randn(n, 3, 64, 64, generator=g)))
    return prompts


def test_kv_cache_equals_full_recompute_and_batch_equals_single(tiny):
    tokenizer, model = tiny
    prompts = make_prompts(tokenizer, model)
    cached = generate(model, tokenizer, prompts, 8)  # one prefill chunk
    chunked = generate(model, tokenizer, prompts, 8, prefill_tokens=150)  # prefill 1-2 rows at a time
    full = generate(model, tokenizer, prompts, 8, use_cache=False)
    single = [generate(model, tokenizer, [p], 8)[0] for p in prompts]
    assert [g.token_ids for g in cached] == [g.token_ids for g in full]
    assert [g.token_ids for g in cached] == [g.token_ids for g in single]
    assert [g.token_ids for g in cached] == [g.token_ids for g in chunked]
    assert len({tuple(g.token_ids) for g in cached}) == len(prompts)  # outputs depend on the prompt
    assert all(len(g.token_ids) == 8 and g.stop_reason == "length" for g in cached)


def test_shared_images_are_encoded_once_and_change_nothing(tiny):
    """Prompts that share demo images (equal pixels, separate tensors): each distinct image goes
    through the vision tower once, and every row decodes as it does alone."""
    tokenizer, model = tiny
    base = make_prompts(tokenizer, model, (3, 2, 3, 1, 2))
    pool = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    picks = [[0, 1, 2], [2, 0], [1, 2, 0], [1], [0, 0]]
    prompts = [Prompt(p.input_ids, pool[k].clone()) for p, k in zip(base, picks)]
    seen = []
    handle = model.vision.register_forward_hook(lambda module, inputs, out: seen.append(len(inputs[0])))
    try:
        shared = generate(model, tokenizer, prompts, 6)
    finally:
        handle.remove()
    assert sum(seen) == 3
    full = generate(model, tokenizer, prompts, 6, use_cache=False)  # model.embed on every image
    single = [generate(model, tokenizer, [p], 6)[0] for p in prompts]
    assert [g.token_ids for g in shared] == [g.token_ids for g in full] == [g.token_ids for g in single]


def test_roomy_cache_layer_matches_dynamic_layer():
    """The preallocated KV layer holds what DynamicLayer's concatenation holds: chunks of different
    widths left-padded with zeros, steps appended (past its room too), rows dropped."""
    g = torch.Generator().manual_seed(3)
    k1, v1, k2, v2 = (torch.randn(n, 2, w, 4, generator=g) for n, w in ((2, 3), (2, 3), (1, 5), (1, 5)))
    roomy = _RoomyLayer(_stack([k1, k2], [3, 5], room=1), _stack([v1, v2], [3, 5], room=1), 5)
    ref = DynamicLayer()
    ref.update(torch.cat([F.pad(k1, (0, 0, 2, 0)), k2]), torch.cat([F.pad(v1, (0, 0, 2, 0)), v2]))
    for rows in (3, 3, 2, 2):  # the second step overflows the room of one: the buffers grow
        if rows < roomy.keys.shape[0]:
            roomy.batch_select_indices(torch.tensor([0, 2]))
            ref.batch_select_indices(torch.tensor([0, 2]))
        k, v = torch.randn(rows, 2, 1, 4, generator=g), torch.randn(rows, 2, 1, 4, generator=g)
        for a, b in zip(roomy.update(k, v), ref.update(k, v)):
            assert torch.equal(a, b)
        assert roomy.get_seq_length() == ref.get_seq_length()


def test_images_change_the_generation(tiny):
    tokenizer, model = tiny
    prompt = make_prompts(tokenizer, model, (3,))[0]
    other = Prompt(prompt.input_ids, torch.flip(prompt.images, dims=[0]))
    a, b = generate(model, tokenizer, [prompt, other], 8)
    assert a.token_ids != b.token_ids


def test_stop_string_cuts_and_stops(tiny):
    tokenizer, model = tiny
    prompts = make_prompts(tokenizer, model)
    free = generate(model, tokenizer, prompts, 6)
    third = tokenizer.decode(free[0].token_ids[2:3])  # stop at the third generated word of row 0
    stopped = generate(model, tokenizer, prompts, 6, stop=(third,))
    assert stopped[0].stop_reason == "stop_string"
    assert stopped[0].token_ids == free[0].token_ids[:3]
    assert third not in stopped[0].text
    assert stopped[0].text == free[0].text[: free[0].text.find(third)]
    untouched = [(s, f) for s, f in zip(stopped[1:], free[1:]) if third not in f.text]
    assert untouched  # rows that go on after row 0 has left the batch (and the KV cache)
    for s, f in untouched:
        assert s.token_ids == f.token_ids and s.stop_reason == "length"
    for s, f in zip(stopped[1:], free[1:]):  # every row is unaffected up to its own stop
        assert f.token_ids[: len(s.token_ids)] == s.token_ids


@contextlib.contextmanager
def boost(model, token_id: int, from_step: int = 0):
    """Make `token_id` the decoder's top logit from decoding step `from_step` on (step 0 = the prefill)."""
    calls = [0]

    def hook(module, inputs, logits):
        if calls[0] >= from_step:
            logits = logits.clone()
            logits[..., token_id] += 1e4
        calls[0] += 1
        return logits

    handle = model.decoder.get_output_embeddings().register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def test_stop_token_ends_every_row_without_appearing(tiny):
    tokenizer, model = tiny
    eoc = tokenizer.convert_tokens_to_ids(END_OF_CHUNK)
    prompts = make_prompts(tokenizer, model)
    free = generate(model, tokenizer, prompts, 8)
    with boost(model, eoc, from_step=2):
        stopped = generate(model, tokenizer, prompts, 8, stop=(END_OF_CHUNK,))
    with boost(model, eoc, from_step=2):
        unstopped = generate(model, tokenizer, prompts, 8)  # without the stop string, eoc is just a token
    for s, f, u in zip(stopped, free, unstopped):
        assert s.stop_reason == "stop_token"
        assert s.token_ids == f.token_ids[:2]
        assert u.token_ids[2:] == [eoc] * 6 and u.stop_reason == "length"


def test_eos_always_stops(tiny):
    tokenizer, model = tiny
    with boost(model, tokenizer.eos_token_id, from_step=1):
        outs = generate(model, tokenizer, make_prompts(tokenizer, model), 8)
    assert all(g.stop_reason == "eos" and len(g.token_ids) == 1 for g in outs)


def test_image_placeholder_is_never_generated(tiny):
    tokenizer, model = tiny
    image_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    with boost(model, image_id):
        outs = generate(model, tokenizer, make_prompts(tokenizer, model), 8)
    assert all(image_id not in g.token_ids for g in outs)
    assert all(t < len(tokenizer) for g in outs for t in g.token_ids)


def test_bad_arguments(tiny):
    tokenizer, model = tiny
    with pytest.raises(ValueError, match="at least one prompt"):
        generate(model, tokenizer, [], 4)
    with pytest.raises(ValueError, match="max_new_tokens"):
        generate(model, tokenizer, make_prompts(tokenizer, model, (1,)), 0)
    two = make_prompts(tokenizer, model, (2,))[0]
    for images in (two.images[:1], torch.cat([two.images, two.images[:1]])):  # one image too few, one too many
        with pytest.raises(ValueError, match="image placeholder runs"):
            generate(model, tokenizer, [Prompt(two.input_ids, images)], 4)
