"""Few-shot evaluation speed: mm1 at batch 1 and batch 32, and Hugging Face `generate`, in one run.

    .venv/bin/python benchmarks/bench_eval.py --checkpoint /tmp/tiny_full/checkpoint --data-root data/synth
    .venv/bin/python benchmarks/bench_eval.py            # random-init tiny model, small temporary corpus

For each workload (a synthetic task at a shot count; real images, real demos), on the same queries:
  eval b1 / eval b32  the whole evaluation loop (prompt building, image loading, decoding,
                      post-processing, scoring) at batch 1 and batch 32: eval samples/s;
  mm1 gen b32         `mm1.eval.generate.generate` on prebuilt prompts;
  HF gen b32          `model.decoder.generate(inputs_embeds=..., attention_mask=...)` on the same
                      left-padded prompts (greedy, same stop ids, same suppressed ids), the prompt
                      embedding (`model.embed`) included in its time as it is in mm1's.
The four are timed in turns, --repeats rounds after a warm-up, and each keeps its best round,
so a busy machine slows them alike. mm1's and HF's generated tokens are compared. Targets:
eval b32 >= 5x eval b1, mm1 >= HF. The exit status is 0 when every workload meets both.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mm1.build import build  # noqa: E402
from mm1.config import SynthConfig, load_config  # noqa: E402
from mm1.eval.config import EvalConfig  # noqa: E402
from mm1.eval.evaluate import prepare  # noqa: E402
from mm1.eval.generate import Prompt, banned_token_ids, generate, left_pad  # noqa: E402
from mm1.eval.runner import Prompter, evaluate, make_selector  # noqa: E402
from mm1.tokenizer import END_OF_CHUNK  # noqa: E402

WORKLOADS = "synth_vqa:0,synth_vqa:4,synth_vqa:8,synth_caption:0,synth_caption:4,synth_caption:8"


def load_model(checkpoint):
    if checkpoint:
        import mm1

        loaded = mm1.load(checkpoint)
        return loaded.cfg, loaded.tokenizer, loaded.model
    cfg = load_config(ROOT / "recipes" / "tiny.yaml")
    torch.manual_seed(0)
    tokenizer, model = build(cfg)
    return cfg, tokenizer, model.eval()


def corpus_root(data_root, samples: int) -> str:
    if data_root:
        return data_root
    from mm1.data.synth import write_corpus

    root = tempfile.mkdtemp(prefix="bench_eval_")
    write_corpus(root, SynthConfig(seed=0, caption_samples=40, interleaved_samples=20, text_samples=20,
                                   eval_samples=max(samples, 64), samples_per_shard=40))
    return root


def interleaved_best(fns: dict, repeats: int) -> dict[str, float]:
    """Seconds of each function's best round; rounds alternate between the functions."""
    for fn in fns.values():
        fn()  # warm-up
    best = {name: float("inf") for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


@torch.inference_mode()
def hf_generate(model, tokenizer, prompts: list[Prompt], max_new_tokens: int) -> list[list[int]]:
    pad = tokenizer.pad_token_id
    ids, mask, images = left_pad(prompts, pad, "cpu")
    embeds = model.embed(ids, images)
    out = model.decoder.generate(
        inputs_embeds=embeds, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
        eos_token_id=[tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids(END_OF_CHUNK)], pad_token_id=pad,
        suppress_tokens=banned_token_ids(tokenizer, model.decoder.get_input_embeddings().num_embeddings),
    )
    stops = {tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids(END_OF_CHUNK), pad}
    rows = []
    for row in out.tolist():
        cut = next((i for i, t in enumerate(row) if t in stops), len(row))
        rows.append(row[:cut])
    return rows


def workload(model, tok, size: int, root: str, task: str, shots: int, args) -> dict:
    settings = EvalConfig(tasks=task, shots=[shots], trials=1, limit=args.samples)
    (data,) = prepare(settings, root)
    prompter = Prompter(model, tok, data.spec, make_selector(model, data, settings, size), size)
    prompts = []
    for q in data.queries:
        ids, paths, _ = prompter.plan(q, shots, 0)
        prompts.append(Prompt(ids, prompter.pixels(paths, q)))
    batches = [prompts[i:i + 32] for i in range(0, len(prompts), 32)]
    max_new, stop = data.spec.generation.max_new_tokens, tuple(data.spec.generation.stop)
    outs: dict[str, list] = {}

    def run_eval(batch_size):
        settings.batch_size = batch_size
        evaluate(model, tok, [data], settings, size, progress=False)

    times = interleaved_best({
        "eval b1": lambda: run_eval(1),
        "eval b32": lambda: run_eval(32),
        "mm1 gen b32": lambda: outs.__setitem__("mm1", [g.token_ids for b in batches
                                                         for g in generate(model, tok, b, max_new, stop)]),
        "HF gen b32": lambda: outs.__setitem__("hf", [r for b in batches for r in hf_generate(model, tok, b, max_new)]),
    }, args.repeats)
    n = len(prompts)
    return {"name": f"{task} {shots}-shot", "n": n, "prompt": sum(len(p.input_ids) for p in prompts) / n,
            "new": sum(len(t) for t in outs["mm1"]) / n, "rates": {k: n / t for k, t in times.items()},
            "agree": sum(a == b for a, b in zip(outs["mm1"], outs["hf"]))}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", help="mm1 checkpoint folder (default: random-init tiny recipe)")
    p.add_argument("--data-root", help="synthetic corpus root (default: write a small one to a temp folder)")
    p.add_argument("--workloads", default=WORKLOADS, help="comma-separated task:shots pairs")
    p.add_argument("--samples", type=int, default=64, help="queries per workload")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg, tok, model = load_model(args.checkpoint)
    root = corpus_root(args.data_root, args.samples)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, os.cpu_count() {os.cpu_count()}, "
          f"load average {os.getloadavg()[0]:.1f}, checkpoint {args.checkpoint or 'random init'}")
    columns = ["workload", "prompt tok", "new tok", "eval b1", "eval b32", "mm1 gen b32", "HF gen b32", "b32/b1",
               "mm1/HF", "agree"]
    print("| " + " | ".join(columns) + " |\n" + "|---" * len(columns) + "|")
    ok = True
    for item in args.workloads.split(","):
        task, shots = item.split(":")
        w = workload(model, tok, cfg.model.vision.image_size, root, task, int(shots), args)
        r = w["rates"]
        speedup, vs_hf = r["eval b32"] / r["eval b1"], r["mm1 gen b32"] / r["HF gen b32"]
        ok &= speedup >= 5 and vs_hf >= 1 and w["agree"] == w["n"]
        cells = [w["name"], f"{w['prompt']:.0f}", f"{w['new']:.1f}"] + [f"{r[k]:.1f}" for k in columns[3:7]]
        cells += [f"{speedup:.1f}x", f"{vs_hf:.2f}x", f"{w['agree']}/{w['n']}"]
        print("| " + " | ".join(cells) + " |")
    print("(samples/s; targets: b32/b1 >= 5x, mm1/HF >= 1x)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
