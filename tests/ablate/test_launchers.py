"""`mm1 ablate` launchers: the grid's `launch` settings, --status from run folders, --dry-run placement, and
the torchrun launcher as real 2-process gloo runs. The Slurm launcher against a real cluster: test_slurm.py."""
from __future__ import annotations

import json
import re

import pytest

from mm1.ablate.cost import format_plan, run_cost
from mm1.ablate.grid import GridError, check_runs, expand, load_grid
from mm1.ablate.jobs import sweep_lock, write_job
from mm1.ablate.slurm import sbatch_parameters
from mm1.ablate.status import format_status, sweep_status
from mm1.ablate.sweep import Plan, write_plan
from mm1.cli import main
from mm1.train.mfu import gpu_peak_flops
from tests.ablate.sweeps import write_grid

VARIANTS = [{"labels": {"variant": "a"}, "set": {}}, {"labels": {"variant": "b"}, "set": {"optim.lr": 3e-3}}]


def test_launch_settings_from_the_grid_file_and_the_command_line(tmp_path):
    path = write_grid(tmp_path / "g.yaml", launch={"launcher": "slurm", "nodes": 2, "gpus_per_run": 8,
                                                   "partition": "gpu", "sbatch": {"constraint": "h100"}})
    grid = load_grid(path)
    assert (grid.launch.launcher, grid.launch.nodes, grid.launch.partition) == ("slurm", 2, "gpu")
    flags = {"partition": "big", "time": 30, "sbatch": {"exclusive": True}}
    launch = load_grid(path, launch=flags).launch
    assert (launch.partition, launch.time, launch.nodes) == ("big", 30, 2)
    assert launch.sbatch == {"constraint": "h100", "exclusive": True}  # options merge by name
    params = sbatch_parameters(launch, "mm1-micro-a_s0")
    assert params["nodes"] == 2 and params["ntasks_per_node"] == params["gpus_per_node"] == 8
    assert params["partition"] == "big" and params["time"] == 30
    assert params["additional_parameters"] == {"signal": "USR2@120", "constraint": "h100", "exclusive": True}
    cpu = load_grid(path, launch={"request_gpus": False, "gpus_per_run": 2}).launch
    assert "gpus_per_node" not in sbatch_parameters(cpu, "x") and sbatch_parameters(cpu, "x")["ntasks_per_node"] == 2


@pytest.mark.parametrize("launch, message", [
    ({"launcher": "slrum"}, r"launch\.launcher: 'slrum' is not one of local, torchrun, slurm"),
    ({"gpus_per_run": 0}, r"launch\.gpus_per_run: 0 must be >= 1"),
    ({"launcher": "torchrun", "nodes": 2}, r"launch\.nodes: 2 nodes need the slurm launcher"),
    ({"signal": "HUP"}, r"launch\.signal: 'HUP' is not one of USR1, USR2, TERM"),
    ({"sbatch": {"exclude": None}}, r"launch\.sbatch\.exclude: None"),
    ({"partiton": "gpu"}, r"launch\.partiton: unknown key"),
])
def test_bad_launch_settings_name_the_key(tmp_path, launch, message):
    with pytest.raises(GridError, match=message):
        load_grid(write_grid(tmp_path / "g.yaml", launch=launch))


def test_bad_launcher_flag_exits_2_before_anything_runs(tmp_path, capsys):
    out = tmp_path / "out"
    path = write_grid(tmp_path / "g.yaml", variants=VARIANTS)
    assert main(["ablate", "--grid", str(path), "--out", str(out), "--launcher", "slrum"]) == 2
    assert "launch.launcher: 'slrum' is not one of" in capsys.readouterr().err and not out.exists()
    assert main(["ablate", "--grid", str(path), "--out", str(out), "--launcher", "slurm", "--jobs", "2"]) == 2
    assert "--jobs: the slurm launcher submits one job per run" in capsys.readouterr().err and not out.exists()
    assert main(["ablate", "--grid", str(path), "--out", str(out), "--no-wait"]) == 2
    assert "--no-wait: only the slurm launcher" in capsys.readouterr().err and not out.exists()


def test_dry_run_prints_gpus_wall_time_and_gpu_hours(tmp_path, capsys):
    path = write_grid(tmp_path / "g.yaml", variants=VARIANTS, steps=1000)
    grid = load_grid(path, launch={"launcher": "slurm", "nodes": 2, "gpus_per_run": 4})
    runs = expand(grid)
    configs = check_runs(runs)
    flops = sum(c["flops_decoder"] + c["flops_images_max"] for c in (run_cost(cfg, {}) for cfg in configs))
    expected = flops / (0.5 * gpu_peak_flops("A100")) / 3600  # GPU-hours do not depend on the GPU count
    text = format_plan(runs, configs, 0, grid.launch, mfu=0.5, gpu="A100")
    assert text.count("2 node(s) x 4 GPU(s)") == 2
    total = float(re.search(r"launcher slurm: ([\d.e+-]+) GPU-hours in all at 50% MFU of the A100", text)[1])
    assert total == pytest.approx(expected, rel=1e-3)
    assert main(["ablate", "--grid", str(path), "--dry-run", "--launcher", "torchrun", "--gpus-per-run", "2",
                 "--gpu", "H100"]) == 0
    assert capsys.readouterr().out.count("    2 GPU(s), ~") == 2
    assert main(["ablate", "--grid", str(path), "--dry-run", "--gpu", "Z80"]) == 2
    assert "--gpu: 'Z80' is not in the peak table" in capsys.readouterr().err


def _marker(folder, name, seconds=1.0):
    (folder / name).write_text(json.dumps({"seconds": seconds}))


def test_status_from_run_folders_and_the_live_sweep(tmp_path, capsys):
    """done, failed, pending (stopped), then a live local sweep: its run running, the others queued."""
    path = write_grid(tmp_path / "g.yaml", eval=None, variants=[{"labels": {"variant": v}, "set": {}}
                                                                for v in ("done", "failed", "stopped", "new")])
    grid = load_grid(path)
    runs = expand(grid)
    out = tmp_path / "out"
    out.mkdir()
    write_plan(out, Plan(grid, runs, [], None))
    folders = {r.name.split("_")[0]: out / "runs" / r.name for r in runs}
    for folder in folders.values():
        folder.mkdir(parents=True)
    _marker(folders["done"], "train.done", 12.5)
    (folders["failed"] / "error.json").write_text(json.dumps({"stage": "train", "error": "ConfigError: bad"}))
    write_job(folders["stopped"], "slurm", "77", stopped={"signal": "SIGTERM", "step": 20})
    (folders["stopped"] / "metrics.jsonl").write_text('{"step": 19}\n{"step": 20}\n')
    table = {s.name.split("_")[0]: s for s in sweep_status(out)}
    assert {k: (s.state, s.job) for k, s in table.items()} == {
        "done": ("done", "-"), "failed": ("failed", "-"), "stopped": ("pending", "77"), "new": ("pending", "-")}
    assert table["stopped"].detail == "stopped by SIGTERM, step 20" and table["failed"].detail == "train: ConfigError: bad"
    with sweep_lock(out, "local"):
        from mm1.ablate.jobs import local_job_id

        write_job(folders["new"], "local", local_job_id())
        table = {s.name.split("_")[0]: s for s in sweep_status(out)}
        assert table["new"].state == "running" and table["stopped"].state == "queued"
        assert table["done"].state == "done" and table["failed"].state == "failed"
    assert main(["ablate", "--grid", str(path), "--out", str(out), "--status"]) == 0
    printed = capsys.readouterr().out
    assert re.search(r"stopped_s0\s+pending\s+77\s+stopped by SIGTERM", printed)
    assert "4 runs: 2 pending, 0 queued, 0 running, 1 done, 1 failed" in printed
    assert printed == format_status(sweep_status(out))


@pytest.mark.slow
def test_torchrun_launcher_runs_two_gloo_processes_per_run_two_runs_at_a_time(tmp_path, synth_root):
    path = write_grid(tmp_path / "g.yaml", synth_root, eval=None, steps=6, variants=VARIANTS)
    out = tmp_path / "out"
    assert main(["ablate", "--grid", str(path), "--out", str(out), "--launcher", "torchrun", "--gpus-per-run", "2",
                 "--jobs", "2"]) == 0
    folders = [out / "runs" / name for name in ("a_s0", "b_s0")]
    jobs = [json.loads((f / "job.json").read_text()) for f in folders]
    assert all(j["launcher"] == "torchrun" for j in jobs) and jobs[0]["port"] != jobs[1]["port"]
    for folder, job in zip(folders, jobs):
        log = (folder / "train.log").read_text()
        assert f"--nproc-per-node 2 --master-addr 127.0.0.1 --master-port {job['port']}" in log
        assert "2 process(es)" in log and (folder / "checkpoint" / "model.safetensors").is_file()
    spans = [json.loads((f / "train.done").read_text()) for f in folders]
    (s0, e0), (s1, e1) = [(s["started_at"], s["started_at"] + s["seconds"]) for s in spans]
    assert s0 < e1 and s1 < e0  # the two runs overlapped in time
    steps = [json.loads(x)["step"] for x in (folders[1] / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 7))
