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

Every run starts on a quiet machine: before it, the CPU time other processes used is sampled
from /proc/stat over `--settle` seconds (the harness itself is idle then); above `--max-busy`
cores the harness waits and samples again (up to `--patience` times), and a run that still
started on a busy machine is marked `busy` in the JSON and counted in the table. The machine
(CPU model, its vector extensions, cores, kernel, the mmssl commit, the load averages) is the
first line of the table and a `{"machine": ...}` JSON line; each run's JSON carries the busy
fraction and load averages before it and the peak resident memory of its process (`wait4`).
The table gives each median with the spread of the per-run medians (min-max) and, for the step
cases, the peak resident memory of each implementation.

Raw JSON lines go to target/compare/results.jsonl (under CARGO_TARGET_DIR when it is set).
PyTorch comes from `--python` (default: `python3`); install it with `pip install torch numpy`
and, for `--authors`, `pip install tqdm omegaconf StrEnum` and `pip install catalyst==22.4
--no-deps` (see docs/performance.md).
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
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
    """Runs `cmd`; its last JSON line, with the peak resident memory of the children this
    process has run (MiB): called by `measured` in a process of its own, that is `cmd`'s."""
    import resource

    out = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{out.stderr}")
    r = json.loads(out.stdout.strip().splitlines()[-1])
    r["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)
    return r


def measured(cmd, env):
    """`run(cmd, env)` in a fresh Python process of its own, so that the peak resident memory
    is this command's alone (RUSAGE_CHILDREN keeps the maximum over every child)."""
    helper = [sys.executable, __file__, "--measure-one", json.dumps(cmd)]
    out = subprocess.run(helper, env=env, capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def cpu_busy(seconds):
    """Cores' worth of CPU time used on the whole machine over `seconds` (from /proc/stat)."""
    def sample():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        idle = v[3] + v[4]  # idle + iowait
        return sum(v) - idle, sum(v)

    b0, t0 = sample()
    time.sleep(seconds)
    b1, t1 = sample()
    cores = os.cpu_count() or 1
    return cores * (b1 - b0) / max(t1 - t0, 1)


def settle(args):
    """Waits until the machine is quiet (at most `--max-busy` cores busy over `--settle`
    seconds), `--patience` tries at most; returns (busy cores, whether still busy)."""
    busy = cpu_busy(args.settle)
    tries = 1
    while busy > args.max_busy and tries < args.patience:
        time.sleep(args.settle * 2)
        busy = cpu_busy(args.settle)
        tries += 1
    return busy, busy > args.max_busy


def machine():
    """What the figures were measured on."""
    info = {"cpu": platform.processor() or "", "cores": os.cpu_count(), "kernel": platform.release()}
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
        for line in text.splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                info["vector"] = [x for x in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile") if x in flags]
                break
    except OSError:
        pass
    try:
        info["commit"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        pass
    info["loadavg"] = [round(x, 2) for x in os.getloadavg()]
    info["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    return info


def spread(values, fmt="{:.2f}"):
    """`median (min-max)` of `values`."""
    m = statistics.median(values)
    return f"{fmt.format(m)} ({fmt.format(min(values))}-{fmt.format(max(values))})"


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
    p.add_argument("--settle", type=float, default=1.0, help="seconds of the quiet check before each run")
    p.add_argument(
        "--max-busy",
        type=float,
        default=0.3,
        help="cores other processes may use before a run (default 0.3)",
    )
    p.add_argument("--patience", type=int, default=10, help="quiet checks before a run starts anyway, marked busy")
    p.add_argument("--measure-one", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.measure_one is not None:
        print(json.dumps(run(json.loads(args.measure_one), dict(os.environ))))
        return
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
    where = machine()
    log.write(json.dumps({"machine": where}) + "\n")
    rows = []
    for threads in thread_counts:
        env = dict(os.environ, RAYON_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
        for label, case, factor in cases:
            common = ["--reps", str(args.reps * factor), "--warmup", str(args.warmup * factor)]
            impls = [n for n in names if n != "authors" or case[0] == "step"]
            med = {n: [] for n in impls}
            gf = {n: [] for n in impls}
            rss = {n: [] for n in impls}
            busy_runs = 0
            for _ in range(args.rounds):
                for name in impls:
                    if name == "mmssl":
                        cmd = ours + case + common + extra[name]
                    else:
                        prefix = port if name == "port" else authors
                        cmd = prefix + case + ["--threads", str(threads)] + common + extra[name]
                    busy, still = settle(args)
                    load = [round(x, 2) for x in os.getloadavg()]
                    r = measured(cmd, env)
                    r.update(label=label, impl=name, threads_asked=threads)
                    r.update(busy_before=round(busy, 3), busy=still, loadavg_before=load)
                    busy_runs += still
                    log.write(json.dumps(r) + "\n")
                    log.flush()
                    med[name].append(r["median_ms"])
                    gf[name].append(r["gflops"])
                    rss[name].append(r["peak_rss_mib"])
            m = {n: statistics.median(v) for n, v in med.items()}
            g = {n: statistics.median(v) for n, v in gf.items()}
            rows.append((threads, label, m, g, med, rss, busy_runs))
            summary = ", ".join(f"{n} {v:.2f} ms" for n, v in m.items())
            print(f"{label}, {threads} thread(s): {summary}", file=sys.stderr)

    with_authors = args.authors is not None
    print(
        f"Machine: {where.get('cpu', '?')}, {where.get('cores')} cores ({', '.join(where.get('vector', []))}), "
        f"kernel {where.get('kernel')}, mmssl {where.get('commit', '?')}, {where['date']}, "
        f"load average before {where['loadavg']}; medians of {args.rounds} alternating runs, "
        f"(min-max of the runs' medians)\n"
    )
    head = "| threads | case | mmssl (ms) | port (ms) | mmssl / port |"
    rule = "|---|---|---|---|---|"
    if with_authors:
        head += " authors (ms) | mmssl / authors |"
        rule += "---|---|"
    print(head + " GFLOP/s mmssl / PyTorch | peak memory (MiB) | busy runs |")
    print(rule + "---|---|---|")
    for threads, label, m, g, runs, rss, busy_runs in rows:
        line = f"| {threads} | {label} | {spread(runs['mmssl'])} | {spread(runs['port'])} | {m['mmssl'] / m['port']:.2f} |"
        if with_authors:
            if "authors" in m:
                line += f" {spread(runs['authors'])} | **{m['mmssl'] / m['authors']:.2f}** |"
            else:
                line += " - | - |"
        flops = f"{g['mmssl']:.1f} / {g['port']:.1f} ({g['mmssl'] / g['port']:.0%})" if g["mmssl"] and g["port"] else "-"
        memory = " / ".join(f"{n} {statistics.median(v):.0f}" for n, v in rss.items())
        print(line + f" {flops} | {memory} | {busy_runs} |")


if __name__ == "__main__":
    main()
