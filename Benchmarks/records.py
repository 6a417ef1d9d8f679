#!/usr/bin/env python3
"""The `records` workload of `fleet bench` in Python, for comparison:
20,000 tasks; task i returns {"w" + j: (i * 256 + j) % 1009 for j in 0..<256};
the caller merges each result into one dict by adding values per key, as
results arrive. The answer: 256 keys summing to 2,580,367,275.

    python3 Benchmarks/records.py [RUNS]

Each run prints the serial loop (Python's fastest way) and a
ProcessPoolExecutor of 2 workers (pickle), with chunksize 1 and 64; the
workers are started before the clock, as fleet bench does.
"""
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor

N = 20000


def task(i):
    b = i * 256
    return {"w" + str(j): (b + j) % 1009 for j in range(256)}


def merge(total, d):
    for k, v in d.items():
        total[k] = total.get(k, 0) + v


def check(total):
    s = sum(total.values())
    assert len(total) == 256 and s == 2580367275, (len(total), s)


def serial():
    total = {}
    t = time.perf_counter()
    for i in range(N):
        merge(total, task(i))
    seconds = time.perf_counter() - t
    check(total)
    return seconds


def processes(chunksize):
    total = {}
    with ProcessPoolExecutor(2) as ex:
        list(ex.map(task, range(4)))  # both workers up before the clock
        t = time.perf_counter()
        for d in ex.map(task, range(N), chunksize=chunksize):
            merge(total, d)
        seconds = time.perf_counter() - t
    check(total)
    return seconds


if __name__ == "__main__":
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    times = {"serial": [], "processes chunksize=1": [], "processes chunksize=64": []}
    for run in range(runs):
        times["serial"].append(serial())
        times["processes chunksize=1"].append(processes(1))
        times["processes chunksize=64"].append(processes(64))
        print(f"run {run + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()), flush=True)
    print(f"medians of {runs}: " + ", ".join(f"{k} {statistics.median(v):.2f} s" for k, v in times.items()))
