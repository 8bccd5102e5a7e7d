"""The FID and KID a perfect text-to-image model would get: real images against real images.

A text-to-image evaluation (``mmgen eval`` on a captioned dataset) computes FID and KID between the
split's real images and one generated image per caption, on the run's attribute classifier's
features. With 1,000 images in 128 dimensions FID has a large small-sample bias, so a generator
that drew new real images would not score 0. This script measures that floor: the real images of a
split of the run's dataset (its ``seed`` option as configured) against the same split drawn again
with other dataset seeds (independent images of the same attribute mix), on the run's judge, at
each ``--sizes`` (the first n images of both). Writes ``benchmarks/results/fid_floor_<dataset>.json``.

    python benchmarks/fid_floor.py RUN [--splits test heldout] [--seeds 1 2 3] [--sizes 250 500 1000]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics

from mmgen import provenance, runs
from mmgen.data import catalog
from mmgen.eval.attributes import feature_distances, run_classifier
from mmgen.io import atomic_write_bytes

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="a trained text-to-image run (its config names the dataset; its judge is used)")
    parser.add_argument("--splits", nargs="+", default=["test", "heldout"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3],
                        help="dataset seeds of the second real sets (not the run's own)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[250, 500, 1000], help="images per set")
    parser.add_argument("--out", default=None, help="default: benchmarks/results/fid_floor_<dataset>.json")
    args = parser.parse_args(argv)
    config = runs.read_run_config(args.run)
    data = dict(config["data"])
    if "seed" not in catalog.options(data["name"]):
        parser.error(f"dataset {data['name']!r} has no 'seed' option: it cannot be drawn again")
    own = data.get("seed", 0)
    if own in args.seeds:
        parser.error(f"--seeds {args.seeds} include the run's own dataset seed {own}")
    if any(n < 4 for n in args.sizes):
        parser.error(f"--sizes must be >= 4, got {args.sizes}")
    available = runs.dataset_splits(config)
    for split in args.splits:
        if split not in available:
            parser.error(f"split {split!r} not in {data['name']}'s splits {available}")
    judge, made_by = run_classifier(args.run, config)
    rows = []
    for split in args.splits:
        real = runs.dataset(config, split).x
        again = {s: runs.dataset({**config, "data": {**data, "seed": s}}, split).x for s in args.seeds}
        for n in args.sizes:
            if n > len(real) or any(n > len(x) for x in again.values()):
                parser.error(f"--sizes {n} is more than {data['name']}/{split} holds ({len(real)})")
            found = [feature_distances(judge, real[:n], again[s][:n]) for s in args.seeds]
            row = {"split": split, "images": n}
            for key in ("fid", "kid"):
                values = [f[key] for f in found]
                row[key], row[f"{key}_sd"] = statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0
                row[f"{key}_per_seed"] = values
            rows.append(row)
            print(f"{split:8s} n={n:5d}  fid {row['fid']:.1f} ± {row['fid_sd']:.1f}  kid {row['kid']:.4g}", flush=True)
    result = {"benchmark": "fid_floor", **provenance.record(), "run": os.path.abspath(args.run),
              "dataset": data, "second_sets": {"seeds": args.seeds}, "judge": made_by,
              "features": found[0]["features"], "rows": rows}
    out = args.out or os.path.join(RESULTS, f"fid_floor_{data['name'].replace('-', '_')}.json")
    atomic_write_bytes(out, (json.dumps(result, indent=2) + "\n").encode())
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
