"""What `torch_step.py` and `authors_step.py` share: their common arguments, the warm-up and
timed repetitions, and the one JSON line that `run.py` reads (the format of mmssl's
`train_step` example)."""

import json
import statistics
import time


def add_step_arguments(p) -> None:
    """Adds to the parser `p` the arguments of every implementation: the step's objective,
    modalities, dimensions and batch, and the timing's warm-up, repetitions and threads."""
    p.add_argument("--objective", default="CR-XX-CC")
    p.add_argument("--modalities", type=int, default=2)
    p.add_argument("--dims", type=int, default=2)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)


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


def report_step(times: list, args, names, flops: float = 0.0, **fields) -> None:
    """`report` of a timed step: `fields`, the command-line arguments `names` of `args`, then
    the torch version and its thread count."""
    import torch

    report(
        times,
        flops,
        **fields,
        **{name: getattr(args, name) for name in names},
        torch=torch.__version__,
        threads=torch.get_num_threads(),
    )
