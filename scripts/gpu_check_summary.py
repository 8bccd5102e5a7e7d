"""The one JSON of a GPU check (scripts/gpu_check.sh): its stages, tests and benchmark numbers.

    python scripts/gpu_check_summary.py OUT_DIR [--results DIR]

Reads what gpu_check.sh left in OUT_DIR: ``stages.tsv`` (one line per stage: name, exit status,
seconds), ``junit.xml`` (the CUDA tests: counts, and each failed or erroring test with its message)
and ``summary_cuda.json`` (``mmgen bench``'s speed-up rows, when the benchmarks ran), and writes
``gpu_check_cuda.json`` with the provenance (commit, date, command, machine with the GPU, versions)
into OUT_DIR and into ``--results`` (default: the checkout's benchmarks/results/). Exit status 0;
a missing part is recorded as missing, not guessed.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import xml.etree.ElementTree as ET

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # the checkout's mmgen (provenance, atomic writes)
NAME = "gpu_check_cuda.json"


def read_stages(path: str) -> list[dict]:
    """stages.tsv -> [{stage, exit, seconds}] in the order they ran."""
    stages = []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            fields = line.rstrip("\n").split("\t")
            if len(fields) != 3:
                raise ValueError(f"{path}:{number}: expected 'name<TAB>exit<TAB>seconds', got {line!r}")
            stages.append({"stage": fields[0], "exit": int(fields[1]), "seconds": int(fields[2])})
    return stages


def read_junit(path: str) -> dict:
    """Test counts of a pytest junit XML file and the failed / erroring tests with their messages."""
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    counts = {key: sum(int(s.get(key, 0)) for s in suites) for key in ("tests", "failures", "errors", "skipped")}
    problems = []
    for case in root.iter("testcase"):
        for kind in ("failure", "error"):
            for item in case.findall(kind):
                problems.append({"test": f"{case.get('classname')}::{case.get('name')}", "kind": kind,
                                 "message": (item.get("message") or "")[:500]})
    return {**counts, "passed": counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"],
            "problems": problems}


def summarize(out_dir: str, command: list[str] | None = None) -> dict:
    from mmgen import provenance
    stages_path, junit_path = os.path.join(out_dir, "stages.tsv"), os.path.join(out_dir, "junit.xml")
    bench_path = os.path.join(out_dir, "summary_cuda.json")
    stages = read_stages(stages_path) if os.path.exists(stages_path) else []
    bench = None
    if os.path.exists(bench_path):
        with open(bench_path) as f:
            bench = json.load(f).get("rows")
    return {"benchmark": "gpu check", **provenance.record("cuda", command),
            "stages": stages, "failed_stages": [s["stage"] for s in stages if s["exit"] != 0],
            "tests": read_junit(junit_path) if os.path.exists(junit_path) else None,
            "speedups": bench,
            "files": sorted(f for f in os.listdir(out_dir) if f.endswith(".json") and f != NAME)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out_dir", help="the folder gpu_check.sh wrote")
    p.add_argument("--results", default=os.path.join(ROOT, "benchmarks", "results"),
                   help="where the summary is also written (default: the checkout's benchmarks/results)")
    args = p.parse_args(argv)
    if not os.path.isdir(args.out_dir):
        raise SystemExit(f"gpu_check_summary: {args.out_dir} is not a folder")
    from mmgen.io import atomic_write_json
    summary = summarize(args.out_dir, ["bash", "scripts/gpu_check.sh"])
    for folder in dict.fromkeys([args.out_dir, args.results]):
        os.makedirs(folder, exist_ok=True)
        atomic_write_json(os.path.join(folder, NAME), summary)
        print(f"wrote {os.path.join(folder, NAME)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
