"""``mmgen train CONFIG | --preset NAME``."""
from __future__ import annotations

import json

from mmgen import presets, runs


def add_parser(subparsers) -> None:
    names = ", ".join(sorted(presets.PRESETS))
    p = subparsers.add_parser(
        "train", help="train a model from a run config or a preset, then evaluate it",
        description="Train a model (resuming from the latest checkpoint in --out if there is one), "
                    f"save it to OUT/model and evaluate it on the test split. Presets: {names}.")
    p.add_argument("config", nargs="?", help="run config JSON file (data, model, train, eval sections)")
    p.add_argument("--preset", help=f"a built-in run config instead of a file: {names}")
    p.add_argument("--out", required=True, help="run folder (metrics.jsonl, samples/, checkpoints/, model/)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a config value, e.g. --set train.steps=200 (repeatable; JSON values)")
    p.add_argument("--device", help="cpu or cuda (default: the config's train.device, else cpu)")
    p.add_argument("--list-presets", action="store_true", help="print the presets and exit")
    p.set_defaults(func=run)


def run(args) -> int:
    if args.list_presets:
        for name, cfg in sorted(presets.PRESETS.items()):
            print(f"{name:18s} {cfg.get('description', '')}")
        return 0
    if bool(args.config) == bool(args.preset):
        raise SystemExit("mmgen train: give either a CONFIG file or --preset NAME (not both)")
    config = runs.apply_overrides(runs.load_config(args.config or args.preset), args.overrides)
    metrics = runs.train(config, args.out, device=args.device)
    print(json.dumps(metrics, indent=2))
    print(f"run folder: {args.out} (model/, samples/, metrics.jsonl, eval_test.json)")
    return 0
