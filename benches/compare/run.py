#!/usr/bin/env python3
"""Runs mmssl, the PyTorch port and the authors' own code side by side; reports median times.

    python3 benches/compare/run.py [--python PATH] [--authors FUSION_CHECKOUT] [--threads 1,2]
                                   [--rounds 5] [--reps 10] [--scaling] [--only TEXT ...]

Builds `cargo build --release --example train_step`, then for every case and every thread count
runs the implementations in alternation (`--rounds` times each, `--reps` timed steps per run
after warm-up, times a per-case factor for the short cases), each pinned to that many threads
(RAYON_NUM_THREADS for mmssl, torch.set_num_threads and OMP_NUM_THREADS for PyTorch), and
prints a Markdown table of the medians and the ratios. The implementations:

- mmssl: `examples/train_step.rs`;
- the port: `benches/compare/torch_step.py`, mmssl's step written in PyTorch (torch.optim.RAdam);
- the authors' code (with `--authors PATH`, a checkout of github:Entodi/fusion):
  `benches/compare/authors_step.py`, their `Dim` model, `SpatialMultiDim` /
  `VolumetricMultiDim` loss and catalyst's RAdam, for the step cases. The checkout is only
  read and run; nothing of it is part of mmssl.

Raw JSON lines go to target/compare/results.jsonl (under CARGO_TARGET_DIR when it is set).
PyTorch comes from `--python` (default: `python3`); install it with `pip install torch numpy`
and, for `--authors`, `pip install tqdm omegaconf StrEnum` and `pip install catalyst==22.4
--no-deps` (see docs/performance.md).
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
    # The thin products of one InfoNCE term at B 64, L_t 64, d 64 (scores, anchor gradient,
    # target gradient) and of the 3D step's largest convolution (second layer, one sample:
    # [O, K] x [K, P]), each library on the same shapes.
    ("f32 GEMM 64x4096x64 (InfoNCE scores)", ["gemm", "--shape", "64,4096,64"], 20),
    ("f32 GEMM 64x64x4096 (InfoNCE anchor gradient)", ["gemm", "--shape", "64,64,4096"], 20),
    ("f32 GEMM 4096x64x64 (InfoNCE target gradient)", ["gemm", "--shape", "4096,64,64"], 20),
    ("f32 GEMM 64x4096x2048 (3D conv layer 2)", ["gemm", "--shape", "64,4096,2048"], 2),
]

SCALING = [
    (f"2D CR-XX-CC step, batch {b}", ["step", "--objective", "CR-XX-CC", "--dims", "2", "--batch", str(b)], 1)
    for b in (16, 32, 64, 128, 256)
] + [
    (f"3D CR-XX-CC step, batch {b} of 64^3", ["step", "--objective", "CR-XX-CC", "--dims", "3", "--batch", str(b)], 1)
    for b in (2, 4, 8)
]


def run(cmd, env):
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--python", default="python3", help="a Python with torch installed")
    p.add_argument(
        "--authors",
        type=Path,
        default=None,
        help="a checkout of github:Entodi/fusion: time the authors' own step too",
    )
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument(
        "--threads",
        default="2",
        help="thread counts, comma-separated (e.g. 1,2): every case runs at each",
    )
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
    try:
        thread_counts = [int(t) for t in args.threads.split(",")]
        if any(t < 1 for t in thread_counts):
            raise ValueError
    except ValueError:
        sys.exit(f"--threads `{args.threads}`: expected positive integers separated by commas, e.g. 1,2")
    if args.authors is not None and not (args.authors / "fusion/model/dim/dim.py").is_file():
        sys.exit(f"--authors {args.authors}: not a checkout of github:Entodi/fusion (no fusion/model/dim/dim.py)")
    if args.authors is not None and args.gpu:
        sys.exit("--authors times the authors' code on the CPU only; leave out --gpu")

    build = ["cargo", "build", "--release", "--example", "train_step"]
    subprocess.run(build + (["--features", "wgpu"] if args.gpu else []), cwd=ROOT, check=True)
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    if not target.is_absolute():
        target = ROOT / target
    ours = [str(target / "release/examples/train_step")]
    port = [args.python, str(ROOT / "benches/compare/torch_step.py")]
    authors = [args.python, str(ROOT / "benches/compare/authors_step.py")]
    extra = {"mmssl": [], "port": [], "authors": ["--fusion", str(args.authors)]}
    if args.gpu:
        extra["mmssl"] += ["--backend", "wgpu"]
        extra["port"] += ["--backend", "cuda"]
    out_dir = target / "compare"
    out_dir.mkdir(parents=True, exist_ok=True)
    log = open(out_dir / "results.jsonl", "a")

    cases = CASES + (SCALING if args.scaling else [])
    if args.only:
        cases = [c for c in cases if any(text in c[0] for text in args.only)]
    names = ["mmssl", "port"] + (["authors"] if args.authors is not None else [])
    rows = []
    for threads in thread_counts:
        env = dict(os.environ, RAYON_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
        for label, case, factor in cases:
            common = ["--reps", str(args.reps * factor), "--warmup", str(args.warmup * factor)]
            impls = [n for n in names if n != "authors" or case[0] == "step"]
            med = {n: [] for n in impls}
            gf = {n: [] for n in impls}
            for _ in range(args.rounds):
                for name in impls:
                    if name == "mmssl":
                        cmd = ours + case + common + extra[name]
                    else:
                        prefix = port if name == "port" else authors
                        cmd = prefix + case + ["--threads", str(threads)] + common + extra[name]
                    r = run(cmd, env)
                    r["label"] = label
                    r["impl"] = name
                    r["threads_asked"] = threads
                    log.write(json.dumps(r) + "\n")
                    log.flush()
                    med[name].append(r["median_ms"])
                    gf[name].append(r["gflops"])
            m = {n: statistics.median(v) for n, v in med.items()}
            g = {n: statistics.median(v) for n, v in gf.items()}
            rows.append((threads, label, m, g))
            summary = ", ".join(f"{n} {v:.2f} ms" for n, v in m.items())
            print(f"{label}, {threads} thread(s): {summary}", file=sys.stderr)

    with_authors = args.authors is not None
    head = "| threads | case | mmssl (ms) | port (ms) | mmssl / port |"
    rule = "|---|---|---|---|---|"
    if with_authors:
        head += " authors (ms) | mmssl / authors |"
        rule += "---|---|"
    print(head + " GFLOP/s mmssl / PyTorch |")
    print(rule + "---|")
    for threads, label, m, g in rows:
        line = f"| {threads} | {label} | {m['mmssl']:.2f} | {m['port']:.2f} | {m['mmssl'] / m['port']:.2f} |"
        if with_authors:
            if "authors" in m:
                line += f" {m['authors']:.2f} | **{m['mmssl'] / m['authors']:.2f}** |"
            else:
                line += " - | - |"
        flops = f"{g['mmssl']:.1f} / {g['port']:.1f} ({g['mmssl'] / g['port']:.0%})" if g["mmssl"] and g["port"] else "-"
        print(line + f" {flops} |")


if __name__ == "__main__":
    main()
