"""The slurm launcher against a real single-node Slurm cluster (.ci/slurm.sh starts one; CI runs it as root
before the tests). Skipped when no Slurm is reachable, unless MM1_REQUIRE_SLURM is set (as CI sets it)."""
from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import time

import pytest

from mm1.ablate.slurm import QUEUED, RUNNING, job_states
from mm1.ablate.status import sweep_status
from mm1.cli import main
from tests.ablate.sweeps import write_grid

pytestmark = [pytest.mark.slurm, pytest.mark.slow, pytest.mark.xdist_group("slurm")]  # one worker: one small cluster
CPU_JOB = ["--launcher", "slurm", "--no-request-gpus", "--cpus-per-task", "1", "--time", "10"]


def _why_no_slurm() -> str | None:
    if not (shutil.which("sbatch") and shutil.which("squeue") and shutil.which("sinfo")):
        return "no sbatch / squeue / sinfo on PATH"
    try:
        import submitit  # noqa: F401
    except ImportError:
        return "submitit is not installed (pip install -e '.[slurm]')"
    proc = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=30)
    if proc.returncode != 0 or not {"idle", "mix", "alloc"} & set(proc.stdout.split()):
        return f"no Slurm node is up ({(proc.stderr or proc.stdout).strip() or 'sinfo lists none'})"
    return None


@pytest.fixture(scope="module")
def slurm():
    why = _why_no_slurm()
    if why and os.environ.get("MM1_REQUIRE_SLURM"):
        pytest.fail(f"MM1_REQUIRE_SLURM is set but {why}")
    if why:
        pytest.skip(f"{why}; `sudo .ci/slurm.sh` starts a single-node cluster")


def _wait_for(predicate, timeout: float, what: str) -> None:
    end = time.time() + timeout
    while not predicate():
        assert time.time() < end, f"timed out waiting for {what}"
        time.sleep(0.5)


def _rows(out) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "train_seconds"} for row in csv.DictReader((out / "results.csv").open())]


def test_connectors_tiny_through_slurm_gives_the_tables_of_local(slurm, tmp_path, synth_root, capsys):
    threads = max(1, len(os.sched_getaffinity(0)) // 2)  # what --jobs 2 gives each local run
    grid = ["ablate", "--grid", "connectors", "--preset", "tiny", "steps=8", "seeds=[0]", "findings=[]",
            "axes={connector: {values: [avg_pool, c_abstractor]}, tokens: {values: [4]}, resolution: {values: [32]}}",
            "eval={limit: 4, tasks: synth_vqa}", f"set={{data.root: {synth_root}, data.synth: null}}"]
    local, cluster = tmp_path / "local", tmp_path / "slurm"
    assert main(grid + ["--out", str(local), "--jobs", "2"]) == 0
    assert main(grid + ["--out", str(cluster), *CPU_JOB, "--cpus-per-task", str(threads)]) == 0
    rows = _rows(cluster)
    assert rows == _rows(local) and len(rows) == 2 and {r["status"] for r in rows} == {"finished"}  # 2 runs x 1 task
    assert (cluster / "summary.md").read_text() == (local / "summary.md").read_text()
    capsys.readouterr()
    assert main(grid + ["--out", str(cluster), "--status"]) == 0
    printed = capsys.readouterr().out
    for name in ("avg_pool_tok4_px32_s0", "c_abstractor_tok4_px32_s0"):
        job = json.loads((cluster / "runs" / name / "job.json").read_text())
        assert job["launcher"] == "slurm" and job["job_id"].isdigit()
        assert re.search(rf"^{name}\s+done\s+{job['job_id']}\s+train [\d.]+ s, eval [\d.]+ s$", printed, re.M)


def _job(folder) -> dict:
    return json.loads((folder / "job.json").read_text())


def _last_step(folder) -> int:
    lines = (folder / "metrics.jsonl").read_text().splitlines() if (folder / "metrics.jsonl").is_file() else []
    return json.loads(lines[-1])["step"] if lines else 0


def _state(out) -> tuple[str, str, str]:
    s = sweep_status(out)[0]
    return s.state, s.job, s.detail


def test_time_limit_signal_requeues_and_scancel_resumes_on_the_next_sweep(slurm, tmp_path, synth_root):
    path = write_grid(tmp_path / "g.yaml", synth_root, eval=None, steps=200, variants=[
        {"labels": {"variant": "long"}, "set": {"train.checkpoint_every": 5}}])
    out = tmp_path / "out"
    sweep = ["ablate", "--grid", str(path), "--out", str(out), *CPU_JOB]
    folder = out / "runs" / "long_s0"
    assert main([*sweep, "--no-wait"]) == 0
    job_id = _job(folder)["job_id"]
    _wait_for(lambda: _last_step(folder) >= 12, 180, "training to start")
    assert _state(out)[:2] == ("running", job_id)
    # the signal Slurm sends before the time limit: checkpoint, then the job requeues itself
    subprocess.run(["scancel", "--signal=USR2", job_id], check=True)
    _wait_for(lambda: (_job(folder).get("stopped") or {}).get("requeued"), 120, "the requeue")
    stopped_at = _job(folder)["stopped"]["step"]
    assert stopped_at >= 12 and (folder / "checkpoints" / f"step_{stopped_at:08d}").is_dir()
    _wait_for(lambda: _state(out)[0] == "queued", 60, "squeue to list the job as pending again")
    # Slurm holds a requeued job for cred_expire + 1 s (.ci/slurm.sh sets 10 s; the default is 120)
    _wait_for(lambda: _job(folder).get("restarts") == 1 and _last_step(folder) > stopped_at + 2, 240,
              "the requeued job to train on")
    assert _state(out)[:2] == ("running", job_id) and not (folder / "train.done").is_file()
    subprocess.run(["scancel", job_id], check=True)  # SIGTERM: checkpoint, then the job ends
    _wait_for(lambda: job_states().get(job_id) not in QUEUED | RUNNING, 120, "the cancelled job to end")
    state, _, detail = _state(out)
    assert state == "pending" and detail.startswith("stopped by SIGTERM")
    assert main(sweep) == 0  # the next sweep resumes it
    log = (folder / "train.log").read_text()
    assert log.count("resumed from") == 2 and (folder / "train.done").is_file()
    steps = [json.loads(x)["step"] for x in (folder / "metrics.jsonl").read_text().splitlines()]
    assert sorted(steps) == list(range(1, 201))  # each step once: every attempt went on from a checkpoint
    assert _state(out)[0] == "done"


def test_failed_job_is_recorded_while_a_two_process_job_finishes(slurm, tmp_path, synth_root, capsys):
    path = write_grid(tmp_path / "g.yaml", synth_root, eval={"tasks": "synth_vqa", "shots": [0], "limit": 2,
                                                             "batch_size": 2}, variants=[
        {"labels": {"variant": "ok"}, "set": {}},
        {"labels": {"variant": "broken"}, "set": {"data.sources.text.shards": ["no_such_folder/*.tar"]}}])
    out = tmp_path / "out"
    sweep = ["ablate", "--grid", str(path), "--out", str(out), *CPU_JOB, "--gpus-per-run", "2"]
    assert main(sweep) == 1
    assert "1 run(s) failed: broken_s0" in capsys.readouterr().err
    error = json.loads((out / "runs" / "broken_s0" / "error.json").read_text())
    assert error["stage"] == "train" and "no_such_folder" in error["error"]
    ok = out / "runs" / "ok_s0"
    assert (ok / "eval.done").is_file() and "2 process(es)" in (ok / "train.log").read_text()
    assert (ok / "train.rank1.log").is_file()  # the second task of the job trained too
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert {(r["run"], r["status"]) for r in rows} == {("ok_s0", "finished"), ("broken_s0", "failed")}
    assert main([*sweep, "--status"]) == 0
    printed = capsys.readouterr().out
    assert re.search(rf"^broken_s0\s+failed\s+{_job(out / 'runs' / 'broken_s0')['job_id']}\s+train: ConfigError",
                     printed, re.M)
    assert "2 runs: 0 pending, 0 queued, 0 running, 1 done, 1 failed" in printed
