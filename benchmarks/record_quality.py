"""Record a finished run's test metrics as benchmarks/results/quality_<NAME>.json.

    python benchmarks/record_quality.py RUN_DIR NAME [--note TEXT]

Copies the run config (run.json), the test metrics (eval_test.json, or eval_t2i_test.json for a
text-to-image run) and those of any other split evaluated (eval_*_<split>.json, under
``other_splits``), the training wall time (the last ``elapsed_s`` of metrics.jsonl) and the
machine, so every quality number quoted in an issue or the README points at a committed file.
"""
from __future__ import annotations

import argparse
import json
import os
import time

from common import RESULTS, machine


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir")
    p.add_argument("name", help="file name part: quality_<NAME>.json")
    p.add_argument("--note", default="", help="free text stored with the result (e.g. the split and seeds)")
    args = p.parse_args()
    with open(os.path.join(args.run_dir, "run.json")) as f:
        config = json.load(f)
    evaluated = sorted(name for name in os.listdir(args.run_dir) if name.startswith("eval_") and name.endswith(".json"))
    test = next((name for name in ("eval_test.json", "eval_t2i_test.json") if name in evaluated), None)
    if test is None:
        raise SystemExit(f"{args.run_dir} has no eval_test.json or eval_t2i_test.json: run `mmgen eval` first")
    metrics, others = None, {}
    for name in evaluated:
        with open(os.path.join(args.run_dir, name)) as f:
            if name == test:
                metrics = json.load(f)
            else:
                others[name[:-len(".json")]] = json.load(f)
    elapsed = None
    with open(os.path.join(args.run_dir, "metrics.jsonl")) as f:
        for line in f:
            elapsed = json.loads(line).get("elapsed_s", elapsed)
    payload = {"benchmark": f"quality: {config.get('description', args.name)}", "date": time.strftime("%Y-%m-%d"),
               "machine": machine("cpu"), "train_seconds": elapsed, "note": args.note,
               "metrics": metrics, **({"other_splits": others} if others else {}), "run_config": config}
    path = os.path.join(RESULTS, f"quality_{args.name}.json")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(payload, f, indent=2)
    os.replace(tmp, path)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
