"""Every shipped recipe parses and builds on the meta device; `mm1 info` sizes, FLOPs and memory."""
from __future__ import annotations

import json

import pytest
import torch
import yaml
from torch.utils.flop_counter import FlopCounterMode

from mm1.cli import main
from mm1.config import ConfigError, load_config, to_dict
from mm1.config.schema import DecoderConfig, MoEConfig
from mm1.info import GIB, info, memory_per_gpu, meta_model
from mm1.train.mfu import decoder_flops_per_token
from mm1.model.decoder import build_decoder
from tests.conftest import FIXTURES, ROOT

RECIPES = sorted((ROOT / "recipes").glob("*.yaml"))
# decoder parameters the paper names (3B-MoE: about 64B, 7B-MoE: about 47B in total)
NOMINAL = {"mm1_3b": 3e9, "mm1_7b": 7e9, "mm1_30b": 30e9, "mm1_3b_moe": 64e9, "mm1_7b_moe": 47e9,
           "ablation_base": 1.2e9}
PEAK_LR = {"mm1_3b": 6e-5, "mm1_7b": 4e-5, "mm1_30b": 2e-5, "mm1_3b_moe": 6e-5, "mm1_7b_moe": 4e-5}


def test_every_paper_recipe_is_shipped():
    assert set(NOMINAL) <= {p.stem for p in RECIPES}


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_recipe_builds_on_meta_and_info_sizes_match(recipe, capsys):
    assert main(["info", str(recipe), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    p = result["params"]
    assert p["total"] == p["vision"] + p["connector"] + p["decoder"]
    assert 0 < p["decoder_active"] <= p["decoder"]
    active_non_embedding = p["decoder_active"] - (p["decoder"] - p["decoder_non_embedding"])
    assert result["flops_per_token"] > 6 * active_non_embedding and result["flops_per_image"] > 0
    if recipe.stem in NOMINAL:
        assert abs(p["decoder"] / NOMINAL[recipe.stem] - 1) < 0.10, p["decoder"]


@pytest.mark.parametrize("name", sorted(NOMINAL))
def test_paper_recipes_carry_the_paper_training_settings(name):
    cfg = load_config(ROOT / "recipes" / f"{name}.yaml")
    assert (cfg.data.seq_len, cfg.data.max_images_per_seq, cfg.model.connector.num_tokens) == (4096, 16, 144)
    assert cfg.model.connector.kind == "c_abstractor" and cfg.model.connector.hidden == 1024
    assert cfg.data.mixture == {"interleaved": 0.45, "caption": 0.45, "text": 0.10}
    assert cfg.train.global_batch_size == 512 and cfg.train.steps == 200_000
    assert (cfg.optim.warmup_steps, cfg.optim.min_lr_ratio) == (2000, 0.1)
    if name == "ablation_base":
        assert (cfg.model.vision.patch_size, cfg.model.vision.image_size, cfg.model.vision.width) == (14, 336, 1024)
        return
    assert (cfg.model.vision.name, cfg.model.vision.pretrained) == ("ViT-H-14-378-quickgelu", "dfn5b")
    assert cfg.optim.lr == PEAK_LR[name] and cfg.optim.weight_decay == pytest.approx(0.1 * cfg.optim.lr)
    m = cfg.model.decoder.moe
    if name.endswith("_moe"):
        experts_every = {"mm1_3b_moe": (64, 2), "mm1_7b_moe": (32, 4)}[name]
        assert (m.num_experts, m.every, m.top_k, m.aux_loss_coef, m.z_loss_coef) == (*experts_every, 2, 0.01, 0.001)
        assert m.init == "upcycle"
    else:
        assert m is None


@pytest.mark.slow
@pytest.mark.parametrize("size", ["3b", "7b"])
def test_moe_active_parameters_are_the_dense_model_plus_one_expert_and_router(size):
    dense = info(load_config(ROOT / "recipes" / f"mm1_{size}.yaml"))["params"]
    cfg = load_config(ROOT / "recipes" / f"mm1_{size}_moe.yaml")
    moe = info(cfg)["params"]
    d, m = cfg.model.decoder, cfg.model.decoder.moe
    moe_layers = d.num_layers // m.every
    expert, router = 3 * d.hidden_size * d.intermediate_size, m.num_experts * d.hidden_size
    assert moe["decoder"] == dense["decoder"] + moe_layers * ((m.num_experts - 1) * expert + router)
    assert moe["decoder_active"] == dense["decoder"] + moe_layers * ((m.top_k - 1) * expert + router)


@pytest.mark.parametrize("moe", [None, MoEConfig(num_experts=4, every=2)], ids=["dense", "moe"])
def test_flops_per_token_matches_counted_flops(moe):
    torch.manual_seed(0)
    cfg = DecoderConfig(hidden_size=64, num_layers=4, num_heads=4, num_kv_heads=2, intermediate_size=128,
                        max_position_embeddings=64, moe=moe)
    decoder = build_decoder(cfg, 100)
    decoder.config._attn_implementation = "eager"  # plain matmuls, which the counter sees on the CPU
    batch, seq = 2, 48
    with FlopCounterMode(display=False) as counter:
        decoder(torch.randint(0, 100, (batch, seq))).logits.float().sum().backward()
    formula = decoder_flops_per_token(decoder, seq)
    assert formula == pytest.approx(counter.get_total_flops() / (batch * seq), rel=0.01)


def test_memory_estimate_follows_the_layout():
    cfg = load_config(ROOT / "recipes" / "mm1_7b.yaml")
    model = meta_model(cfg)
    total = sum(p.numel() for p in model.parameters())
    eight, sixteen = memory_per_gpu(cfg, model, 8), memory_per_gpu(cfg, model, 16)
    assert eight["sharded_states_gib"] == pytest.approx(16 * total / 8 / GIB, abs=0.01)
    assert sixteen["sharded_states_gib"] == pytest.approx(eight["sharded_states_gib"] / 2, abs=0.01)
    assert sixteen["gathered_params_gib"] == eight["gathered_params_gib"]
    cfg.parallel.dp_replicate = 2  # hybrid: 2 replicas of 8 shards
    assert memory_per_gpu(cfg, model, 16)["dp_shard"] == 8
    assert memory_per_gpu(cfg, model, 16)["sharded_states_gib"] == pytest.approx(eight["sharded_states_gib"], abs=0.01)
    with pytest.raises(ConfigError, match="parallel.dp_replicate"):
        memory_per_gpu(cfg, model, 5)


PINNED = FIXTURES / "recipes"  # each recipe resolved before recipes could inherit


def _pinned_differences(want, got, path: str = "") -> list[str]:
    if isinstance(want, dict) and isinstance(got, dict):
        return [d for key in want for d in _pinned_differences(want[key], got.get(key), f"{path}.{key}".strip("."))]
    return [] if want == got else [f"{path}: pinned {want!r}, resolved {got!r}"]


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_resolved_recipe_equals_its_pinned_fields(recipe):
    """Recipes that inherit (`base:`) resolve to exactly what they held as whole files: every field of the
    pinned tree (fields added to the schema later are not pinned)."""
    want = json.loads((PINNED / f"{recipe.stem}.json").read_text())
    assert _pinned_differences(want, to_dict(load_config(recipe))) == []


def test_shared_recipes_inherit():
    bases = {p.stem: yaml.safe_load(p.read_text()).get("base") for p in RECIPES}
    assert bases["mm1_7b"] == bases["mm1_30b"] == bases["mm1_3b_moe"] == "mm1_3b.yaml"
    assert bases["mm1_7b_moe"] == "mm1_7b.yaml" and bases["tiny_moe"] == "tiny.yaml"
