"""``mmgen bench``: run the benchmark suite of a source checkout and summarize the speed-ups."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from mmgen.cli import add_threads_option

SUITE = ("reparameterize", "vq", "masked_conv", "train")

# `mmgen bench --threads N`: each benchmark runs as its script would, after torch.set_num_threads(N)
# (OMP_NUM_THREADS alone is capped by torch at the core count), so its machine() records N threads.
WITH_THREADS = ("import runpy, sys, torch\n"
                "n = int(sys.argv[1]); torch.set_num_threads(n)\n"
                "try:\n    torch.set_num_interop_threads(n)\nexcept RuntimeError:\n    pass\n"
                "sys.argv = sys.argv[2:]\n"
                "runpy.run_path(sys.argv[0], run_name='__main__')\n")


def default_dir() -> str:
    """``benchmarks/`` of the checkout mmgen is installed from (editable installs)."""
    from mmgen.provenance import checkout_root
    return os.path.join(checkout_root(), "benchmarks")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "bench",
        description="Run benchmarks/bench_<name>.py of the source checkout (each compares mmgen with "
                    "what a user would use instead, in the same run), then print every mmgen row's "
                    "speed-up ratios (alternative time / mmgen time; >= 1 means mmgen is faster). "
                    f"Benchmarks: {', '.join(SUITE)}. Timings mean something only on a quiet machine.")
    p.add_argument("names", nargs="*", metavar="NAME", help=f"benchmarks to run (default: all of {', '.join(SUITE)})")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--repeat", type=int, default=5, help="timed runs per case; the median is kept (default 5)")
    p.add_argument("--dir", default=None, help="the benchmarks folder (default: the checkout's benchmarks/)")
    p.add_argument("--out-dir", default=None,
                   help="where the JSON files go (default: DIR/results/, one <name>_<device>.json each, "
                        "plus summary_<device>.json)")
    add_threads_option(p)  # set in each benchmark process (WITH_THREADS); recorded in its machine.threads
    p.set_defaults(func=run)


def run(args) -> int:
    bench_dir = os.path.abspath(args.dir or default_dir())
    names = args.names or list(SUITE)
    unknown = [n for n in names if not os.path.exists(os.path.join(bench_dir, f"bench_{n}.py"))]
    if unknown:
        available = sorted(f[6:-3] for f in os.listdir(bench_dir) if f.startswith("bench_") and f.endswith(".py")) \
            if os.path.isdir(bench_dir) else []
        raise LookupError(f"no benchmark(s) {unknown} in {bench_dir} "
                         f"(available: {', '.join(available) or 'none'}; benchmarks ship with the source "
                         "checkout: pass --dir PATH/TO/benchmarks)")
    if args.repeat < 1:
        raise ValueError(f"--repeat must be >= 1, got {args.repeat}")
    out_dir = os.path.abspath(args.out_dir or os.path.join(bench_dir, "results"))
    os.makedirs(out_dir, exist_ok=True)
    device = args.device.split(":")[0]
    threads = getattr(args, "threads", None)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)} if threads else None
    summary, failed, started = [], [], time.perf_counter()
    for name in names:
        out = os.path.join(out_dir, f"{name}_{device}.json")
        print(f"== {name}", flush=True)
        t0 = time.perf_counter()
        script = [os.path.join(bench_dir, f"bench_{name}.py"), "--device", args.device,
                  "--repeat", str(args.repeat), "--out", out]
        launcher = ["-c", WITH_THREADS, str(threads)] if threads else []
        proc = subprocess.run([sys.executable, *launcher, *script], cwd=bench_dir, env=env)
        if proc.returncode != 0:
            failed.append(name)
            print(f"mmgen bench: {name} failed (exit {proc.returncode}); its JSON was not updated",
                  file=sys.stderr)
            continue
        with open(out) as f:
            summary += speedups(name, json.load(f))
        print(f"({name}: {time.perf_counter() - t0:.0f} s)", flush=True)
    print("\nmmgen speed-ups (alternative time / mmgen time)")
    print_summary(summary)
    path = os.path.join(out_dir, f"summary_{device}.json")
    from mmgen import provenance
    from mmgen.io import atomic_write_bytes
    record = provenance.record(args.device, ["mmgen", *getattr(args, "argv", [])])
    if threads:  # the benchmarks ran with N threads; this process kept torch's default
        record["machine"]["threads"] = threads
    payload = {"benchmark": "summary", **record, "device": args.device, "threads": threads, "benchmarks": names,
               "failed": failed, "seconds": time.perf_counter() - started, "rows": summary}
    atomic_write_bytes(path, json.dumps(payload, indent=2).encode())
    print(f"wrote {path}")
    return 1 if failed else 0


def speedups(benchmark: str, result: dict) -> list[dict]:
    """One row per (mmgen row, ratio column) of a benchmark's JSON."""
    rows = []
    extra = [value for value in result.values() if isinstance(value, dict) and "model" in value]
    for row in result.get("rows", []) + extra:
        who = row.get("method", row.get("variant", "mmgen"))
        if not str(who).startswith("mmgen"):
            continue
        case = " ".join(str(v) for k, v in row.items()
                        if isinstance(v, str) and k not in ("method", "variant"))
        for key, value in row.items():
            if "/" in key and isinstance(value, (int, float)):
                rows.append({"benchmark": benchmark, "case": f"{who} {case}".strip(), "ratio": key,
                             "value": float(value)})
    return rows


def print_summary(rows: list[dict]) -> None:
    if not rows:
        print("(no rows)")
        return
    width = max(len(r["case"]) for r in rows)
    for r in rows:
        mark = "" if r["value"] >= 1.0 else "   <- slower than the alternative"
        print(f"{r['benchmark']:15s} {r['case']:{width}s}  {r['ratio']:20s} {r['value']:7.2f}x{mark}")
