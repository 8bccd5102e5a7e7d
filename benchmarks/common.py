"""Shared helpers for the benchmarks: timing, machine description, table and JSON output.

Timing. ``timing(fn)`` runs ``fn`` ``warmup`` times untimed, then ``repeat`` timed times (CUDA
synchronized around each) and returns a :class:`Timing`: the median, min, max, first and third
quartiles (``statistics.quantiles(..., method="inclusive")``, so with 2 repeats they interpolate
between the two runs), the interquartile range and every run, in ms. ``time_ms(fn)`` is the median
alone. A benchmark row stores each time as its median, ``<name>_ms``, with the spread next to it,
``<name>_ms_spread = [q1, q3]`` (ms, the middle half of the repeats): a ratio of two medians is
trustworthy when the two spreads do not overlap. ``interleaved_timing({name: fn})`` times several
fns round by round (each once per round), for ratios close to 1 that a drift of the machine's speed
between two sequential timings could flip. ``median_and_spread(name, t)`` gives both fields.
Spread fields are lists and carry no ``/`` in their names, so ``mmgen bench``'s summary, which
reads every numeric field with ``/`` in its name as a speed-up ratio, ignores them.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time

import torch

from mmgen import provenance
from mmgen.io import atomic_write_bytes

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


class Timing(dict):
    """Wall times of the timed runs, ms: median, min, max, q1, q3, iqr, repeats, times."""

    @property
    def median(self) -> float:
        return self["median"]

    @property
    def spread(self) -> list[float]:
        """[q1, q3]: the middle half of the repeats."""
        return [self["q1"], self["q3"]]


def summarize(times: list[float]) -> Timing:
    """A Timing from run times in ms (one run: every statistic is that run)."""
    if not times:
        raise ValueError("summarize: no times")
    q1, _, q3 = statistics.quantiles(times, n=4, method="inclusive") if len(times) > 1 else times * 3
    return Timing(median=statistics.median(times), min=min(times), max=max(times), q1=q1, q3=q3,
                  iqr=q3 - q1, repeats=len(times), times=list(times))


def timing(fn, device: str = "cpu", warmup: int = 2, repeat: int = 7, min_sample_ms: float = 0.0) -> Timing:
    """Wall times of fn() in ms over ``repeat`` runs after ``warmup`` untimed ones, CUDA synchronized
    (``min_sample_ms``: as in :func:`interleaved_timing`)."""
    if repeat < 1:
        raise ValueError(f"timing: repeat must be >= 1, got {repeat}")
    return interleaved_timing({"fn": fn}, device, warmup, repeat, min_sample_ms)["fn"]


def interleaved_timing(fns: dict, device: str = "cpu", warmup: int = 2, repeat: int = 7,
                       min_sample_ms: float = 0.0) -> dict:
    """``{name: Timing}`` of each ``fns[name]()`` as :func:`timing` gives it, with the timed runs
    interleaved: round r runs every fn once (in the given order in even rounds, reversed in odd
    ones), so that a drift of the machine's speed (clock, other load) falls on every fn alike and
    a ratio of two medians does not depend on which ran first.

    ``min_sample_ms``: a fn whose one call (the last warm-up's) takes less is called ``calls``
    times in a row per timed sample, enough to reach it, and its times are per call (the Timing's
    ``calls_per_sample``): a call of tens of microseconds, timed alone, is mostly timer and
    scheduler noise."""
    if repeat < 1:
        raise ValueError(f"interleaved_timing: repeat must be >= 1, got {repeat}")
    calls = {}
    for name, fn in fns.items():
        for i in range(max(warmup, 1 if min_sample_ms > 0 else 0)):
            start = time.perf_counter()
            fn()
            sync(device)
            one_ms = (time.perf_counter() - start) * 1e3
        calls[name] = max(1, math.ceil(min_sample_ms / max(one_ms, 1e-6))) if min_sample_ms > 0 else 1
    sync(device)
    names = list(fns)
    times = {name: [] for name in names}
    for r in range(repeat):
        for name in names if r % 2 == 0 else names[::-1]:
            fn, n = fns[name], calls[name]
            start = time.perf_counter()
            for _ in range(n):
                fn()
            sync(device)
            times[name].append((time.perf_counter() - start) * 1e3 / n)
    return {name: Timing(summarize(t), calls_per_sample=calls[name]) for name, t in times.items()}


def time_ms(fn, device: str = "cpu", warmup: int = 2, repeat: int = 7) -> float:
    """Median wall time of fn() in milliseconds (after warm-up), synchronizing CUDA."""
    return timing(fn, device, warmup, repeat).median


def median_and_spread(name: str, t: Timing, scale: float = 1.0) -> dict:
    """``{name: median, name + "_spread": [q1, q3]}``, times multiplied by ``scale`` (1e-3: seconds)."""
    return {name: t.median * scale, f"{name}_spread": [q * scale for q in t.spread]}


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--repeat", type=int, default=7, help="timed runs per case (median and [q1, q3] are kept)")
    p.add_argument("--out", default=None, help="JSON path (default: benchmarks/results/<name>_<device>.json)")
    return p


def print_table(rows: list[dict], columns: list[str]) -> None:
    widths = [max(len(c), *(len(_fmt(r.get(c))) for r in rows)) for c in columns]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    for r in rows:
        print("  ".join(_fmt(r.get(c)).ljust(w) for c, w in zip(columns, widths)))


def _fmt(v) -> str:
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 100 else f"{v:.1f}"
    return "-" if v is None else str(v)


def write_json(name: str, device: str, rows: list[dict], out: str | None = None, **extra) -> str:
    """Write {machine, rows, ...} atomically; returns the path."""
    path = out or os.path.join(RESULTS, f"{name}_{device.split(':')[0]}.json")
    payload = {"benchmark": name, **provenance.record(device), "rows": rows, **extra}
    atomic_write_bytes(path, json.dumps(payload, indent=2).encode())
    print(f"wrote {path}")
    return path
