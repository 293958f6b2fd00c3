"""Shared fixtures. Nothing here touches the network: hubs are forced offline."""
from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
if "PYTEST_XDIST_WORKER" in os.environ:  # workers share the cores: one torch thread each, set before torch loads
    os.environ.setdefault("OMP_NUM_THREADS", "1")
import atexit  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402

# mm1's user cache (the embedded corpus's default folder, warm starts) is a fresh folder of this session, for
# every test and every subprocess: no test reads or writes the user's real ~/.cache/mm1.
os.environ["MM1_CACHE"] = tempfile.mkdtemp(prefix="mm1-test-cache-")
atexit.register(shutil.rmtree, os.environ["MM1_CACHE"], ignore_errors=True)
os.environ["HF_MODULES_CACHE"] = tempfile.mkdtemp(prefix="mm1-test-hf-modules-")  # exported remote code loads
atexit.register(shutil.rmtree, os.environ["HF_MODULES_CACHE"], ignore_errors=True)

import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "recipes" / "tiny.yaml"
FIXTURES = ROOT / "tests" / "fixtures"
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


@pytest.fixture(scope="session")
def corner_root(tmp_path_factory) -> Path:
    """The eval sets of a small corpus with corner and striped scenes (data.synth.corner_scenes 0.3,
    striped_scenes 0.7; no training shards), written once per test session: the only kind of corpus with
    synth_corner and synth_stripes questions."""
    from mm1.config.schema import SynthConfig
    from mm1.data.synth import write_corpus

    root = tmp_path_factory.mktemp("corner")
    write_corpus(root, SynthConfig(**{**SMALL_CORPUS, "caption_samples": 0, "interleaved_samples": 0,
                                      "text_samples": 0, "corner_scenes": 0.3, "striped_scenes": 0.7}))
    return root


@pytest.fixture(scope="session")
def gallery_root(tmp_path_factory) -> Path:
    """A small corpus with galleries (data.synth.gallery_docs 0.5; no caption or text shards), written once per
    test session: the only kind of corpus with synth_caption_style references."""
    from mm1.config.schema import SynthConfig
    from mm1.data.synth import write_corpus

    root = tmp_path_factory.mktemp("gallery")
    write_corpus(root, SynthConfig(**{**SMALL_CORPUS, "caption_samples": 0, "text_samples": 0, "gallery_docs": 0.5}))
    return root


@pytest.fixture
def tiny_overrides(synth_root, tmp_path) -> list[str]:
    """Overrides that point the tiny recipe at the small corpus and a temporary run folder."""
    return [f"data.root={synth_root}", "data.synth=null", f"output.dir={tmp_path / 'run'}",
            "train.batch_size=4", "train.log_every=1"]


def build_tiny(*overrides: str, seed: int = 0):
    """(cfg, tokenizer, model) of the tiny recipe with `overrides`, weights from torch seed `seed`."""
    import torch

    from mm1.build import build
    from mm1.config import load_config

    cfg = load_config(TINY, list(overrides))
    torch.manual_seed(seed)
    tokenizer, model = build(cfg)
    return cfg, tokenizer, model


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(args: list[str], launcher: str = "torchrun") -> subprocess.CompletedProcess:
    """`mm1 pretrain` of the tiny recipe with `args`, as 2 gloo processes started by torchrun or accelerate."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launch = {
        "torchrun": ["-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1"],
        # README's accelerate command; --multi_gpu launches N processes, which use gloo on a CPU machine
        "accelerate": ["-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                       "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                       "--main_process_ip", "127.0.0.1"],
    }[launcher]
    port = ["--master-port" if launcher == "torchrun" else "--main_process_port", str(free_port())]
    cmd = [sys.executable, *launch, *port, "-m", "mm1", "pretrain", str(TINY), *args]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)


def mm1_cli(*args: str, cwd: Path, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """`mm1 ARGS` as a user types it, run in `cwd` (e.g. an empty folder), with this checkout's mm1."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    full_env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "mm1", *args], cwd=cwd, capture_output=True, text=True,
                          env=full_env, timeout=timeout)
