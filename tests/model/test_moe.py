"""The mixture-of-experts decoder: routing, losses, dispatch, capacity, upcycling, training."""
from __future__ import annotations

import copy
import math

import pytest
import torch
import transformers

import mm1
from mm1.cli import main
from mm1.config import ConfigError, load_config
from mm1.config.schema import DecoderConfig, MoEConfig
from mm1.model.decoder import add_moe_layers, build_decoder
from mm1.model.moe import MoEFeedForward, balance_loss, collect_aux, moe_layers, route, z_loss
from mm1.train.metrics import read_metrics
from tests.conftest import ROOT

TINY_MOE = ROOT / "recipes" / "tiny_moe.yaml"
D, F_, E = 32, 48, 4  # width, expert width, experts


def block(top_k=2, capacity_factor=None, init="random", seed=0) -> MoEFeedForward:
    torch.manual_seed(seed)
    dense = transformers.models.llama.modeling_llama.LlamaMLP(
        transformers.LlamaConfig(hidden_size=D, intermediate_size=F_))
    cfg = MoEConfig(num_experts=E, top_k=top_k, capacity_factor=capacity_factor, init=init)
    return MoEFeedForward.from_dense(dense, cfg, init_std=0.2)


def naive(moe: MoEFeedForward, x: torch.Tensor, capacity=None) -> tuple[torch.Tensor, int]:
    """Token by token, choice by choice: first choices claim expert slots before second choices."""
    flat = x.reshape(-1, D)  # (N, D)
    weights, experts, _ = route(moe.router_logits(flat), moe.cfg.top_k)
    y, used, dropped = torch.zeros_like(flat), [0] * E, 0
    ex = moe.experts
    for j in range(moe.cfg.top_k):
        for n in range(flat.shape[0]):
            e = int(experts[n, j])
            if capacity is not None and used[e] >= capacity:
                dropped += 1
                continue
            used[e] += 1
            h = ex.act_fn(flat[n] @ ex.gate_proj[e].T) * (flat[n] @ ex.up_proj[e].T)
            y[n] += weights[n, j] * (h @ ex.down_proj[e].T)
    return y.reshape(x.shape), dropped


def test_each_token_goes_to_k_distinct_experts_top1_raw_probability_topk_renormalised():
    logits = torch.randn(64, 8)
    for k in (1, 2, 3):
        weights, experts, probs = route(logits, k)
        assert weights.shape == experts.shape == (64, k)
        assert all(len(set(row.tolist())) == k for row in experts)
        top = probs.sort(-1, descending=True).values[:, :k]  # the k largest probabilities
        if k == 1:  # Switch Transformer: the raw probability of the chosen expert
            torch.testing.assert_close(weights, top)
            assert (weights < 1).all()
        else:  # renormalised to sum to 1
            torch.testing.assert_close(weights, top / top.sum(-1, keepdim=True))
    moe = block()
    moe(torch.randn(2, 10, D))
    assert int(moe.stats.tokens_per_expert.sum()) == 2 * 10 * 2


def test_balance_loss_is_one_for_a_uniform_router_and_grows_with_imbalance():
    torch.manual_seed(0)
    uniform = torch.zeros(256, E)
    _, experts, probs = route(uniform, 2)
    assert balance_loss(probs, experts, E).item() == pytest.approx(1.0)
    base = torch.randn(256, E)
    losses = []
    for bias in (0.0, 1.0, 2.0, 4.0, 8.0):
        _, experts, probs = route(base + bias * torch.eye(E)[0], 2)
        losses.append(balance_loss(probs, experts, E).item())
    assert losses[0] == pytest.approx(1.0, abs=0.1)
    assert all(a < b for a, b in zip(losses, losses[1:])), losses
    assert losses[-1] > 1.8  # expert 0 takes every token's first slot and nearly all the probability


def test_z_loss_matches_its_formula():
    logits = torch.randn(50, E) * 3
    expected = sum(math.log(sum(math.exp(v) for v in row)) ** 2 for row in logits.double().tolist()) / 50
    assert z_loss(logits).item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("capacity_factor", [None, 1.0])
def test_dispatch_equals_a_naive_per_token_reference(capacity_factor):
    moe = block(capacity_factor=capacity_factor)
    x = torch.randn(3, 20, D) + 0.5
    with torch.no_grad():
        moe.router.weight[0] += 0.3  # every first choice is expert 0, so a capacity of 30 binds
        y = moe(x)
        capacity = None if capacity_factor is None else math.ceil(capacity_factor * 60 * 2 / E)
        expected, dropped = naive(moe, x, capacity)
    torch.testing.assert_close(y, expected, rtol=1e-5, atol=1e-5)
    assert moe.stats.dropped_frac.item() == pytest.approx(dropped / 120)
    assert (dropped > 0) == (capacity_factor is not None)


def test_capacity_factor_drops_tokens_and_reports_the_fraction():
    x = torch.randn(4, 16, D) + 1.0
    fracs = []
    for factor in (0.5, 1.0, float(E)):
        moe = block(capacity_factor=factor)
        with torch.no_grad():
            moe.router.weight[0] = 0.5  # every token's first choice is expert 0
            moe(x)
        _, aux = collect_aux(moe)
        fracs.append(aux["moe/dropped_frac"])
        assert aux["moe/expert_load_max"] > 1.2
    assert fracs[0] > fracs[1] > 0 and fracs[2] == 0.0  # factor E lets one expert take every assignment


def test_gradients_reach_router_and_every_expert():
    moe = block()
    y = moe(torch.randn(2, 32, D))
    aux_loss, aux = collect_aux(moe)
    assert set(aux) >= {"moe/balance_loss", "moe/z_loss", "moe/dropped_frac", "moe/expert_load_max"}
    (y.square().mean() + aux_loss).backward()
    assert moe.router.weight.grad.abs().sum() > 0
    for name in ("gate_proj", "up_proj", "down_proj"):
        grad = getattr(moe.experts, name).grad  # (E, out, in)
        assert all(grad[e].abs().sum() > 0 for e in range(E)), name
    assert moe.stats is None and collect_aux(moe) == (None, None)  # statistics are taken once


def tiny_decoder_cfg(**kw) -> DecoderConfig:
    return DecoderConfig(hidden_size=64, num_layers=4, num_heads=4, num_kv_heads=2, intermediate_size=96,
                         max_position_embeddings=32, **kw)


def test_upcycled_moe_gives_the_dense_decoders_logits():
    torch.manual_seed(0)
    dense = build_decoder(tiny_decoder_cfg(), 97).eval()
    ids = torch.randint(0, 97, (2, 24))
    reference = dense(ids).logits  # (B, L, V)
    for init, same in (("upcycle", True), ("random", False)):
        moe = copy.deepcopy(dense)
        add_moe_layers(moe, MoEConfig(num_experts=E, every=2, init=init))
        assert [type(layer.mlp).__name__ for layer in moe.model.layers] == ["LlamaMLP", "MoEFeedForward"] * 2
        with torch.no_grad():
            logits = moe(ids).logits
        assert torch.allclose(logits, reference, atol=1e-5) == same, init


def test_a_local_dense_checkpoint_loads_and_upcycles(tmp_path):
    torch.manual_seed(1)
    hf = transformers.LlamaConfig(vocab_size=97, hidden_size=64, intermediate_size=96, num_hidden_layers=4,
                                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32)
    dense = transformers.LlamaForCausalLM(hf).eval()
    dense.save_pretrained(tmp_path / "dense")
    moe = build_decoder(DecoderConfig(pretrained=str(tmp_path / "dense"), moe=MoEConfig(num_experts=E, every=4)), 97)
    blocks = list(moe_layers(moe))
    assert len(blocks) == 1 and moe.model.layers[3].mlp is blocks[0]
    dense_ffn = dense.model.layers[3].mlp
    for name in ("gate_proj", "up_proj", "down_proj"):
        stacked = getattr(blocks[0].experts, name)  # (E, out, in)
        assert all(torch.equal(stacked[e], getattr(dense_ffn, name).weight) for e in range(E))
    ids = torch.randint(0, 97, (2, 20))
    with torch.no_grad():
        torch.testing.assert_close(moe.eval()(ids).logits, dense(ids).logits, rtol=1e-5, atol=1e-5)


def test_grouped_experts_need_bf16_on_a_gpu():
    with pytest.raises(ConfigError, match="'grouped' .* needs bf16"):
        load_config(TINY_MOE, ["model.decoder.moe.experts_impl=grouped", "train.device=cuda", "train.precision=fp32"])


@pytest.mark.parametrize("override, key", [
    ("model.decoder.moe.top_k=5", "model.decoder.moe.top_k"),
    ("model.decoder.moe.every=5", "model.decoder.moe.every"),
    ("model.decoder.moe.init=copy", "model.decoder.moe.init"),
    ("model.decoder.moe.capacity_factor=0", "model.decoder.moe.capacity_factor"),
    ("model.decoder.moe.experts_impl=fused", "model.decoder.moe.experts_impl"),
])
def test_bad_moe_settings_name_their_key(override, key):
    with pytest.raises(ConfigError, match=key):
        load_config(TINY_MOE, [override])


@pytest.mark.slow
def test_tiny_moe_recipe_trains_and_logs_router_metrics(tiny_overrides):
    assert main(["pretrain", str(TINY_MOE), *tiny_overrides, "train.steps=3"]) == 0
    run = load_config(TINY_MOE, tiny_overrides).output.dir
    records = read_metrics(run)
    assert [r["step"] for r in records] == [1, 2, 3]
    for r in records:
        assert math.isfinite(r["loss"]) and r["moe/balance_loss"] >= 0.5 and r["moe/z_loss"] > 0
        assert r["moe/dropped_frac"] == 0.0 and r["moe/expert_load_max"] >= 1.0
    loaded = mm1.load(f"{run}/checkpoint")  # the saved MoE decoder is rebuilt and its weights load
    assert len(list(moe_layers(loaded.model.decoder))) == 2


def impl_block(impl: str, top_k=2, capacity_factor=None) -> MoEFeedForward:
    moe = block(top_k=top_k, capacity_factor=capacity_factor)
    moe.experts.impl = impl
    return moe


@pytest.mark.parametrize("top_k, capacity_factor", [(2, None), (1, None), (2, 1.0)])
def test_grouped_experts_equal_the_loop_in_outputs_and_gradients(top_k, capacity_factor):
    torch.manual_seed(3)
    x = torch.randn(3, 20, D) + 0.5
    routed = torch.rand(3, 20) > 0.2  # some padding
    results = {}
    for impl in ("loop", "grouped"):
        moe = impl_block(impl, top_k, capacity_factor)
        with torch.no_grad():
            moe.router.weight[0] += 0.3  # make a capacity limit bind
        moe.routed_tokens = routed
        xi = x.clone().requires_grad_()
        y = moe(xi)
        aux_loss, _ = collect_aux(moe)
        (y.square().sum() + aux_loss).backward()
        grads = [xi.grad, moe.router.weight.grad] + [p.grad for p in moe.experts.parameters()]
        results[impl] = [y.detach(), *grads]
    assert moe.experts.use_grouped(x)
    for a, b in zip(results["loop"], results["grouped"]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def lm_router_grad(top_k: int) -> float:
    """Norm of the router gradient of a tiny MoE decoder from the language-model loss alone."""
    torch.manual_seed(0)
    model = build_decoder(tiny_decoder_cfg(moe=MoEConfig(num_experts=E, every=2, top_k=top_k)), 97)
    ids = torch.randint(0, 97, (2, 24))
    model(ids, labels=ids).loss.backward()
    return sum(float(b.router.weight.grad.norm()) for b in moe_layers(model))


def test_top1_router_learns_from_the_language_model_loss():
    top1, top2 = lm_router_grad(1), lm_router_grad(2)
    assert top1 > 0.01 * top2 > 0, (top1, top2)  # a renormalised top-1 gate gives ~1e-7 of top-2's


def test_padding_takes_no_capacity_and_no_part_in_router_statistics():
    torch.manual_seed(4)
    real = torch.randn(1, 24, D) + 0.5
    padded = torch.cat([real, torch.randn(1, 16, D) + 0.5], 1)  # (1, 40, D): 16 padding positions
    mask = torch.arange(40)[None] < 24
    alone, masked = block(capacity_factor=1.0), block(capacity_factor=1.0)
    for moe in (alone, masked):
        with torch.no_grad():
            moe.router.weight[0] += 0.3
    masked.routed_tokens = mask
    y_alone, y_masked = alone(real), masked(padded)
    torch.testing.assert_close(y_masked[:, :24], y_alone, rtol=1e-5, atol=1e-6)
    assert (y_masked[:, 24:] == 0).all()
    a, b = alone.stats, masked.stats
    for name in ("balance_loss", "z_loss", "tokens_per_expert", "dropped_frac"):
        torch.testing.assert_close(getattr(b, name), getattr(a, name)), name
    assert a.dropped_frac > 0  # the capacity bound binds, on the real tokens' count
    masked.eval()  # eval mode (generation calls the decoder directly): every position is routed
    masked(padded)
    assert int(masked.stats.tokens_per_expert.sum()) == 40 * 2


def test_balance_loss_is_mixtrals_over_unpadded_tokens_divided_by_k():
    from transformers.models.mixtral.modeling_mixtral import load_balancing_loss_func

    torch.manual_seed(5)
    logits = torch.randn(2 * 12, E) * 2  # (B*L, E)
    mask = torch.arange(12).expand(2, 12) < torch.tensor([[12], [7]])  # (B, L)
    for k in (1, 2):
        _, experts, probs = route(logits, k)
        ours = balance_loss(probs, experts, E, mask.reshape(-1))
        theirs = load_balancing_loss_func((logits,), E, k, mask.long())
        torch.testing.assert_close(ours * k, theirs)


def test_mm1_model_routes_only_real_tokens(tiny_overrides):
    from mm1.build import build

    cfg = load_config(TINY_MOE, tiny_overrides)
    _, model = build(cfg, torch.device("cpu"))
    ids = torch.randint(5, 50, (2, 16))
    mask = torch.ones(2, 16, dtype=torch.long)
    mask[1, 10:] = 0  # row 1: 10 real tokens, then padding
    short = model(ids[1:, :10]).aux_loss  # the real tokens of row 1 alone
    padded = model(ids[1:], attention_mask=mask[1:]).aux_loss
    assert all(torch.equal(moe.routed_tokens, mask[1:].bool()) for moe in moe_layers(model.decoder))
    torch.testing.assert_close(padded, short)


def test_activation_checkpointing_recomputes_the_same_routing(synth_root):
    """The routed-token mark outlives the forward, so the recompute in backward routes (and drops
    under a capacity limit) exactly as the forward did: same loss and gradients as without."""
    from mm1.bench.checks import loss_and_grads, grad_error
    from mm1.bench.train import real_batches
    from mm1.build import build
    from mm1.train.parallelize import apply_activation_checkpointing

    cfg = load_config(TINY_MOE, [f"data.root={synth_root}", "data.synth=null", "train.batch_size=3",
                                 "model.decoder.moe.capacity_factor=1.0"])
    torch.manual_seed(0)
    tokenizer, model = build(cfg)
    batch = real_batches(cfg, tokenizer, 1, torch.device("cpu"))[0]
    assert (batch.attention_mask == 0).any()  # some padding to leave out
    loss, grads = loss_and_grads(model, batch)
    apply_activation_checkpointing(model)
    loss_ac, grads_ac = loss_and_grads(model, batch)
    assert float(loss_ac) == pytest.approx(float(loss), rel=1e-6)
    strip = lambda g: {k.replace("._checkpoint_wrapped_module", ""): v for k, v in g.items()}  # noqa: E731
    assert grad_error(strip(grads_ac), grads) < 1e-6


SYNCING_OPS = ("_local_scalar_dense", "nonzero", "masked_select", "bincount", "unique", "repeat_interleave",
               "masked_scatter")  # a Python number from a tensor, or an output whose size depends on values


def aten_ops(fn) -> set[str]:
    from torch.utils._python_dispatch import TorchDispatchMode

    class Ops(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.names = set()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.names.add(func.overloadpacket.__name__)
            return func(*args, **(kwargs or {}))

    with Ops() as ops:
        fn()
    return ops.names


class HostSync(Exception):
    pass


def forbid_host_reads(monkeypatch) -> None:
    """Make every Python-side read of a tensor's values raise (what syncs a GPU with the host)."""
    def refuse(*args, **kwargs):
        raise HostSync

    for name in ("tolist", "item", "__bool__", "__int__", "__float__"):
        monkeypatch.setattr(torch.Tensor, name, refuse)


@pytest.mark.parametrize("capacity_factor", [None, 1.0])
def test_grouped_moe_forward_never_synchronises_with_the_host(capacity_factor, monkeypatch):
    moe = impl_block("grouped", capacity_factor=capacity_factor)
    moe.routed_tokens = torch.rand(2, 24) > 0.2
    x = torch.randn(2, 24, D)
    with monkeypatch.context() as m:
        forbid_host_reads(m)
        ops = aten_ops(lambda: moe(x))
    assert "_grouped_mm" in ops and not ops & set(SYNCING_OPS), ops & set(SYNCING_OPS)
    moe.experts.impl = "loop"
    with monkeypatch.context() as m, pytest.raises(HostSync):  # the reference loop needs the counts on the host
        forbid_host_reads(m)
        moe(x)


def test_the_flop_counter_counts_grouped_experts_as_the_loop():
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.randn(2, 20, D)
    counted = {}
    for impl in ("loop", "grouped"):
        moe = impl_block(impl)
        moe.routed_tokens = torch.arange(20).expand(2, 20) < 15  # 30 routed tokens of 40
        with FlopCounterMode(display=False) as counter:
            moe(x).square().sum().backward()
        counted[impl] = counter.get_total_flops()
    assert counted["grouped"] == counted["loop"] > 0
