"""Multi-process training with gloo on the CPU: DDP and FSDP2 match a single process."""
from __future__ import annotations

import shutil

import pytest
import torch
from safetensors.torch import load_file

from mm1.config import load_config
from mm1.train.export import export
from mm1.train.metrics import read_metrics
from mm1.train.pretrain import pretrain
from mm1.train.resume import latest_checkpoint
from tests.conftest import TINY, torchrun
from tests.shards import write_caption_shards, write_text_shards

STEPS = 5


@pytest.fixture(scope="module")
def shard_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    write_caption_shards(root / "cap", shards=4, per_shard=12)
    write_text_shards(root / "txt", shards=2, per_shard=12)
    return root


def overrides(root, run, *extra):
    return [
        f"data.root={root}", "data.synth=null", f"output.dir={run}",
        "data.sources={cap: {kind: caption, shards: ['cap/*.tar']}, txt: {kind: text, shards: ['txt/*.tar']}}",
        "data.mixture={cap: 0.8, txt: 0.2}", "train.batch_size=3", "train.log_every=1", f"train.steps={STEPS}",
        "model.decoder.num_layers=2", "model.vision.layers=2", "model.decoder.hidden_size=128",
        "data.seq_len=96", "optim.lr=2e-3", "optim.warmup_steps=2", *extra,
    ]


@pytest.fixture(scope="module")
def reference(shard_root, tmp_path_factory):
    """One process, two loader workers, two micro-batches: the same global batches as two ranks."""
    run = tmp_path_factory.mktemp("ref") / "run"
    pretrain(load_config(TINY, overrides(shard_root, run, "data.num_workers=2", "train.grad_accum=2")))
    return [r["loss"] for r in read_metrics(run)]


@pytest.mark.slow
@pytest.mark.parametrize("strategy,launcher", [("ddp", "torchrun"), ("fsdp", "torchrun"), ("fsdp", "accelerate")])
def test_two_processes_match_one(shard_root, tmp_path, reference, strategy, launcher):
    run = tmp_path / "run"
    proc = torchrun(overrides(shard_root, run, f"parallel.strategy={strategy}"), launcher)
    assert proc.returncode == 0, proc.stderr[-3000:]
    losses = [r["loss"] for r in read_metrics(run)]
    assert len(losses) == STEPS
    assert losses == pytest.approx(reference, rel=1e-5, abs=1e-6)
    assert (run / "checkpoint" / "model.safetensors").is_file()


@pytest.fixture(scope="module")
def sharded_run(shard_root, tmp_path_factory):
    """A 2-process FSDP2 run with checkpoints at steps 3 and 5 (the end)."""
    run = tmp_path_factory.mktemp("fsdp") / "run"
    proc = torchrun(overrides(shard_root, run, "parallel.strategy=fsdp", "train.checkpoint_every=3"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run


@pytest.mark.slow
def test_fsdp_checkpoint_is_sharded_per_rank_and_exports_whole(sharded_run, tmp_path):
    step = sharded_run / "checkpoints" / "step_00000005"
    assert sorted(p.name for p in (step / "state").glob("*.distcp")) == ["__0_0.distcp", "__1_0.distcp"]
    assert not (step / "model.safetensors").exists()  # no rank gathered the full state
    exported = export(sharded_run / "checkpoints" / "step_00000005", tmp_path / "export")
    final = load_file(str(sharded_run / "checkpoint" / "model.safetensors"))  # gathered at the end
    weights = load_file(str(exported / "model.safetensors"))
    assert weights.keys() == final.keys()
    assert all(torch.equal(weights[k], final[k]) for k in final)


@pytest.mark.slow
def test_fsdp_sharded_checkpoint_exports_to_hf_with_the_runs_logits(sharded_run, tmp_path):
    import mm1
    from transformers import AutoModelForImageTextToText

    from mm1.model.vision import normalise_pixels

    export(sharded_run / "checkpoints" / "step_00000005", tmp_path / "hf", "hf")
    hf = AutoModelForImageTextToText.from_pretrained(tmp_path / "hf", trust_remote_code=True)
    final = mm1.load(sharded_run / "checkpoint")
    T, image = final.model.tokens_per_image, final.tokenizer.convert_tokens_to_ids("<image>")
    ids = torch.tensor([[final.tokenizer.bos_token_id] + [image] * T + [10, 11, 12]])
    pixels = torch.randint(0, 256, (1, 3, 64, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = final.model(ids, pixels).logits
        theirs = hf(input_ids=ids, pixel_values=normalise_pixels(pixels)).logits
    torch.testing.assert_close(theirs, ours, atol=2e-5, rtol=1e-5)


def resumable_copy(run, dest, step: int):
    """The run's checkpoints up to `step`, as if it had been stopped right after saving it."""
    shutil.copytree(run / "checkpoints", dest / "checkpoints")
    (dest / "checkpoints" / "latest").write_text(f"step_{step:08d}")
    return dest


@pytest.mark.slow
def test_fsdp_checkpoint_saved_on_two_resumes_on_one(shard_root, sharded_run, tmp_path, reference):
    resumed = resumable_copy(sharded_run, tmp_path / "resumed", 3)
    pretrain(load_config(TINY, overrides(shard_root, resumed, "data.num_workers=2", "train.grad_accum=2")),
             resume=str(latest_checkpoint(resumed)))
    losses = [r["loss"] for r in read_metrics(resumed)]
    assert losses == pytest.approx(reference[3:], rel=1e-5, abs=1e-6)  # same data slots: exact position


@pytest.mark.slow
def test_fsdp_checkpoint_resumes_on_two(shard_root, sharded_run, tmp_path, reference):
    resumed = resumable_copy(sharded_run, tmp_path / "resumed", 3)
    proc = torchrun(["--resume", "auto", *overrides(shard_root, resumed, "parallel.strategy=fsdp")])
    assert proc.returncode == 0, proc.stderr[-3000:]
    losses = [r["loss"] for r in read_metrics(resumed)]
    assert losses == pytest.approx(reference[3:], rel=1e-5, abs=1e-6)


@pytest.mark.slow
def test_when_rank_0_fails_preparing_the_corpus_every_rank_stops(tmp_path):
    """Rank 0 alone writes the embedded corpus; here it cannot (the folder's parent is a file). The other rank
    hears it from rank 0 and stops with an error that says so, rather than waiting at a barrier until the
    launcher tears the group down (torchrun does; a launcher that starts each rank on its own may not) or the
    collective's timeout ends it."""
    (tmp_path / "a_file").write_text("not a folder")
    root, run = tmp_path / "a_file" / "corpus", tmp_path / "run"
    proc = torchrun([f"data.root={root}", f"output.dir={run}", "train.steps=2"])
    assert proc.returncode != 0
    log = proc.stdout + proc.stderr
    assert "rank 1: rank 0 failed while preparing the run" in log
    assert "a_file" in log  # rank 0's own error names the path
    assert (tmp_path / "a_file").read_text() == "not a folder"
