"""How much of a plain EMA's loss is the initial weights it still holds: diffusion runs' bound again.

A diffusion model samples and is bounded with the exponential moving average of its weights. The
plain average (``ema_warmup: false``) keeps a share decay^k of the initial weights after k updates
(5% after 3,000 steps at 0.999). For each plain-EMA run this script takes that share out of the
saved average exactly, (ema - s * initial) / (1 - s) with s = decay^k and the initial weights
rebuilt from the run's seed as training built them, and evaluates the val bound of the result in a
copy of the run (``<out-dir>/<run name>``; the run itself is not touched). What is left is an
average over the trained weights alone, with the same span: against the run's own val bound and a
warm-up run's, it separates the initial weights from the span. Writes
``benchmarks/results/ema_init_share_<dataset>.json``; val only.

    python benchmarks/ema_init_share.py RUN [RUN ...] --out-dir DIR [--threads 1]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil

import torch

from mmgen import provenance, runs
from mmgen.io import atomic_write_json
from mmgen.models import from_config
from mmgen.record import summarize
from mmgen.train import TrainConfig

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def without_initial_weights(run: str, copy: str) -> dict:
    """Write ``run``'s model with the initial weights' share taken out of its average into the run
    folder ``copy`` and evaluate its val bound there; returns the share, both bounds and the seed."""
    config = runs.read_run_config(run)
    model = runs.load_model(run)
    if getattr(model, "ema_decay", 0) <= 0 or getattr(model, "ema_warmup", True):
        raise ValueError(f"{run} is not a run with a plain weight average (ema_decay > 0, ema_warmup false)")
    seed = TrainConfig.from_dict(config.get("train", {})).seed
    torch.manual_seed(seed)  # as mmgen.runs.prepare builds the initial weights
    initial = from_config(runs.model_config(config, runs.dataset(config, "train")))
    updates = int(model.network_ema.n_averaged) - 1  # the copy made at the start counts as one
    share = model.ema_decay ** updates
    with torch.no_grad():
        averaged = dict(model.network_ema.module.named_parameters())
        for name, weight in initial.live.named_parameters():
            averaged[name].copy_((averaged[name] - share * weight) / (1 - share))
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("checkpoints", "tensorboard", "samples", "eval_*.json"))
    shutil.rmtree(os.path.join(copy, "model"))
    model.save_pretrained(os.path.join(copy, "model"))
    with open(os.path.join(run, "eval_val.json")) as f:
        own = json.load(f)["elbo"]
    return {"run": os.path.abspath(run), "seed": seed, "updates": updates,
            "initial_share": share, "elbo": own, "elbo_without_initial": runs.evaluate(copy, "val")["elbo"]}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="finished diffusion runs with a plain EMA (one per seed)")
    parser.add_argument("--out-dir", required=True, help="where the copies with the share taken out go")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument("--out", help="default: benchmarks/results/ema_init_share_<dataset>.json")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    rows = [without_initial_weights(run, os.path.join(args.out_dir, os.path.basename(os.path.normpath(run))))
            for run in args.runs]
    for row in rows:
        print(f"seed {row['seed']}: share {row['initial_share']:.4f}  elbo {row['elbo']:.2f}  "
              f"without the initial weights {row['elbo_without_initial']:.2f}", flush=True)
    dataset = runs.read_run_config(args.runs[0])["data"]["name"]
    result = {"benchmark": "ema_init_share", **provenance.record(), "split": "val",
              "summary": summarize([{k: r[k] for k in ("elbo", "elbo_without_initial")} for r in rows]),
              "runs": rows}
    out = args.out or os.path.join(RESULTS, f"ema_init_share_{dataset.replace('-', '_')}.json")
    atomic_write_json(out, result)
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
