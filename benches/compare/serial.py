#!/usr/bin/env python3
"""What runs while the other threads sleep: the serial sections of a multi-threaded profile.

A `perf record` profile says where CPU time goes, not where the wall-clock time of a parallel
step goes: a loop that runs on one thread while the others wait for it costs its time on every
core, but shows up in the profile once. This script reads `perf script` output (with call
chains), keeps the worker threads (the threads with at least --min-samples samples), and counts
the samples taken while no other worker thread had a sample within --window seconds: the
"alone" samples. It prints their share of all samples and groups them by the innermost mmssl
frame of their call chain (or by the innermost frame with --leaf).

    RAYON_NUM_THREADS=2 perf record -F 1000 -e cpu-clock --call-graph dwarf,16384 -o p.data \\
        target/release/examples/train_step step --dims 3 --batch 2 --warmup 3 --reps 15
    perf script -i p.data -F tid,time,ip,sym > p.txt
    python3 benches/compare/serial.py p.txt --skip 0.2

--window should be about the sampling period (1 ms at -F 1000). --skip leaves out the first
fraction of the recording (start-up and warm-up steps). Sleeping threads take no samples, so a
thread that spins while waiting (rayon's brief spinning before it sleeps) counts as active: the
figure is a lower bound of the serial time.
"""

import argparse
import bisect
import collections
import re
import sys

# Frames of a thread waiting for work rather than doing it.
WAITING = ("rayon_core::sleep", "wait_until", "Backoff", "sched_yield", "futex")


def read_samples(path):
    """[(tid, time, [frame, ...innermost first])] from `perf script -F tid,time,ip,sym`."""
    samples, current = [], None
    header = re.compile(r"\s*(\d+)\s+([\d.]+):")
    with open(path, errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line.strip():
                if current:
                    samples.append(current)
                current = None
                continue
            m = header.match(line)
            if m and not line.startswith(("\t", "        ")):
                current = (int(m.group(1)), float(m.group(2)), [])
            elif current is not None:
                # "    ffffffff81000c82 symbol+0x12 (dso)" -> "symbol"
                frame = re.sub(r"^\s*[0-9a-f]+\s+", "", line).strip()
                frame = re.sub(r"\+0x[0-9a-f]+.*$", "", frame)
                current[2].append(frame)
    if current:
        samples.append(current)
    return samples


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("script", help="perf script output with call chains")
    p.add_argument("--window", type=float, default=0.0006, help="seconds (default 0.0006)")
    p.add_argument("--skip", type=float, default=0.0, help="fraction of the recording to skip")
    p.add_argument("--min-samples", type=int, default=50, help="samples that make a worker thread")
    p.add_argument("--leaf", action="store_true", help="group by the innermost frame")
    p.add_argument("--top", type=int, default=20, help="rows to print")
    a = p.parse_args()

    samples = read_samples(a.script)
    if not samples:
        sys.exit(f"{a.script}: no samples (was it written by `perf script -F tid,time,ip,sym`?)")
    t0, t1 = min(s[1] for s in samples), max(s[1] for s in samples)
    samples = [s for s in samples if s[1] >= t0 + (t1 - t0) * a.skip]
    times = collections.defaultdict(list)
    for tid, t, _ in samples:
        times[tid].append(t)
    workers = {tid for tid, ts in times.items() if len(ts) >= a.min_samples}
    if len(workers) < 2:
        sys.exit(f"{a.script}: fewer than two threads with {a.min_samples} samples")
    for ts in times.values():
        ts.sort()

    def others_active(tid, t):
        for other in workers - {tid}:
            ts = times[other]
            i = bisect.bisect_left(ts, t - a.window)
            if i < len(ts) and ts[i] <= t + a.window:
                return True
        return False

    total, alone = 0, collections.Counter()
    for tid, t, frames in samples:
        if tid not in workers:
            continue
        total += 1
        if any(w in f for f in frames[:6] for w in WAITING) or others_active(tid, t):
            continue
        if a.leaf:
            key = frames[0] if frames else "?"
        else:
            key = next((f for f in frames if "mmssl" in f and "closure" not in f), "(no mmssl frame)")
        alone[key[:100]] += 1
    n = sum(alone.values())
    print(f"worker threads {len(workers)}, samples {total}, alone {n} ({100 * n / total:.1f}%)")
    for key, count in alone.most_common(a.top):
        print(f"{count:6d}  {key}")


if __name__ == "__main__":
    main()
