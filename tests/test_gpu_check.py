"""scripts/gpu_check.sh on a machine without a GPU, and its summary JSON (scripts/gpu_check_summary.py)."""
import json
import os
import subprocess
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import gpu_check_summary  # noqa: E402

JUNIT = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" errors="0" failures="1"
skipped="1" tests="4"><testcase classname="tests.test_vq" name="test_a"/><testcase classname="tests.test_vq"
name="test_b"><failure message="assert 1 == 2">trace</failure></testcase><testcase classname="tests.test_vq"
name="test_c"><skipped message="needs two GPUs"/></testcase><testcase classname="tests.test_vq" name="test_d"/>
</testsuite></testsuites>"""


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here: the check would run for real")
def test_without_a_gpu_the_check_says_so_and_exits_cleanly(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run(["bash", os.path.join(ROOT, "scripts", "gpu_check.sh"), str(out)], capture_output=True,
                          text=True, env={**os.environ, "PYTHON": sys.executable}, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "no CUDA GPU on this machine (torch.cuda.is_available() is False): nothing to check" in proc.stdout
    assert (out / "gpu_check.log").exists() and not (out / "gpu_check_cuda.json").exists()  # nothing built or run


def test_the_summary_holds_the_stages_the_tests_and_the_speedups(tmp_path):
    out, results = tmp_path / "out", tmp_path / "results"
    out.mkdir()
    (out / "stages.tsv").write_text("build\t0\t95\ntests\t1\t60\nbench\t124\t150\n")
    (out / "junit.xml").write_text(JUNIT)
    rows = [{"case": "mmgen.vq_nearest 65536x512x64", "value": 3.1}]
    (out / "summary_cuda.json").write_text(json.dumps({"rows": rows}))
    assert gpu_check_summary.main([str(out), "--results", str(results)]) == 0
    written = json.loads((out / "gpu_check_cuda.json").read_text())
    assert written == json.loads((results / "gpu_check_cuda.json").read_text())
    assert written["stages"] == [{"stage": "build", "exit": 0, "seconds": 95}, {"stage": "tests", "exit": 1, "seconds": 60},
                                 {"stage": "bench", "exit": 124, "seconds": 150}]
    assert written["failed_stages"] == ["tests", "bench"]
    tests = written["tests"]
    assert (tests["tests"], tests["passed"], tests["failures"], tests["skipped"]) == (4, 2, 1, 1)
    assert tests["problems"] == [{"test": "tests.test_vq::test_b", "kind": "failure", "message": "assert 1 == 2"}]
    assert written["speedups"] == rows and written["files"] == ["summary_cuda.json"]
    for key in ("git_commit", "date", "machine", "command"):
        assert key in written, key
    (out / "stages.tsv").write_text("build 0 95\n")
    with pytest.raises(ValueError, match=r"stages.tsv:1: expected 'name<TAB>exit<TAB>seconds', got 'build 0 95\\n'"):
        gpu_check_summary.main([str(out), "--results", str(results)])


def test_stages_share_the_checks_time_budget_and_a_stage_with_none_left_is_skipped(tmp_path):
    script = f"""
log={tmp_path}/gpu_check.log out={tmp_path} failed=()
GPU_CHECK_BUDGET=8 GPU_CHECK_RESERVE=1
source {os.path.join(ROOT, "scripts", "gpu_check_stage.sh")}
stage quick 100 true
stage slow 100 sleep 30
stage late 100 true
echo "failed: ${{failed[*]}}"
"""
    proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [line.split("\t") for line in (tmp_path / "stages.tsv").read_text().splitlines()]
    assert [(name, rc) for name, rc, _ in lines] == [("quick", "0"), ("slow", "124"), ("late", "124")]
    assert 5 <= int(lines[1][2]) <= 8  # stopped at the budget (8 s less 1 s kept), not at its own 100 s
    assert lines[2][2] == "0"
    assert "== late: skipped, the check's time budget (GPU_CHECK_BUDGET=8 s) is spent" in proc.stdout
    assert "failed: slow late" in proc.stdout
