"""Shared fixtures. Nothing here touches the network: hubs are forced offline."""
from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "recipes" / "tiny.yaml"
# the embedded corpus at test size (SynthConfig fields)
SMALL_CORPUS = dict(seed=0, caption_samples=120, interleaved_samples=60, text_samples=60, eval_samples=40,
                    samples_per_shard=40)


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory) -> Path:
    """A small embedded corpus, written once per test session."""
    from mm1.config.schema import SynthConfig
    from mm1.data.synth import write_corpus

    root = tmp_path_factory.mktemp("synth")
    write_corpus(root, SynthConfig(**SMALL_CORPUS))
    return root


@pytest.fixture
def tiny_overrides(synth_root, tmp_path) -> list[str]:
    """Overrides that point the tiny recipe at the small corpus and a temporary run folder."""
    return [f"data.root={synth_root}", "data.synth=null", f"output.dir={tmp_path / 'run'}",
            "train.batch_size=4", "train.log_every=1"]
