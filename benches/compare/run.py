#!/usr/bin/env python3
"""Runs mmssl and PyTorch side by side on the same machine and reports median step times.

    python3 benches/compare/run.py [--python PATH] [--rounds 5] [--reps 10] [--scaling]
                                   [--only TEXT ...]

Builds `cargo build --release --example train_step`, then for every case runs the two
implementations in alternation (`--rounds` times each, `--reps` timed steps per run after
warm-up, times a per-case factor for the short cases), each pinned to 2 threads (RAYON_NUM_THREADS=2 for mmssl, torch.set_num_threads(2)),
and prints a Markdown table of medians and the ratio mmssl / PyTorch. Raw JSON lines go to
target/compare/results.jsonl. PyTorch comes from `--python` (default: `python3`); install it
with `pip install torch numpy` (see docs/performance.md).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CASES = [
    # (label, arguments shared by both implementations, repetition factor: the short cases run
    # that many times `--reps` timed repetitions and `--warmup` warm-up ones, so that a run
    # measures a few hundred milliseconds rather than ten calls of ~1 ms)
    ("2D CR-XX-CC step, batch 64", ["step", "--objective", "CR-XX-CC", "--dims", "2", "--batch", "64"], 1),
    ("2D unimodal CR step, batch 64", ["step", "--objective", "CR", "--modalities", "1", "--dims", "2", "--batch", "64"], 1),
    ("3D CR-XX-CC step, batch 4 of 64^3", ["step", "--objective", "CR-XX-CC", "--dims", "3", "--batch", "4"], 1),
    ("InfoNCE fwd+bwd, B 64, L_t 64", ["infonce", "--batch", "64", "--locations", "64"], 20),
    ("InfoNCE fwd+bwd, B 64, L_t 512", ["infonce", "--batch", "64", "--locations", "512"], 3),
    ("f32 GEMM 1024^3", ["gemm", "--size", "1024"], 2),
]

SCALING = [
    (f"2D CR-XX-CC step, batch {b}", ["step", "--objective", "CR-XX-CC", "--dims", "2", "--batch", str(b)], 1)
    for b in (16, 32, 64, 128, 256)
] + [
    (f"3D CR-XX-CC step, batch {b} of 64^3", ["step", "--objective", "CR-XX-CC", "--dims", "3", "--batch", str(b)], 1)
    for b in (2, 4, 8)
]


def run(cmd, env):
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--python", default="python3", help="a Python with torch installed")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--scaling", action="store_true", help="also the batch-size scaling table")
    p.add_argument(
        "--gpu",
        action="store_true",
        help="mmssl on wgpu (built with --features wgpu) against PyTorch on CUDA",
    )
    p.add_argument(
        "--only",
        action="append",
        default=None,
        help="only cases whose label contains this text (repeat for several)",
    )
    args = p.parse_args()

    build = ["cargo", "build", "--release", "--example", "train_step"]
    subprocess.run(build + (["--features", "wgpu"] if args.gpu else []), cwd=ROOT, check=True)
    ours = [str(ROOT / "target/release/examples/train_step")]
    theirs = [args.python, str(ROOT / "benches/compare/torch_step.py"), "--threads", str(args.threads)]
    if args.gpu:
        ours += ["--backend", "wgpu"]
        theirs += ["--backend", "cuda"]
    env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads), OMP_NUM_THREADS=str(args.threads))
    out_dir = ROOT / "target/compare"
    out_dir.mkdir(parents=True, exist_ok=True)
    log = open(out_dir / "results.jsonl", "a")

    cases = CASES + (SCALING if args.scaling else [])
    if args.only:
        cases = [c for c in cases if any(text in c[0] for text in args.only)]
    rows = []
    for label, case, factor in cases:
        common = ["--reps", str(args.reps * factor), "--warmup", str(args.warmup * factor)]
        med = {"mmssl": [], "pytorch": []}
        gf = {"mmssl": [], "pytorch": []}
        for _ in range(args.rounds):
            for name, prefix in (("mmssl", ours), ("pytorch", theirs)):
                if name == "mmssl":
                    cmd = prefix + case + common
                else:
                    cmd = prefix[:2] + case + prefix[2:] + common
                r = run(cmd, env)
                r["label"] = label
                log.write(json.dumps(r) + "\n")
                med[name].append(r["median_ms"])
                gf[name].append(r["gflops"])
        m, t = statistics.median(med["mmssl"]), statistics.median(med["pytorch"])
        rows.append((label, m, t, statistics.median(gf["mmssl"]), statistics.median(gf["pytorch"])))
        print(f"{label}: mmssl {m:.2f} ms, PyTorch {t:.2f} ms, ratio {m / t:.2f}", file=sys.stderr)

    print("| case | mmssl (ms) | PyTorch (ms) | mmssl / PyTorch | GFLOP/s mmssl / PyTorch |")
    print("|---|---|---|---|---|")
    for label, m, t, gm, gt in rows:
        flops = f"{gm:.1f} / {gt:.1f}" if gm else "-"
        print(f"| {label} | {m:.2f} | {t:.2f} | {m / t:.2f} | {flops} |")


if __name__ == "__main__":
    main()
