"""`--threads N` of the mmgen command line: `mmgen --threads N COMMAND ...` (or after train, eval,
sample, bench) sets torch's CPU threads, and the run records them (metrics.jsonl, eval JSON,
benchmark results)."""
import json
import os
import subprocess
import sys

import pytest

from mmgen import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def mmgen_cli(*args, env=None, timeout=900):
    env = {**os.environ, **(env or {}), "PYTHONPATH": ROOT}
    return subprocess.run([sys.executable, "-m", "mmgen", *args], capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=timeout)


@pytest.mark.parametrize("argv", [["--threads", "2", "train", "--preset", "vae-digits"],
                                  ["train", "--preset", "vae-digits", "--threads", "2"],
                                  ["eval", "RUN", "--threads", "2"], ["sample", "RUN", "--threads", "2"],
                                  ["bench", "--threads", "2"], ["--threads", "2", "kernels", "info"]])
def test_threads_before_or_after_the_subcommand(argv):
    assert cli.make_parser().parse_args(argv).threads == 2


def test_threads_default_is_torch_s():
    assert cli.make_parser().parse_args(["train", "--preset", "vae-digits"]).threads is None


@pytest.mark.parametrize("argv, message", [
    (["--threads", "0", "train"], "mmgen: error: argument --threads: must be a positive integer (>= 1), got 0"),
    (["--threads", "-3", "eval", "RUN"], "must be a positive integer (>= 1), got -3"),
    (["--threads", "two", "train"], "mmgen: error: argument --threads: must be a positive integer, got 'two'"),
    (["train", "--threads", "1.5"], "mmgen train: error: argument --threads: must be a positive integer, got '1.5'"),
])
def test_bad_thread_counts_are_usage_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exit:
        cli.main(argv)
    assert exit.value.code == 2 and message in capsys.readouterr().err


def test_set_threads_keeps_the_interop_threads_once_fixed(monkeypatch):
    import torch
    calls = []

    def refuse(n):
        calls.append(n)
        raise RuntimeError("Error: cannot set number of interop threads after parallel work has started")

    monkeypatch.setattr(torch, "set_num_interop_threads", refuse)
    before = torch.get_num_threads()
    try:
        wanted = torch.get_num_interop_threads() + 1
        counts = cli.set_threads(wanted)  # no error: the inter-op count stays as it is
        assert calls == [wanted]
        assert counts == {"threads": wanted, "interop_threads": torch.get_num_interop_threads()}
    finally:
        torch.set_num_threads(before)


@pytest.mark.plugins("image")  # the vae-digits preset's image.conv networks
def test_mmgen_threads_1_train_and_eval_record_one_thread(tmp_path):
    pytest.importorskip("sklearn")  # the digits dataset
    run = tmp_path / "run"
    train = mmgen_cli("--threads", "1", "train", "--preset", "vae-digits", "--out", str(run),
                      "--set", "train.steps=5", "--set", "train.log_every=1", "--set", "train.batch_size=16",
                      "--set", "eval.k=2", "--set", "eval.max_examples=20",
                      "--set", "model.encoder.hidden=8", "--set", "model.decoder.hidden=8",
                      env={"OMP_NUM_THREADS": "2"})  # --threads wins over the environment
    assert train.returncode == 0, train.stderr[-3000:]
    log = [json.loads(line) for line in open(run / "metrics.jsonl")]
    steps = [r for r in log if "step" in r and "loss" in r]
    assert [r["step"] for r in steps] == [1, 2, 3, 4, 5] and {r["threads"] for r in steps} == {1}
    assert json.loads((run / "eval_val.json").read_text())["threads"] == 1
    evaluated = mmgen_cli("eval", str(run), "--split", "val", "--k", "2", "--max-examples", "10", "--threads", "1",
                          env={"OMP_NUM_THREADS": "2"})
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert json.loads(evaluated.stdout)["threads"] == 1
    assert json.loads((run / "eval_val.json").read_text())["threads"] == 1


FAKE_BENCH = '''
import argparse, json, os, torch
p = argparse.ArgumentParser()
p.add_argument("--device"); p.add_argument("--repeat", type=int); p.add_argument("--out")
a = p.parse_args()
json.dump({"rows": [], "machine": {"threads": torch.get_num_threads()}}, open(a.out, "w"))
'''


def test_bench_passes_threads_to_every_benchmark_and_records_them(tmp_path):
    (tmp_path / "bench_fake.py").write_text(FAKE_BENCH)
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    proc = subprocess.run([sys.executable, "-m", "mmgen", "--threads", "3", "bench", "fake", "--dir", str(tmp_path),
                           "--out-dir", str(out)], capture_output=True, text=True, cwd=ROOT,
                          env={**env, "PYTHONPATH": ROOT}, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((out / "fake_cpu.json").read_text())["machine"]["threads"] == 3
    assert json.loads((out / "summary_cpu.json").read_text())["threads"] == 3
