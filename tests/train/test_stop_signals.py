"""SIGUSR1 and SIGUSR2, what a scheduler such as Slurm is asked to send before a time limit, stop a run at the
next step boundary after a checkpoint, as SIGTERM does (tests/train/test_resume.py)."""
from __future__ import annotations

import signal

import pytest

from mm1.config import load_config
from mm1.train.pretrain import build_trainer
from mm1.train.resume import latest_checkpoint
from tests.conftest import TINY
from tests.train.test_resume import stop_after


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGUSR1, signal.SIGUSR2], ids=["USR1", "USR2"])
def test_user_signals_checkpoint_and_stop(tiny_overrides, tmp_path, sig):
    trainer = build_trainer(load_config(TINY, [*tiny_overrides, "train.steps=5"]))
    stop_after(trainer, 2, sig)
    try:
        assert trainer.run() is False and trainer.stopped_by == sig
    finally:
        trainer.close()
    assert latest_checkpoint(tmp_path / "run").name == "step_00000002"
    assert signal.getsignal(sig) is signal.SIG_DFL  # the handler is the run's only
