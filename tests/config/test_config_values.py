"""Every config value is checked before anything is built: a table of bad values for every number of the
typed tree (from its types and its fields' `allowed` metadata), each expected to exit 2 naming the field."""
from __future__ import annotations

import dataclasses
import typing

import pytest
import yaml

from mm1.cli import main
from mm1.config import Config, ConfigError, config_from_dict, load_config
from mm1.config.tree import _optional_inner
from tests.conftest import TINY

SKIP = {"eval.shots"}  # checked with eval.suite, elsewhere
BAD = {">0": ["0", "-1"], ">=0": ["-1"], "[0,1]": ["-0.1", "1.5"], "[0,1)": ["-0.1", "1.0"], None: []}
NOT_FINITE = [".nan", ".inf", "-.inf"]
RECIPE = yaml.safe_load(TINY.read_text())
SOURCE = next(iter(load_config(TINY).data.sources))  # a key of the recipe's mappings


def numeric_fields(cls=Config, path: str = ""):
    """(key path, rule) for every number of the tree; list items as `path[0]`, mapping values by a known key."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key, tp, rule = f"{path}.{f.name}" if path else f.name, _optional_inner(hints[f.name]), f.metadata.get("allowed")
        origin, args = typing.get_origin(tp), typing.get_args(tp)
        if dataclasses.is_dataclass(tp):
            yield from numeric_fields(tp, key)
        elif origin is dict and dataclasses.is_dataclass(args[1]):
            yield from numeric_fields(args[1], f"{key}.{SOURCE}")
        elif origin is dict and args[1] in (int, float):
            yield f"{key}.{SOURCE}", rule
        elif origin is list and args[0] in (int, float):
            yield f"{key}[0]", rule
        elif tp in (int, float) or float in args:
            yield key, rule


def cases():
    for key, rule in numeric_fields():
        if key.split("[")[0] not in SKIP:
            yield from ((key, value) for value in NOT_FINITE + BAD[rule])


def override(key: str, value: str) -> str:
    if key == "optim.betas[0]":
        return f"optim.betas=[{value}, 0.95]"
    return f"{key}={value}"


def test_the_walk_covers_the_whole_tree():
    keys = {key for key, _ in numeric_fields()}
    assert {"train.global_batch_size", "optim.grad_clip", "model.connector.heads", "model.connector.depth",
            "model.vision.mlp_ratio", "model.decoder.rope_theta", "data.max_skip_rate", "train.threads",
            "model.decoder.moe.top_k", "data.synth.image_size", "optim.betas[0]", "data.mixture.caption"} <= keys
    assert len(list(cases())) > 200


@pytest.mark.parametrize("key, value", list(cases()))
def test_every_bad_number_is_a_config_error_naming_the_field(key, value):
    with pytest.raises(ConfigError) as err:
        config_from_dict(RECIPE, [override(key, value)])
    assert str(err.value).startswith(key.split("[")[0]), err.value


@pytest.mark.parametrize("key, value", list(cases())[::25])
def test_bad_numbers_exit_2_on_the_command_line(key, value, capsys):
    assert main(["info", str(TINY), override(key, value), "--json"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"mm1: config error: {key.split('[')[0]}") and ("allowed:" in err or "expected" in err), err


@pytest.mark.parametrize("items, fragment", [
    (["train.steps=[1, 2"], "train.steps: '[1, 2' is not a plain YAML value"),
    (["optim.lr=!!python/object/apply:os.system ['touch MARKER']"], "optim.lr: "),
    (["data.mixture={1: 0.5}"], "data.mixture: key 1 is a int; allowed: string keys"),
    (["model.decoder.hidden_size=96", "model.decoder.num_heads=32"], "odd head dim (3)"),
])
def test_overrides_that_are_no_plain_values_exit_2(items, fragment, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["info", str(TINY), *items]) == 2
    assert fragment in capsys.readouterr().err
    assert not (tmp_path / "MARKER").exists()  # a python tag never runs


def test_recipe_with_a_non_string_key_exits_2(tmp_path, capsys):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(TINY.read_text() + "\n3: three\n")
    assert main(["info", str(recipe)]) == 2
    assert "<root>: key 3 is a int; allowed: string keys" in capsys.readouterr().err


@pytest.mark.parametrize("item, key", [
    ("model.decoder.pretrained=/nonexistent/llm", "model.decoder.pretrained"),
    ("model.vision.pretrained=/nonexistent/vit.pt", "model.vision.pretrained"),
    ("model.tokenizer.kind=pretrained model.tokenizer.path=/nonexistent/tok", "model.tokenizer.path"),
])
def test_missing_pretrained_paths_exit_2_before_anything_is_written(item, key, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["pretrain", str(TINY), *item.split(), f"output.dir={run}"]) == 2
    assert f"config error: {key}: '/nonexistent" in capsys.readouterr().err
    assert not run.exists()
