"""``mmgen train CONFIG | --preset NAME``."""
from __future__ import annotations

import argparse
import json

from mmgen import presets, runs
from mmgen.cli import UsageError, add_threads_option
from mmgen.train import TrainConfig


def add_parser(subparsers) -> None:
    names = ", ".join(sorted(presets.PRESETS))
    p = subparsers.add_parser(
        "train", help="train a model from a run config or a preset, then evaluate it on val",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train a model (resuming from the latest checkpoint in --out if there is one),\n"
                    "save it to OUT/model and evaluate it on the validation split\n"
                    "(the test split: mmgen eval OUT --split test, or mmgen record).\n"
                    "Several processes: torchrun --nproc_per_node=N -m mmgen train ... (DDP; gloo on CPU,\n"
                    "nccl on CUDA; train.batch_size is the global batch, split over the N processes).\n"
                    f"Presets: {names}.",
        epilog="training options (the run config's train section, or --set train.KEY=VALUE), with defaults:\n"
               + TrainConfig.describe())
    p.add_argument("config", nargs="?", help="run config file, JSON or YAML (data, model, train, eval sections)")
    p.add_argument("--preset", help=f"a built-in run config instead of a file: {names}")
    p.add_argument("--out", help="run folder (metrics.jsonl, samples/, checkpoints/, model/); required "
                                 "unless --list-presets")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a config value, e.g. --set train.steps=200 (repeatable; JSON values)")
    p.add_argument("--device", help="cpu or cuda (default: the config's train.device, else cpu)")
    p.add_argument("--list-presets", action="store_true", help="print the presets and exit")
    add_threads_option(p)
    p.set_defaults(func=run)


def run(args) -> int:
    if args.list_presets:
        for name, cfg in sorted(presets.PRESETS.items()):
            print(f"{name:18s} {cfg.get('description', '')}")
        return 0
    if bool(args.config) == bool(args.preset):
        raise UsageError("give either a CONFIG file or --preset NAME (not both)")
    if not args.out:
        raise UsageError("--out DIR (the run folder) is required")
    config = runs.apply_overrides(runs.load_config(args.config or args.preset), args.overrides)
    trainer = runs.prepare(config, args.out, device=args.device)  # every config error is raised here
    metrics = runs.train(config, args.out, trainer=trainer)
    if metrics is not None:  # None on the ranks other than 0 of a torchrun run
        print(json.dumps(metrics, indent=2))
        print(f"run folder: {args.out} (model/, samples/, metrics.jsonl, eval_*val.json)")
    return 0
