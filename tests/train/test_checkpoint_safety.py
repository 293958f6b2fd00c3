"""A checkpoint is data, never code: tampered pickles are refused and nothing in them runs. Weights that do
not fit the model (another version of mm1 wrote them) are refused with the tensors named, not a traceback."""
from __future__ import annotations

import pickle
import shutil
import warnings

import pytest
import torch
from safetensors.torch import load_file, save_file

import mm1
from mm1.cli import main
from mm1.config import load_config
from mm1.errors import CheckpointError
from mm1.train.pretrain import pretrain
from mm1.train.checkpoints import _load_sharded, _save_sharded
from mm1.train.resume import latest_checkpoint
from tests.conftest import TINY


class Payload:
    """Unpickled by plain pickle (or torch.load(weights_only=False)), it writes `marker`."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('ran')",)


@pytest.fixture(scope="module")
def run(tiny_run_overrides):
    return pretrain(load_config(TINY, tiny_run_overrides))


@pytest.fixture(scope="module")
def tiny_run_overrides(synth_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("safety") / "run"
    return [f"data.root={synth_root}", "data.synth=null", f"output.dir={out}", "train.batch_size=2",
            "train.steps=1", "model.decoder.num_layers=1", "model.vision.layers=1", "train.threads=1"]


def mm1_cli(capsys, *args) -> tuple[int, str]:
    """The command line's exit status and stderr (in this process: a payload that ran would show here too)."""
    capsys.readouterr()
    rc = main([str(a) for a in args])
    return rc, capsys.readouterr().err


@pytest.mark.parametrize("name", ["rng.pt", "optimizer.pt"])
def test_tampered_training_state_is_refused_on_resume(run, tiny_run_overrides, tmp_path, name, capsys):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    marker = tmp_path / "marker"
    torch.save({"optimizer": Payload(marker)} if name == "optimizer.pt" else [Payload(marker)],
               latest_checkpoint(copy) / name)
    overrides = [o for o in tiny_run_overrides if not o.startswith("output.dir")]
    rc, err = mm1_cli(capsys, "pretrain", TINY, *overrides, f"output.dir={copy}", "train.steps=2", "--resume", "auto")
    assert rc == 2 and "refused to load" in err and name in err, err[-2000:]
    assert not marker.exists()


def tampered_metadata(run, tmp_path):
    """The run's model folder with a `state/.metadata` pickle that would write a marker."""
    folder = tmp_path / "ckpt"
    shutil.copytree(run / "checkpoint", folder)
    (folder / "state").mkdir()
    (folder / "state" / ".metadata").write_bytes(pickle.dumps(Payload(tmp_path / "marker")))
    return folder


def test_tampered_dcp_metadata_is_refused_by_load_eval_and_export(run, tmp_path, capsys):
    folder = tampered_metadata(run, tmp_path)
    with pytest.raises(CheckpointError, match="not allowed in checkpoint metadata"):
        mm1.load(folder)
    for args in (["export", folder, "--out", tmp_path / "export"],
                 ["eval", folder, "--tasks", "synth_vqa", "--limit", "2", "--out", tmp_path / "eval"]):
        rc, err = mm1_cli(capsys, *args)
        assert rc == 2 and "refused to load" in err, err[-2000:]
    assert not (tmp_path / "marker").exists()


def test_real_sharded_state_still_loads_through_the_safe_reader(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(2, 4)).sum().backward()
    optimizer.step()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _save_sharded(tmp_path / "state", model, optimizer)
    fresh = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    fresh_opt = torch.optim.AdamW(fresh.parameters(), lr=5.0)
    _load_sharded(tmp_path / "state", fresh, fresh_opt)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), fresh.state_dict().values()))
    assert fresh_opt.param_groups[0]["lr"] == 1e-3  # non-tensor values (read as plain data) are restored
    saved, loaded = optimizer.state_dict()["state"][0], fresh_opt.state_dict()["state"][0]
    assert torch.equal(saved["exp_avg"], loaded["exp_avg"])


def older_weights(folder):
    """`folder`'s weights as a version of mm1 with another layout would have saved them: one tensor gone,
    one with another shape."""
    weights = load_file(str(folder / "model.safetensors"))
    gone = sorted(k for k in weights if k.endswith(".bias"))[0]
    del weights[gone]
    reshaped = sorted(k for k in weights if weights[k].ndim == 2)[0]
    weights[reshaped] = weights[reshaped].unsqueeze(0)
    save_file(weights, str(folder / "model.safetensors"))
    return gone, reshaped


def test_weights_that_do_not_fit_are_named_by_load_eval_and_resume(run, tiny_run_overrides, tmp_path, capsys):
    folder = tmp_path / "ckpt"
    shutil.copytree(run / "checkpoint", folder)
    gone, reshaped = older_weights(folder)
    with pytest.raises(CheckpointError, match="do not fit") as err:
        mm1.load(folder)
    assert f"missing: {gone}" in str(err.value) and f"{reshaped} saved (1, " in str(err.value)
    rc, err = mm1_cli(capsys, "eval", folder, "--tasks", "synth_vqa", "--limit", "2", "--out", tmp_path / "eval")
    assert rc == 2 and "do not fit" in err and gone in err, err[-2000:]
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    older_weights(latest_checkpoint(copy))
    overrides = [o for o in tiny_run_overrides if not o.startswith("output.dir")]
    rc, err = mm1_cli(capsys, "pretrain", TINY, *overrides, f"output.dir={copy}", "train.steps=2", "--resume", "auto")
    assert rc == 2 and "do not fit" in err and gone in err, err[-2000:]


def test_sharded_weights_that_do_not_fit_are_named(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _save_sharded(tmp_path / "state", model, torch.optim.AdamW(model.parameters()))
    other = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Linear(5, 2))
    with pytest.raises(CheckpointError, match=r"shape: 0.weight saved \(3, 4\), built \(5, 4\)"):
        _load_sharded(tmp_path / "state", other, torch.optim.AdamW(other.parameters()))
