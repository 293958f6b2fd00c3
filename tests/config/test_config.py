"""Recipes, overrides, derived values and every kind of config error."""
from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from mm1.config import ConfigError, config_from_dict, load_config
from tests.conftest import ROOT, TINY


def test_tiny_recipe_loads_with_derived_values():
    cfg = load_config(TINY)
    assert cfg.model.vision.image_size == 64
    assert cfg.model.decoder.num_kv_heads == cfg.model.decoder.num_heads
    assert cfg.model.decoder.max_position_embeddings == cfg.data.seq_len
    assert cfg.model.decoder.intermediate_size % 64 == 0


def test_overrides_apply_before_derived_values():
    cfg = load_config(TINY, ["optim.lr=3e-4", "model.connector.kind=avg_pool", "data.seq_len=256",
                             "data.mixture.caption=0.5"])
    assert cfg.optim.lr == 3e-4
    assert cfg.model.connector.kind == "avg_pool"
    assert cfg.model.decoder.max_position_embeddings == 256  # derived after the override, not stale
    assert cfg.data.mixture["caption"] == 0.5


def test_mlp_connector_derives_all_patches():
    cfg = load_config(TINY, ["model.connector.kind=mlp", "model.connector.num_tokens=null"])
    assert cfg.model.connector.num_tokens == 64


def test_named_open_clip_model_fills_dims():
    cfg = load_config(TINY, ["model.vision.name=ViT-L-14", "model.vision.image_size=336",
                             "data.seq_len=512", "model.connector.num_tokens=144"])
    v = cfg.model.vision
    assert (v.width, v.layers, v.patch_size, v.heads) == (1024, 24, 14, 16)


@pytest.mark.parametrize(
    "override, path, fragment",
    [
        ("model.vison.width=3", "model.vison", "allowed keys here"),  # unknown key
        ("train.steps=abc", "train.steps", "expected int"),  # wrong type
        ("train.steps=true", "train.steps", "expected int"),
        ("model.connector.kind=conv", "model.connector.kind", "attention_pool, avg_pool, c_abstractor, mlp"),
        ("model.decoder.arch=gpt9", "model.decoder.arch", "llama"),
        ("model.connector.num_tokens=15", "model.connector.num_tokens", "perfect square"),  # invalid combination
        ("model.connector.num_tokens=100", "model.connector.num_tokens", "at most 64"),
        ("model.vision.image_size=60", "model.vision.image_size", "multiple"),
        ("data.mixture.video=1.0", "data.mixture.video", "allowed: caption, interleaved, text"),
        ("data.sources.text.kind=audio", "data.sources.text.kind", "caption, interleaved, text"),
        ("data.mixture_unit=bytes", "data.mixture_unit", "'bytes' is not allowed; allowed: documents, tokens"),
        ("train.precision=fp8", "train.precision", "auto, bf16, fp32"),
        ("optim.lr=fast", "optim.lr", "auto"),
        ("model.vision.name=ViT-Q-99", "model.vision.name", "ViT-L-14"),
    ],
)
def test_config_errors_name_the_key_path(override, path, fragment):
    with pytest.raises(ConfigError) as err:
        load_config(TINY, [override])
    assert str(err.value).startswith(path)
    assert fragment in str(err.value)


def test_unknown_key_in_yaml_names_full_path():
    data = yaml.safe_load(TINY.read_text())
    data["optim"]["learning_rate"] = 1e-3
    with pytest.raises(ConfigError, match=r"^optim\.learning_rate: unknown key; allowed keys here: .*lr"):
        config_from_dict(data)


@pytest.mark.slow
@pytest.mark.parametrize("override, message", [
    ("model.connector.num_tokens=10", "model.connector.num_tokens: 10"),
    ("data.mixture_unit=bytes", "data.mixture_unit: 'bytes' is not allowed; allowed: documents, tokens"),
])
def test_cli_config_error_exits_2_before_building(tmp_path, override, message):
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "mm1", "pretrain", str(TINY), override, f"output.dir={out}"],
        capture_output=True, text=True, cwd=ROOT,
    )
    assert proc.returncode == 2
    assert message in proc.stderr
    assert not out.exists()  # nothing was built or written


def test_global_batch_sets_grad_accum_for_the_process_count():
    from mm1.train.pretrain import fit_global_batch

    cfg = load_config(ROOT / "recipes" / "mm1_3b.yaml")
    fit_global_batch(cfg, world_size=8)
    assert cfg.train.grad_accum * cfg.train.batch_size * 8 == 512
    fit_global_batch(cfg, world_size=1)
    assert cfg.train.grad_accum == 64
    with pytest.raises(ConfigError, match="train.global_batch_size: 512 is not a multiple"):
        fit_global_batch(cfg, world_size=3)


def test_recipe_base_merges_mapping_by_mapping(tmp_path):
    (tmp_path / "child.yaml").write_text(
        f"base: {TINY}\nmodel: {{decoder: {{num_layers: 2}}}}\ndata: {{mixture: {{text: 0.2}}}}\n"
        "train: {threads: null}\n")
    (tmp_path / "grandchild.yaml").write_text("base: child.yaml\ntrain: {steps: 7}\n")
    cfg, tiny = load_config(tmp_path / "grandchild.yaml"), load_config(TINY)
    assert cfg.model.decoder.num_layers == 2 and cfg.model.decoder.hidden_size == tiny.model.decoder.hidden_size
    assert cfg.data.mixture == {"caption": 0.45, "interleaved": 0.45, "text": 0.2}  # one key replaced
    assert cfg.train.steps == 7 and cfg.train.batch_size == tiny.train.batch_size
    assert cfg.model.connector == tiny.model.connector


def test_recipe_base_errors_name_the_file(tmp_path):
    (tmp_path / "a.yaml").write_text("base: missing.yaml\n")
    with pytest.raises(ConfigError, match=r"a.yaml: base: recipe '.*missing.yaml' not found"):
        load_config(tmp_path / "a.yaml")
    (tmp_path / "b.yaml").write_text("base: c.yaml\n")
    (tmp_path / "c.yaml").write_text("base: b.yaml\n")
    with pytest.raises(ConfigError, match="base chain loops"):
        load_config(tmp_path / "b.yaml")
    (tmp_path / "d.yaml").write_text("base: [x]\n")
    with pytest.raises(ConfigError, match="base: expected a recipe file name"):
        load_config(tmp_path / "d.yaml")


def test_renamed_keys_of_older_configs_still_load():
    with pytest.warns(FutureWarning, match="eval.suite is now eval.tasks"):
        cfg = config_from_dict({**yaml.safe_load(open(TINY)), "eval": {"suite": "synth_vqa", "shots": [0]}})
    assert cfg.eval.tasks == "synth_vqa"
    with pytest.raises(ConfigError, match="eval.suite: renamed eval.tasks"):
        config_from_dict({**yaml.safe_load(open(TINY)), "eval": {"suite": "a", "tasks": "b"}})
