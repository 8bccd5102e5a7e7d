"""``mmgen train CONFIG | --preset NAME``."""
from __future__ import annotations

import argparse
import json
import sys

from mmgen import distributed, presets, runs
from mmgen.cli import UsageError, add_threads_option
from mmgen.commands.presets import print_presets
from mmgen.train import TrainConfig


def add_parser(subparsers) -> None:
    names = ", ".join(sorted(presets.PRESETS))
    p = subparsers.add_parser(
        "train", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train a model in the run folder --out, save it to OUT/model and evaluate it on the\n"
                    "validation split, on the training device (the test split: mmgen eval OUT --split test,\n"
                    "or mmgen record). A folder that already holds a run is refused unless --resume\n"
                    "(continue from its latest checkpoint) or --overwrite (delete it and start again).\n"
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
    existing = p.add_mutually_exclusive_group()
    existing.add_argument("--resume", action="store_true",
                          help="continue the run in OUT from its latest checkpoint (same model and data; "
                               "train.steps may grow); an error if OUT has no checkpoint")
    existing.add_argument("--overwrite", action="store_true",
                          help="delete the run that OUT holds and start again at step 0 (a folder that "
                               "holds files but no run is refused)")
    p.add_argument("--device", help="cpu or cuda (default: the config's train.device, else cpu)")
    p.add_argument("--dry-run", action="store_true",
                   help="check the config (load it, apply --set, build the data and the model as training "
                        "would), print a summary and stop: nothing is trained or written")
    p.add_argument("--list-presets", action="store_true", help="print the presets and exit (= mmgen presets list)")
    add_threads_option(p)
    p.set_defaults(func=run)


def run(args) -> int:
    if args.list_presets:
        print_presets()
        return 0
    if bool(args.config) == bool(args.preset):
        raise UsageError("give either a CONFIG file or --preset NAME (not both)")
    if not args.out:
        raise UsageError("--out DIR (the run folder) is required")
    config = runs.apply_overrides(runs.load_config(args.config or args.preset), args.overrides)
    # every config and run folder error is raised here
    trainer = runs.prepare(config, args.out, device=args.device, resume=args.resume, overwrite=args.overwrite)
    found = runs.existing_run(args.out)
    if args.dry_run:
        print(dry_run_summary(args, config, trainer, found))
        return 0
    if args.overwrite and found is not None and distributed.is_main():
        print(f"mmgen train: --overwrite: deleting the run in {args.out} ({runs.describe_run(found)})",
              file=sys.stderr)
    metrics = runs.train(config, args.out, trainer=trainer, overwrite=args.overwrite)
    if metrics is not None:  # None on the ranks other than 0 of a torchrun run
        print(json.dumps(metrics, indent=2))
        print(f"run folder: {args.out} (model/, samples/, metrics.jsonl, eval_*val.json)")
        from mmgen import report
        print(f"report: {report.write(args.out)}")
    return 0


def dry_run_summary(args, config: dict, trainer, found: dict | None = None) -> str:
    """What ``mmgen train`` would train: config, model, data sizes, steps, and what becomes of the
    run folder (``found``: :func:`mmgen.runs.existing_run`)."""
    cfg, model = trainer.config, trainer.model
    parameters = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    source = f"preset {args.preset}" if args.preset else f"config {args.config}"
    overrides = f" with {', '.join(args.overrides)}" if args.overrides else ""
    val = f", val {len(trainer.val_data):,}" if trainer.val_data is not None else ""
    epochs = cfg.steps * cfg.batch_size / len(trainer.train_data)
    return "\n".join([
        f"dry run: the config is valid; nothing was trained or written ({args.out} untouched)",
        f"config:   {source}{overrides}",
        f"model:    {type(model).__name__} ({getattr(model, 'config', {}).get('model', '?')}), {parameters:,} parameters"
        + (f" ({trainable:,} trainable)" if trainable != parameters else ""),
        f"data:     {config['data']['name']}: train {len(trainer.train_data):,}{val} examples",
        f"training: {cfg.steps:,} steps of batch {cfg.batch_size} ({epochs:.1f} epochs) on {trainer.device}",
        f"run:      {run_folder_plan(args, found)}"])


def run_folder_plan(args, found: dict | None) -> str:
    if found is None:
        return f"a new run in {args.out}"
    if args.overwrite:
        return f"deletes the run in {args.out} ({runs.describe_run(found)}) and starts at step 0"
    return f"resumes the run in {args.out} ({runs.describe_run(found)})"
