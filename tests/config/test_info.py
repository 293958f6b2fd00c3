"""`mm1 info`: parameter counts on the meta device, and its JSON interface."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mm1.build import build, param_counts
from mm1.config import load_config
from mm1.info import format_info, info
from mm1.model.connectors import CONNECTORS
from mm1.train.mfu import image_flops
from tests.conftest import ROOT, TINY


def test_info_counts_match_a_real_build():
    cfg = load_config(TINY)
    _, model = build(cfg)
    assert info(cfg)["params"] == param_counts(model)


@pytest.mark.slow
def test_info_json_interface():
    proc = subprocess.run([sys.executable, "-m", "mm1", "info", str(TINY), "--json", "model.connector.num_tokens=9"],
                          capture_output=True, text=True, cwd=ROOT, check=True)
    result = json.loads(proc.stdout)
    for key in ("vision", "connector", "decoder", "total", "trainable"):
        assert isinstance(result["params"][key], int) and result["params"][key] > 0
    assert result["params"]["total"] == sum(result["params"][k] for k in ("vision", "connector", "decoder"))
    assert result["tokens_per_image"] == 9


def test_info_says_what_the_mixture_weights_are_shares_of():
    assert "mixture: caption 0.45 / interleaved 0.45 / text 0.1 (shares of the documents)" in format_info(info(
        load_config(TINY)))
    assert "(shares of the tokens)" in format_info(info(load_config(TINY, ["data.mixture_unit=tokens"])))


def test_info_builds_a_large_encoder_without_memory():
    cfg = load_config(TINY, ["model.vision.name=ViT-H-14-378-quickgelu", "model.vision.image_size=378", "model.connector.num_tokens=144",
                             "data.seq_len=512", "model.vision.freeze=true"])
    result = info(cfg)
    assert 600e6 < result["params"]["vision"] < 700e6  # ViT-H/14 tower, no text tower
    assert result["patches_per_image"] == 27 * 27
    assert result["params"]["trainable"] == result["params"]["total"] - result["params"]["vision"]


@pytest.mark.parametrize("kind", sorted(CONNECTORS))
def test_image_flops_counts_every_connector(kind):
    """The trainer's FLOP count runs one image through encoder and connector (attention_pool once failed here)."""
    cfg = load_config(TINY, [f"model.connector.kind={kind}", "model.connector.num_tokens=64" if kind == "mlp" else
                             "model.connector.num_tokens=16"])
    _, model = build(cfg)
    assert image_flops(model) > 0
    assert all(p.grad is None for p in model.parameters())  # counting leaves no gradients behind


def test_info_prints_the_learning_rate_that_auto_gives(capsys):
    """The lr `mm1 pretrain` trains with: MM1's law on the built model's non-embedding decoder parameters."""
    from mm1.cli import main
    from mm1.train.optim import resolve_lr

    cfg = load_config(TINY)
    lr, wd = resolve_lr(cfg.optim, param_counts(build(cfg)[1])["decoder_non_embedding"])
    assert main(["info", str(TINY)]) == 0
    assert (f"learning rate: {lr:.3g} peak (optim.lr: auto, MM1's law exp(-0.4214 ln N - 0.5535) with N = "
            f"3,213,568 non-embedding decoder parameters), weight decay {wd:.3g}") in capsys.readouterr().out
    assert main(["info", str(TINY), "optim.lr=3e-4", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["lr"] == {"peak": 3e-4, "weight_decay": pytest.approx(3e-5),
                                                         "auto": False}
