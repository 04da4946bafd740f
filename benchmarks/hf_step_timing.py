"""What the Python peers of the step benchmarks share: time a step function
the way the C++ side does (warm-up steps, then the median of the timed ones)
and print the one JSON line the benchmark reads."""
import json
import time

import torch
import transformers


def report_median(step, warmup, reps):
    for _ in range(warmup):
        step()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    times.sort()
    print(json.dumps({"median_s": times[len(times) // 2], "times": times, "torch": torch.__version__,
                      "transformers": transformers.__version__}))
