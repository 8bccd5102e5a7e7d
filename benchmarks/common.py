"""Shared helpers for the benchmarks: timing, machine description, table and JSON output."""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch

from mmgen import provenance

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_ms(fn, device: str = "cpu", warmup: int = 2, repeat: int = 7) -> float:
    """Median wall time of fn() in milliseconds (after warm-up), synchronizing CUDA."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--repeat", type=int, default=7, help="timed runs per case (median is kept)")
    p.add_argument("--out", default=None, help="JSON path (default: benchmarks/results/<name>_<device>.json)")
    return p


def print_table(rows: list[dict], columns: list[str]) -> None:
    widths = [max(len(c), *(len(_fmt(r.get(c))) for r in rows)) for c in columns]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    for r in rows:
        print("  ".join(_fmt(r.get(c)).ljust(w) for c, w in zip(columns, widths)))


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 100 else f"{v:.1f}"
    return "-" if v is None else str(v)


def write_json(name: str, device: str, rows: list[dict], out: str | None = None, **extra) -> str:
    """Write {machine, rows, ...} atomically; returns the path."""
    path = out or os.path.join(RESULTS, f"{name}_{device.split(':')[0]}.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    payload = {"benchmark": name, **provenance.record(device), "rows": rows, **extra}
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(payload, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    print(f"wrote {path}")
    return path
