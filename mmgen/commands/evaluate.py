"""``mmgen eval RUN_DIR``."""
from __future__ import annotations

import json

from mmgen import distributed, runs
from mmgen.cli import add_threads_option


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("eval")
    p.add_argument("run_dir", help="a run folder written by `mmgen train`")
    p.add_argument("--split", default="val", choices=("train", "val", "test", "heldout"),
                   help="default val: choose settings on val, and read test (named explicitly) once, for "
                        "the record (mmgen record does); heldout: the unseen (shape, colour) pairs of the "
                        "shapes dataset")
    p.add_argument("--k", type=int, help="importance samples for the IWAE NLL (default: the run's)")
    p.add_argument("--max-examples", type=int, help="evaluate only this many examples")
    p.add_argument("--metric", action="append", metavar="NAME",
                   help="run this registered metric (repeatable; replaces the run's eval.metrics; "
                        "`mmgen plugins list` shows the metrics); its numbers go under \"metrics\"")
    p.add_argument("--metric-option", action="append", default=[], metavar="NAME.KEY=VALUE",
                   help="an option of a requested metric, e.g. myplugin.fid.k=10 (repeatable; JSON values)")
    p.add_argument("--inception-weights", metavar="PATH",
                   help="text-to-image runs: also report Inception FID from these local weights")
    p.add_argument("--condition", choices=("mean", "sample"),
                   help="text-to-image runs: generate from the conditioning augmentation's mean (default) "
                        "or from a draw of it (written to eval_t2i_<split>_sampled.json)")
    p.add_argument("--guidance-scale", type=float, metavar="S",
                   help="conditional diffusion runs: sample with this classifier-free guidance scale instead "
                        "of the run's (written to eval_t2i_<split>_guidance_<S>.json)")
    p.add_argument("--sampler", choices=("ddpm", "ddim"),
                   help="diffusion runs: sample with this sampler instead of the run's (file ..._sampler_<S>)")
    p.add_argument("--sample-steps", type=int, metavar="N",
                   help="diffusion runs: sample in N steps instead of the run's (file ..._steps_<N>)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    add_threads_option(p)
    p.set_defaults(func=run)


def parse_metric_options(items: list[str]) -> dict[str, dict]:
    """``["toy.fid.k=10"]`` -> ``{"toy.fid": {"k": 10}}`` (values parsed as JSON, else kept as strings)."""
    options: dict[str, dict] = {}
    for item in items:
        path, sep, raw = item.partition("=")
        name, dot, key = path.rpartition(".")
        if not sep or not dot or not name or not key:
            raise ValueError(f"--metric-option {item!r} must look like NAME.KEY=VALUE (e.g. myplugin.fid.k=10)")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        options.setdefault(name, {})[key] = value
    return options


def sampling_overrides(args) -> dict:
    """The sampling settings given on the command line, as model options (``sample_steps``, ...)."""
    given = {"sampler": args.sampler, "sample_steps": args.sample_steps, "guidance_scale": args.guidance_scale}
    return {key: value for key, value in given.items() if value is not None}


def run(args) -> int:
    distributed.check_device(args.device, "--device")
    metrics = runs.evaluate(args.run_dir, args.split, metrics=args.metric,
                            metric_options=parse_metric_options(args.metric_option), k=args.k,
                            max_examples=args.max_examples, inception_weights=args.inception_weights,
                            condition=args.condition, sampling=sampling_overrides(args), device=args.device)
    print(json.dumps(metrics, indent=2))
    return 0
