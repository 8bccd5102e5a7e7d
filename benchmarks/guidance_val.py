"""Choose a caption-conditioned diffusion preset's guidance scale on val, over its recorded runs.

Each run (one per training seed, e.g. the ``--runs`` folders of ``mmgen record diffusion-shapes``)
is judged on the whole val split at each ``--scales`` value by its attribute classifier
(``mmgen.eval.attributes.evaluate_run``). An evaluation already saved in the run is read instead:
``eval_t2i_val.json`` at the run's own scale, ``eval_t2i_val_guidance_<S>.json`` at another, if
the current judge wrote it on every val example. The rule, fixed here before any number is read:
a scale qualifies when its mean val ``consistency_all`` is at least the run's own scale's mean
minus two of its sds; the qualifying scale with the lowest mean val FID is chosen. Only val is
read: test and held-out are for the record the chosen preset gets. Writes
``benchmarks/results/guidance_<dataset>.json`` (``--out`` to name another).

    python benchmarks/guidance_val.py RUN [RUN ...] --scales 3 1 [--threads 1]
"""
from __future__ import annotations

import argparse
import json
import os

import torch

from mmgen import provenance, runs
from mmgen.eval import attributes
from mmgen.io import atomic_write_json
from mmgen.record import stale_judge, summarize

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
METRICS = ("consistency_all", "fid")


def val_evaluation(run: str, scale: float, own: float, examples: int, config: dict) -> tuple[dict, bool]:
    """The run's val evaluation at guidance ``scale`` and whether it was read from the run."""
    sampling = None if scale == own else {"guidance_scale": scale}
    path = os.path.join(run, runs.eval_file("val", sampling, t2i=True))
    if os.path.exists(path):
        with open(path) as f:
            saved = json.load(f)
        if (saved.get("examples") == examples and runs.evaluated_sampling(saved, config)["guidance_scale"] == scale
                and stale_judge(saved, config) is None):
            return saved, True
    return attributes.evaluate_run(run, "val", sampling=sampling), False


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="trained runs of one preset (one per seed)")
    parser.add_argument("--scales", type=float, nargs="+", required=True, help="guidance scales to compare")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument("--out", help="default: benchmarks/results/guidance_<dataset>.json")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if any(s < 0 for s in args.scales) or len(set(args.scales)) != len(args.scales):
        parser.error(f"--scales must be distinct numbers >= 0, got {args.scales}")
    configs = [runs.read_run_config(run) for run in args.runs]
    strip = [{k: v for k, v in c.items() if k != "train"} for c in configs]
    if any(c != strip[0] for c in strip):
        parser.error("the runs must be seeds of one config (their model and data sections differ)")
    model = runs.load_model(args.runs[0])
    own = getattr(model, "guidance_scale", None)
    if own is None or not getattr(model, "text_to_image", False):
        parser.error(f"{args.runs[0]} is not a caption-conditioned diffusion run (no guidance scale)")
    if own not in args.scales:
        parser.error(f"--scales {args.scales} must include the runs' own guidance scale {own:g} (the baseline)")
    examples = len(runs.dataset(configs[0], "val"))
    rows, sources = [], []
    for scale in args.scales:
        found = []
        for run, config in zip(args.runs, configs):
            metrics, read = val_evaluation(run, scale, own, examples, config)
            found.append(metrics)
            sources.append({"run": os.path.abspath(run), "guidance_scale": scale, "read_saved": read,
                            "eval_seconds": metrics.get("eval_seconds")})
        summary = summarize([{m: f[m] for m in METRICS} for f in found])
        rows.append({"guidance_scale": scale, **{m: {**summary[m], "per_run": [f[m] for f in found]} for m in METRICS}})
        print(f"guidance {scale:g}: " + "  ".join(f"{m} {rows[-1][m]['mean']:.4g} ± {rows[-1][m]['sd']:.2g}"
                                                   for m in METRICS), flush=True)
    base = next(r for r in rows if r["guidance_scale"] == own)["consistency_all"]
    bar = base["mean"] - 2 * base["sd"]
    qualified = [r for r in rows if r["consistency_all"]["mean"] >= bar]
    chosen = min(qualified, key=lambda r: r["fid"]["mean"])["guidance_scale"]
    print(f"chosen on val: guidance {chosen:g} (consistency_all bar {bar:.4f})")
    result = {"benchmark": "guidance_val", **provenance.record(), "split": "val", "runs": [os.path.abspath(r) for r in args.runs],
              "seeds": [c.get("train", {}).get("seed") for c in configs], "own_guidance_scale": own,
              "rule": "lowest mean val fid among scales whose mean val consistency_all >= the own scale's mean - 2 sd",
              "consistency_all_bar": bar, "chosen": chosen, "rows": rows, "evaluations": sources}
    out = args.out or os.path.join(RESULTS, f"guidance_{configs[0]['data']['name'].replace('-', '_')}.json")
    atomic_write_json(out, result)
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
