"""Attention over packed rows: every path of model.decoder.attention gives the dense mask's loss and
gradients, and no path attends across documents."""
from __future__ import annotations

import dataclasses

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from mm1.bench.checks import attention_check, model_inputs
from mm1.bench.train import real_batches
from mm1.build import build
from mm1.config import ConfigError, load_config
from mm1.model.attention import document_spans, resolve, varlen_available
from tests.conftest import TINY

CPU = torch.device("cpu")
PATHS = ["docs", "flex"] + (["varlen"] if varlen_available() else [])


@pytest.fixture(scope="module")
def setup(synth_root):
    """The tiny recipe (2 layers) with the packed attention implementation, and a packed batch of it."""
    overrides = [f"data.root={synth_root}", "data.synth=null", "train.batch_size=3", "model.decoder.num_layers=2",
                 "model.decoder.attention=docs"]
    cfg = load_config(TINY, overrides)
    torch.manual_seed(0)
    tokenizer, model = build(cfg, CPU)
    batch = real_batches(cfg, tokenizer, 1, CPU)[0]
    assert batch.segment_ids is not None and int(batch.segment_ids.max()) >= 3  # several documents per row
    return cfg, model, batch


def test_each_path_gives_the_dense_loss_and_gradients(setup):
    cfg, _, batch = setup
    results = attention_check(cfg, batch, PATHS)
    assert results.keys() == set(PATHS)
    for path, r in results.items():
        assert r["loss_rel"] < 1e-5, (path, r)
        if path == "flex" and batch.input_ids.device.type == "cpu":
            assert r["grad_rel"] is None  # no FlexAttention backward on CPU
        else:
            assert r["grad_rel"] < 1e-5, (path, r)


def test_a_path_that_crosses_documents_fails_the_check(setup):
    """The check can fail: docs attention over whole rows (one document per row) is caught."""
    cfg, _, batch = setup
    rows = batch.input_ids.shape[1] * torch.arange(batch.input_ids.shape[0] + 1, dtype=torch.int32)
    crossing = dataclasses.replace(batch, cu_seqlens=rows, max_seqlen=batch.input_ids.shape[1])
    r = attention_check(cfg, crossing, ["docs"])["docs"]
    assert r["loss_rel"] > 1e-4 and r["grad_rel"] > 1e-4


@pytest.mark.parametrize("path", ["dense"] + PATHS)
def test_perturbing_one_document_changes_no_other_documents_logits(setup, path):
    _, model, batch = setup
    model.cfg.decoder.attention = path
    seg = batch.segment_ids
    target = (seg[0] == 2) & (batch.input_ids[0] != model.image_token_id)  # row 0, document 2, text tokens
    ids = batch.input_ids.clone()
    ids[0, target] = (ids[0, target] + 7) % 50 + 5
    with torch.no_grad():
        before, after = (model(i, batch.images, batch.attention_mask, batch.position_ids, None, seg,
                               batch.cu_seqlens, batch.max_seqlen).logits for i in (batch.input_ids, ids))
    others = (seg != 2) | (torch.arange(seg.shape[0])[:, None] != 0)  # (B, L)
    others &= seg > 0
    torch.testing.assert_close(after[others], before[others], rtol=0, atol=1e-5)
    assert (after[0, seg[0] == 2] - before[0, seg[0] == 2]).abs().max() > 1e-3


class Shapes(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.shapes = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor):
                self.shapes.append(tuple(t.shape))
        return out


@pytest.mark.parametrize("path", ["dense", "docs"])
def test_only_the_dense_path_builds_an_l_by_l_tensor(setup, path):
    _, model, batch = setup
    model.cfg.decoder.attention = path
    length = batch.input_ids.shape[1]
    assert int((batch.cu_seqlens[1:] - batch.cu_seqlens[:-1]).max()) < length
    with torch.no_grad(), Shapes() as seen:
        model(*model_inputs(batch))
    square = any(s[-2:] == (length, length) for s in seen.shapes)
    assert square == (path == "dense")


def test_document_spans_cut_rows_into_documents_and_trailing_padding():
    seg = torch.tensor([[1, 1, 2, 2, 2, 0], [1, 1, 1, 1, 2, 2], [1, 1, 1, 0, 0, 0]])
    cu, longest = document_spans(seg)
    assert cu.tolist() == [0, 2, 5, 6, 10, 12, 15, 18] and cu.dtype == torch.int32
    assert longest == 4


def test_collated_batches_carry_the_spans(setup):
    _, _, batch = setup
    cu, longest = document_spans(batch.segment_ids)
    assert torch.equal(batch.cu_seqlens, cu) and batch.max_seqlen == longest


def test_auto_is_dense_for_short_cpu_rows_and_a_boundary_path_otherwise():
    assert resolve("auto", CPU, torch.float32, 192) == "dense"  # the tiny recipe's computation is unchanged
    assert resolve("auto", CPU, torch.float32, 4096) == "docs"
    assert resolve("auto", torch.device("cuda")) in ("varlen", "flex")
    assert resolve("auto", torch.device("cuda"), torch.float32) == "flex"  # flash varlen needs bf16/fp16
    assert resolve("docs", CPU) == "docs"


@pytest.mark.parametrize("override, message", [
    ("model.decoder.attention=sparse", "model.decoder.attention: 'sparse' is not allowed"),
    ("model.decoder.attention=flex", "model.decoder.attention: 'flex' cannot train on train.device 'cpu'"),
    ("model.decoder.attention=varlen", "model.decoder.attention: 'varlen' cannot train on train.device 'cpu'"),
])
def test_bad_attention_settings_name_their_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(TINY, [override, "train.device=cpu"])


def test_varlen_needs_bf16():
    with pytest.raises(ConfigError, match="'varlen' .* needs bf16"):
        load_config(TINY, ["model.decoder.attention=varlen", "train.device=cuda", "train.precision=fp32"])
