"""Timing shared by `torch_step.py` and `authors_step.py`: warm-up, timed repetitions, and the
one JSON line that `run.py` reads (the format of mmssl's `train_step` example)."""

import json
import statistics
import time


def time_ms(run, warmup: int, reps: int) -> list:
    """Calls `run` `warmup` times untimed, then `reps` times timed; the times in ms."""
    for _ in range(warmup):
        run()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        run()
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def report(times: list, flops: float = 0.0, **fields) -> None:
    """Prints `fields`, the median of `times`, the GFLOP/s of `flops` at that median and the
    times themselves as one JSON line."""
    m = statistics.median(times)
    print(
        json.dumps(
            dict(
                **fields,
                median_ms=round(m, 3),
                gflops=round(flops / (m * 1e6), 2) if flops else 0.0,
                times_ms=[round(t, 3) for t in times],
            )
        )
    )
