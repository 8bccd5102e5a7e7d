"""`mmgen bench`: runs benchmark scripts, reads their JSON, summarizes mmgen's speed-ups."""
import json
import os
import subprocess
import sys

import pytest

from mmgen.commands import bench

FAKE = '''
import argparse, json
p = argparse.ArgumentParser()
p.add_argument("--device"); p.add_argument("--repeat", type=int); p.add_argument("--out")
a = p.parse_args()
rows = [{"case": "big", "method": "mmgen.op", "ms": 1.0, "torch/this": 3.0},
        {"case": "big", "method": "torch", "ms": 3.0, "torch/this": 1.0},
        {"case": "small", "method": "mmgen.op", "ms": 2.0, "torch/this": 0.5}]
json.dump({"rows": rows, "repeat": a.repeat, "device": a.device}, open(a.out, "w"))
'''


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "mmgen", "bench", *args], capture_output=True, text=True)


def test_runs_the_named_benchmarks_and_summarizes_mmgen_rows(tmp_path):
    (tmp_path / "bench_fake.py").write_text(FAKE)
    (tmp_path / "bench_broken.py").write_text("raise SystemExit(3)\n")
    out = tmp_path / "out"
    proc = run_cli("fake", "--dir", str(tmp_path), "--out-dir", str(out), "--repeat", "2")
    assert proc.returncode == 0, proc.stderr
    written = json.loads((out / "fake_cpu.json").read_text())
    assert written["repeat"] == 2 and written["device"] == "cpu"
    summary = json.loads((out / "summary_cpu.json").read_text())
    assert [(r["case"], r["value"]) for r in summary["rows"]] == [("mmgen.op big", 3.0), ("mmgen.op small", 0.5)]
    lines = [line for line in proc.stdout.splitlines() if line.startswith("fake")]
    assert "slower than the alternative" in lines[1] and "slower" not in lines[0]

    proc = run_cli("broken", "--dir", str(tmp_path), "--out-dir", str(out))
    assert proc.returncode == 1 and "broken failed (exit 3)" in proc.stderr
    assert json.loads((out / "summary_cpu.json").read_text())["failed"] == ["broken"]


def test_unknown_benchmark_names_the_available_ones(tmp_path):
    (tmp_path / "bench_fake.py").write_text(FAKE)
    proc = run_cli("nope", "--dir", str(tmp_path))
    assert proc.returncode != 0 and "no benchmark(s) ['nope']" in proc.stderr and "available: fake" in proc.stderr


def test_the_checkout_suite_is_found():
    here = bench.default_dir()
    assert all(os.path.exists(os.path.join(here, f"bench_{name}.py")) for name in bench.SUITE)


@pytest.mark.parametrize("name", ["reparameterize", "vq", "masked_conv"])
def test_committed_results_give_one_ratio_row_per_mmgen_case(name):
    with open(os.path.join(bench.default_dir(), "results", f"{name}_cpu.json")) as f:
        rows = bench.speedups(name, json.load(f))
    assert rows and all(r["case"].startswith("mmgen") and r["value"] > 0 for r in rows)


def test_interleaved_timing_alternates_the_order_of_the_fns():
    sys.path.insert(0, bench.default_dir())
    try:
        from common import interleaved_timing
    finally:
        sys.path.remove(bench.default_dir())
    calls = []
    timings = interleaved_timing({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")},
                                 warmup=1, repeat=4)
    assert calls == ["a", "b"] + ["a", "b", "b", "a", "a", "b", "b", "a"]  # warm-up, then 4 rounds
    assert {name: t["repeats"] for name, t in timings.items()} == {"a": 4, "b": 4}
    with pytest.raises(ValueError, match="repeat must be >= 1"):
        interleaved_timing({"a": lambda: None}, repeat=0)


def test_interleaved_timing_runs_short_calls_many_times_per_sample_and_reports_per_call():
    sys.path.insert(0, bench.default_dir())
    try:
        from common import interleaved_timing
    finally:
        sys.path.remove(bench.default_dir())
    import time
    calls = {"short": 0, "long": 0}

    def short():
        calls["short"] += 1

    def long():
        calls["long"] += 1
        time.sleep(0.004)

    timings = interleaved_timing({"short": short, "long": long}, warmup=1, repeat=3, min_sample_ms=2.0)
    assert timings["long"]["calls_per_sample"] == 1 and calls["long"] == 1 + 3
    n = timings["short"]["calls_per_sample"]
    assert n > 10 and calls["short"] == 1 + 3 * n
    assert timings["long"].median >= 4.0 and timings["short"].median < 0.5  # per call, not per sample
    assert interleaved_timing({"a": short}, warmup=1, repeat=2)["a"]["calls_per_sample"] == 1  # default: one call


@pytest.mark.skipif(not __import__("mmgen").ops.has_native(), reason="needs mmgen's native library")
def test_the_denormal_benchmark_feeds_denormal_gradients_and_records_every_mode(tmp_path):
    out = tmp_path / "denormal.json"
    proc = subprocess.run([sys.executable, os.path.join(bench.default_dir(), "bench_denormal.py"), "--repeat", "1",
                           "--threads", "1", "--fractions", "0,0.04", "--out", str(out)],
                          capture_output=True, text=True, cwd=bench.default_dir())
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads(out.read_text())["rows"]
    assert [(r["denormal_fraction"], r["mode"]) for r in rows] == [
        (f, m) for f in (0.0, 0.04) for m in ("ieee", "torch", "mmgen")]
    assert all(r["ms"] > 0 and r["ieee/mmgen"] > 0 for r in rows)
    bad = subprocess.run([sys.executable, "bench_denormal.py", "--fractions", "1.5", "--out", str(out)],
                         capture_output=True, text=True, cwd=bench.default_dir())
    assert bad.returncode != 0 and "--fractions must lie in [0, 1], got [1.5]" in bad.stderr
