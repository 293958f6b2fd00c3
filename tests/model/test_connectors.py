"""Vision-language connectors: shapes, exact parameter counts, gradient flow,
parity of attention pooling with open_clip's `AttentionalPooler`, and parity of
the C-Abstractor with an independent rebuild of Honeybee's (and, when timm is
installed, with Honeybee's own timm `RegStage` construction)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mm1.config.schema import ConnectorConfig
from mm1.model.connectors import CONNECTORS, build_connector
from mm1.model.connectors.c_abstractor import CAbstractor

IN, HID, OUT, GRID = 24, 32, 40, 8  # small dims used throughout


def make(kind: str, tokens: int | None, *, hidden: int = HID, in_dim: int = IN, grid: int = GRID, **kw) -> nn.Module:
    torch.manual_seed(0)
    cfg = ConnectorConfig(kind=kind, num_tokens=tokens, hidden=hidden, **kw)
    return build_connector(cfg, in_dim, OUT, grid)


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


# ---- hand-written parameter formulas -------------------------------------------------

def linear(i: int, o: int) -> int:
    return i * o + o


def mlp_params(i: int, o: int, depth: int) -> int:  # Linear(i, o), then (GELU, Linear(o, o)) x (depth - 1)
    return linear(i, o) + (depth - 1) * linear(o, o)


def attention_pool_params(i: int, h: int, o: int, t: int) -> int:
    queries = t * h + 2 * h  # and their LayerNorm
    norm = 2 * i
    attn = h * h + 2 * (i * h) + 3 * h + linear(h, h)  # q, k, v projections, in-proj bias, out-proj
    return queries + norm + attn + linear(h, o)


def bottleneck_params(ci: int, co: int) -> int:
    r = int(round(ci * 0.25))  # SE width from the block's input width
    n = ci * co + 2 * co  # 1x1 conv (no bias) + LayerNorm2d
    n += 9 * co + 2 * co  # depthwise 3x3 conv + LayerNorm2d
    n += (co * r + r) + (r * co + co)  # SE: two 1x1 convs with bias
    n += co * co + 2 * co  # 1x1 conv + LayerNorm2d
    if ci != co:
        n += ci * co + 2 * co  # shortcut 1x1 conv + LayerNorm2d
    return n


def c_abstractor_params(i: int, h: int, o: int, grid: int, depth: int = 3) -> int:
    pos = grid * grid * i
    stage1 = bottleneck_params(i, h) + (depth - 1) * bottleneck_params(h, h)
    stage2 = depth * bottleneck_params(h, h)
    return pos + stage1 + stage2 + linear(h, o) + linear(o, o)


# ---- shapes -----------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["avg_pool", "attention_pool", "c_abstractor"])
@pytest.mark.parametrize("tokens", [1, 4, 16, 64])
def test_pooling_connectors_shape(kind, tokens):
    m = make(kind, tokens)
    assert m(torch.randn(2, GRID * GRID, IN)).shape == (2, tokens, OUT)


@pytest.mark.parametrize("kind", ["avg_pool", "c_abstractor"])
def test_pooling_grid_not_divisible_by_side(kind):
    m = make(kind, 16, grid=6)  # 6x6 patches -> 4x4 tokens: overlapping adaptive windows
    assert m(torch.randn(1, 36, IN)).shape == (1, 16, OUT)


def test_mlp_keeps_every_patch():
    m = make("mlp", GRID * GRID)
    assert m(torch.randn(2, GRID * GRID, IN)).shape == (2, GRID * GRID, OUT)


def test_avg_pool_is_the_grid_mean_before_projection():
    m = make("avg_pool", 1, mlp_depth=1)
    x = torch.randn(2, GRID * GRID, IN)
    torch.testing.assert_close(m(x), m.proj(x.mean(1, keepdim=True)))


@pytest.mark.parametrize("kind,tokens", [("avg_pool", 15), ("c_abstractor", 8), ("avg_pool", 81), ("mlp", 16)])
def test_bad_token_count_raises(kind, tokens):
    with pytest.raises(ValueError, match=str(tokens)):
        make(kind, tokens)


def test_wrong_patch_count_raises():
    with pytest.raises(ValueError, match="64 patches"):
        make("c_abstractor", 4)(torch.randn(1, 49, IN))


def test_c_abstractor_leaves_its_input_alone():  # Honeybee adds pos_emb in place
    x = torch.randn(1, GRID * GRID, IN)
    x0 = x.clone()
    make("c_abstractor", 4)(x)
    assert torch.equal(x, x0)


# ---- parameter counts ---------------------------------------------------------------------

@pytest.mark.parametrize("depth", [1, 2, 3])
def test_param_count_mlp_and_avg_pool(depth):
    assert n_params(make("mlp", GRID * GRID, mlp_depth=depth)) == mlp_params(IN, OUT, depth)
    assert n_params(make("avg_pool", 16, mlp_depth=depth)) == mlp_params(IN, OUT, depth)
    assert mlp_params(IN, OUT, 2) == 24 * 40 + 40 + 40 * 40 + 40 == 2640


@pytest.mark.parametrize("in_dim", [IN, HID])  # kdim != embed_dim and the packed in-proj path
def test_param_count_attention_pool(in_dim):
    assert n_params(make("attention_pool", 16, in_dim=in_dim, heads=4)) == attention_pool_params(in_dim, HID, OUT, 16)
    assert attention_pool_params(IN, HID, OUT, 16) == 5656


@pytest.mark.parametrize("depth", [1, 3])
@pytest.mark.parametrize("in_dim", [IN, HID])  # with and without the projecting shortcut
def test_param_count_c_abstractor(depth, in_dim):
    m = make("c_abstractor", 16, in_dim=in_dim, depth=depth)
    assert n_params(m) == c_abstractor_params(in_dim, HID, OUT, GRID, depth)


def test_param_count_c_abstractor_honeybee_dims():
    # ViT-L/14 at 336 px (24x24 patches, width 1024), hidden 1024, 144 tokens, decoder width 2048
    cfg = ConnectorConfig(kind="c_abstractor", num_tokens=144, hidden=1024)
    with torch.device("meta"):
        ours, ref = CAbstractor(cfg, 1024, 2048, 24), RefCAbstractor(1024, 1024, 2048, 24, 144, 3)
    expected = c_abstractor_params(1024, 1024, 2048, 24)
    assert expected == 22_713_856  # 576*1024 pos + 6 * 2_638_080 blocks + 6_295_552 readout
    assert n_params(ours) == n_params(ref) == expected


# ---- gradients ----------------------------------------------------------------------------

@pytest.mark.parametrize("kind,tokens", [("avg_pool", 4), ("attention_pool", 4), ("c_abstractor", 4), ("mlp", 64)])
def test_gradients_reach_every_parameter(kind, tokens):
    m = make(kind, tokens)
    out = m(torch.randn(2, GRID * GRID, IN))
    (out * torch.randn_like(out)).sum().backward()  # random weights: a plain sum cancels through LayerNorm
    for name, p in m.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


# ---- attention pooling parity with open_clip's AttentionalPooler ----------------------------

@pytest.mark.parametrize("in_dim,tokens,heads,grid", [(IN, 16, 8, GRID), (HID, 4, 4, GRID), (IN, 1, 1, 4),
                                                      (HID, 64, 2, 16)])
def test_attention_pool_matches_open_clip(in_dim, tokens, heads, grid):
    """Our pooler is open_clip's AttentionalPooler (the one CoCa uses) followed by the projection: the same
    parameters give the same tokens, and a fresh one starts with queries as spread as open_clip's."""
    from open_clip.transformer import AttentionalPooler

    ours = make("attention_pool", tokens, in_dim=in_dim, heads=heads, grid=grid)
    ref = AttentionalPooler(d_model=HID, context_dim=in_dim, n_head=heads, n_queries=tokens)
    with torch.no_grad():  # random norms too, so that a norm applied to the wrong side shows
        for p in list(ours.query_norm.parameters()) + list(ours.norm.parameters()):
            p.normal_()
    ref.load_state_dict({"query": ours.queries, "ln_q.weight": ours.query_norm.weight,
                         "ln_q.bias": ours.query_norm.bias, "ln_k.weight": ours.norm.weight,
                         "ln_k.bias": ours.norm.bias, **{f"attn.{k}": v for k, v in ours.attn.state_dict().items()}})
    x = torch.randn(3, grid * grid, in_dim)
    torch.testing.assert_close(ours(x), ours.proj(ref(x)), rtol=1e-5, atol=1e-5)
    fresh = AttentionalPooler(d_model=HID, context_dim=in_dim, n_head=heads, n_queries=max(tokens, 16))
    spread = make("attention_pool", max(tokens, 16), in_dim=in_dim, heads=heads, grid=grid).queries.std().item()
    assert abs(spread - fresh.query.std().item()) < 0.35 and spread > 0.5  # standard normals, not near zero


# ---- C-Abstractor parity with an independent rebuild of Honeybee's --------------------------

class Permute(nn.Module):
    def __init__(self, *dims: int):
        super().__init__()
        self.dims = dims

    def forward(self, x):
        return x.permute(*self.dims)


def channel_ln(c: int) -> nn.Sequential:  # LayerNorm over channels of a (B, C, H, W) map
    return nn.Sequential(Permute(0, 2, 3, 1), nn.LayerNorm(c, eps=1e-5), Permute(0, 3, 1, 2))


class RefBottleneck(nn.Module):
    """timm RegNet Bottleneck(bottle_ratio=1, group_size=1, se_ratio=0.25, SiLU, LayerNorm2d), stride 1."""

    def __init__(self, ci: int, co: int):
        super().__init__()
        r = int(round(ci / 4))
        self.branch = nn.Sequential(
            nn.Conv2d(ci, co, 1, bias=False), channel_ln(co), nn.SiLU(),
            nn.Conv2d(co, co, 3, padding=1, groups=co, bias=False), channel_ln(co), nn.SiLU(),
        )
        self.gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(co, r, 1), nn.SiLU(), nn.Conv2d(r, co, 1), nn.Sigmoid()
        )
        self.tail = nn.Sequential(nn.Conv2d(co, co, 1, bias=False), channel_ln(co))
        self.skip = nn.Sequential(nn.Conv2d(ci, co, 1, bias=False), channel_ln(co)) if ci != co else nn.Identity()

    def forward(self, x):
        y = self.branch(x)
        y = self.tail(y * self.gate(y))
        return F.silu(y + self.skip(x))


class RefCAbstractor(nn.Module):
    def __init__(self, i: int, h: int, o: int, grid: int, tokens: int, depth: int):
        super().__init__()
        self.grid = grid
        self.pos = nn.Parameter(torch.randn(1, grid * grid, i) * 0.02)
        blocks = [RefBottleneck(i if k == 0 else h, h) for k in range(depth)]
        blocks.append(nn.AdaptiveAvgPool2d(math.isqrt(tokens)))
        blocks += [RefBottleneck(h, h) for _ in range(depth)]
        self.body = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.Linear(h, o), nn.SiLU(), nn.Linear(o, o))

    def forward(self, x):
        b, p, d = x.shape
        grid = (x + self.pos).permute(0, 2, 1).reshape(b, d, self.grid, self.grid)
        y = self.body(grid)
        return self.head(y.reshape(b, y.shape[1], -1).permute(0, 2, 1))


def randomize_(m: nn.Module) -> None:  # make LayerNorm affines and biases non-trivial too
    torch.manual_seed(1)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn_like(p) * 0.2 + (1.0 if p.ndim == 1 else 0.0) * torch.rand(()).item())


@pytest.mark.parametrize("in_dim,tokens", [(IN, 16), (HID, 9)])
def test_c_abstractor_matches_independent_reference(in_dim, tokens):
    ours = make("c_abstractor", tokens, in_dim=in_dim)
    ref = RefCAbstractor(in_dim, HID, OUT, GRID, tokens, 3)
    randomize_(ours)
    mine, theirs = list(ours.parameters()), list(ref.parameters())
    assert [p.shape for p in mine] == [p.shape for p in theirs]  # same pieces, same order
    with torch.no_grad():
        for a, b in zip(mine, theirs):
            b.copy_(a)
    x = torch.randn(2, GRID * GRID, in_dim)
    torch.testing.assert_close(ours(x), ref(x), rtol=1e-5, atol=1e-5)


def test_c_abstractor_matches_honeybee_timm_construction():
    """Honeybee's `CAbstractor.build_net`: RegStage(depth, Dv, hidden, stride=1, dilation=1, act_layer=nn.SiLU,
    norm_layer=LayerNorm2d), AdaptiveAvgPool2d, RegStage(depth, hidden, hidden, ...), readout MLP."""
    timm = pytest.importorskip("timm")
    from timm.layers import LayerNorm2d
    from timm.models.regnet import RegStage

    tokens = 16
    stage = dict(stride=1, dilation=1, act_layer=nn.SiLU, norm_layer=LayerNorm2d)
    honeybee = nn.Module()
    honeybee.pos_emb = nn.Parameter(torch.zeros(1, GRID * GRID, IN))
    honeybee.net = nn.Sequential(RegStage(3, IN, HID, **stage), nn.AdaptiveAvgPool2d(4), RegStage(3, HID, HID, **stage))
    honeybee.readout = nn.Sequential(nn.Linear(HID, OUT), nn.SiLU(), nn.Linear(OUT, OUT))
    ours = make("c_abstractor", tokens)
    randomize_(ours)
    honeybee.load_state_dict(ours.state_dict(), strict=True)  # same names, same shapes
    assert all(m.eps == 1e-5 for m in honeybee.modules() if isinstance(m, nn.LayerNorm)), timm.__version__

    x = torch.randn(2, GRID * GRID, IN)
    y = (x + honeybee.pos_emb).transpose(1, 2).reshape(2, IN, GRID, GRID)
    y = honeybee.readout(honeybee.net(y).flatten(2).transpose(1, 2))
    torch.testing.assert_close(ours(x), y, rtol=1e-5, atol=1e-5)


# ---- registry ------------------------------------------------------------------------------

def test_registry_and_unknown_kind():
    assert set(CONNECTORS) == {"avg_pool", "attention_pool", "c_abstractor", "mlp"}
    with pytest.raises(ValueError) as err:
        make("perceiver", 16)
    for name in CONNECTORS:
        assert name in str(err.value)
