"""The FID and KID a perfect text-to-image model would get on ``shapes``: real against real images.

A text-to-image evaluation (``mmgen eval`` on a captioned dataset) computes FID and KID between the
split's real images and one generated image per example's caption, on the run's attribute
classifier's features. A perfect generator would draw each example's attributes (shape, colour,
size, position) again with fresh rendering noise (the jitter of size, place and colour within an
attribute value); with 1,000 images in 128 dimensions FID has a small-sample bias, so it would not
score 0. This script measures that floor: each split's real images against the same attributes
rendered again by generators seeded ``--seeds``, on the run's judge, at each ``--sizes`` (the first
n images of both): ``rendered_again``. For contrast, ``other_draw``: against the split drawn again
with dataset seed s (other attributes, the same mix in expectation). Each is FID and KID,
mean / sd / min / max over the seeds. Writes ``benchmarks/results/fid_floor_shapes.json``.

    python benchmarks/fid_floor.py RUN [--splits test heldout] [--seeds 1 2 3] [--sizes 250 500 1000]
"""
from __future__ import annotations

import argparse
import os

import torch

from mmgen import provenance, runs
from mmgen.data.captions import render_shapes
from mmgen.eval.attributes import feature_distances, run_classifier
from mmgen.io import atomic_write_json
from mmgen.record import summarize

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="a trained text-to-image run (its config names the dataset; its judge is used)")
    parser.add_argument("--splits", nargs="+", default=["test", "heldout"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3],
                        help="seeds of the second renderings (and of the other draws: not the run's own dataset seed)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[250, 500, 1000], help="images per set")
    parser.add_argument("--out", default=os.path.join(RESULTS, "fid_floor_shapes.json"))
    args = parser.parse_args(argv)
    config = runs.read_run_config(args.run)
    data = dict(config["data"])
    if data["name"] != "shapes":
        parser.error(f"the run's dataset is {data['name']!r}: only 'shapes' can be rendered again")
    own = data.get("seed", 0)
    if own in args.seeds:
        parser.error(f"--seeds {args.seeds} include the run's own dataset seed {own}")
    if any(n < 4 for n in args.sizes):
        parser.error(f"--sizes must be >= 4, got {args.sizes}")
    available = runs.dataset_splits(config)
    for split in args.splits:
        if split not in available:
            parser.error(f"split {split!r} not in {data['name']}'s splits {available}")
        if max(args.sizes) > len(runs.dataset(config, split)):
            parser.error(f"--sizes {max(args.sizes)} is more than {data['name']}/{split} holds "
                         f"({len(runs.dataset(config, split))})")
    judge, made_by = run_classifier(args.run, config)
    rows = []
    for split in args.splits:
        part = runs.dataset(config, split)
        real = part.x
        rendered = {s: render_shapes(part.attributes, real.shape[-1], torch.Generator().manual_seed(s))
                    for s in args.seeds}
        other = {s: runs.dataset({**config, "data": {**data, "seed": s}}, split).x for s in args.seeds}
        for n in args.sizes:
            row = {"split": split, "images": n}
            for name, second in (("rendered_again", rendered), ("other_draw", other)):
                found = [feature_distances(judge, real[:n], second[s][:n]) for s in args.seeds]
                row[name] = summarize([{key: f[key] for key in ("fid", "kid")} for f in found])
            rows.append(row)
            floor, other_fid = row["rendered_again"]["fid"], row["other_draw"]["fid"]
            print(f"{split:8s} n={n:5d}  fid {floor['mean']:.1f} ± {floor['sd']:.1f}  (another draw of the split: "
                  f"{other_fid['mean']:.1f} ± {other_fid['sd']:.1f})", flush=True)
    result = {"benchmark": "fid_floor", **provenance.record(), "run": os.path.abspath(args.run),
              "dataset": data, "second_sets": {"rendered_again": {"generator_seeds": args.seeds},
                                                "other_draw": {"dataset_seeds": args.seeds}},
              "judge": made_by, "features": found[0]["features"], "rows": rows}
    atomic_write_json(args.out, result)
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
