"""``mmgen eval RUN_DIR``."""
from __future__ import annotations

import json

from mmgen import runs


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("eval", help="evaluate a trained run (nats per example, bits/dim)")
    p.add_argument("run_dir", help="a run folder written by `mmgen train`")
    p.add_argument("--split", default="test", choices=("train", "val", "test", "heldout"),
                   help="heldout: the unseen (shape, colour) pairs of the shapes dataset")
    p.add_argument("--k", type=int, help="importance samples for the IWAE NLL (default: the run's)")
    p.add_argument("--max-examples", type=int, help="evaluate only this many examples")
    p.add_argument("--inception-weights", metavar="PATH",
                   help="text-to-image runs: also report Inception FID from these local weights")
    p.add_argument("--condition", choices=("mean", "sample"),
                   help="text-to-image runs: generate from the conditioning augmentation's mean (default) "
                        "or from a draw of it (written to eval_t2i_<split>_sampled.json)")
    p.set_defaults(func=run)


def run(args) -> int:
    metrics = runs.evaluate(args.run_dir, args.split, k=args.k, max_examples=args.max_examples,
                            inception_weights=args.inception_weights, condition=args.condition)
    print(json.dumps(metrics, indent=2))
    return 0
