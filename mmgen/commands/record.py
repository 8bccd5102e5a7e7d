"""``mmgen record PRESET --seeds 0 1 2`` and ``mmgen record --check PRESET`` (see :mod:`mmgen.record`)."""
from __future__ import annotations

import argparse

from mmgen.cli import UsageError, add_threads_option


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "record", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train SOURCE (a preset or a run config file) once per seed, evaluate each run on val\n"
                    "(selection) and test (the report), and write benchmarks/results/quality_<NAME>.json\n"
                    "with the provenance (commit, versions, machine, threads, command line), each seed's\n"
                    "numbers and, per split, mean, sd, min and max. Finished runs in RUNS/seed<S> of the\n"
                    "same config are reused.\n"
                    "--check re-trains one recorded seed (with the record's thread count unless --threads)\n"
                    "and fails (exit 1) when a metric falls outside the record's 99% prediction interval,\n"
                    "mean ± t(0.995, n-1)·sd·sqrt(1+1/n).")
    p.add_argument("source", metavar="SOURCE", nargs="+",
                   help="a preset name or a run config file (JSON or YAML); several with --compare")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], metavar="S",
                   help="training seeds (train.seed; default: 0 1 2)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a config value, as in mmgen train (recorded; --check applies it again)")
    p.add_argument("--also-split", dest="also_splits", action="append", default=[], metavar="SPLIT",
                   help="evaluate and record this split too, report-only like test (e.g. heldout: the "
                        "unseen caption pairs of shapes; with --compare, in every model's record and in the "
                        "comparison); repeatable")
    p.add_argument("--name", help="the record's name: quality_<NAME>.json (default: from SOURCE, - as _)")
    p.add_argument("--runs", metavar="DIR", help="run folders, one per seed: DIR/seed<S> (default: "
                                                 "runs/record/<NAME>; --check: a temporary folder)")
    p.add_argument("--out", metavar="FILE", help="the record file (default: the checkout's "
                                                 "benchmarks/results/quality_<NAME>.json)")
    p.add_argument("--device", help="cpu or cuda (default: the config's train.device, else cpu)")
    p.add_argument("--compare", metavar="NAME",
                   help="record every SOURCE (same seeds and --set) and write benchmarks/results/"
                        "compare_<NAME>.json: their val and test (and --also-split) summaries and seconds per "
                        "training step")
    p.add_argument("--reuse-records", action="store_true",
                   help="--compare: take a SOURCE from its existing quality record when that holds the same run "
                        "config, seeds and --set (and --also-split splits) from a clean checkout, instead of "
                        "training it again (the comparison then names each model's commit and machine)")
    p.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="train up to N seeds at once, each in a process of its own with --threads threads "
                        "(default 1: one after the other, in this process); e.g. --jobs 2 --threads 1 on 2 cores")
    p.add_argument("--check", action="store_true",
                   help="re-train one recorded seed and compare with the record instead of recording")
    p.add_argument("--seed", type=int, help="--check: the seed to re-train (default: the first recorded)")
    add_threads_option(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from mmgen import record
    if args.compare:
        if args.check or args.name:
            raise UsageError("--compare records each SOURCE under its own name; it takes no --check or --name")
        record.compare(args.source, args.seeds, args.compare, overrides=args.overrides, runs_dir=args.runs,
                       out=args.out, device=args.device, command=["mmgen", *args.argv],
                       reuse_records=args.reuse_records, jobs=args.jobs, also_splits=args.also_splits)
        return 0
    if args.reuse_records:
        raise UsageError("--reuse-records applies to --compare only")
    if len(args.source) != 1:
        raise UsageError(f"one SOURCE at a time (several only with --compare NAME), got {args.source}")
    args.source = args.source[0]
    if not args.check:
        record.record(args.source, args.seeds, overrides=args.overrides, name=args.name,
                      runs_dir=args.runs, out=args.out, device=args.device, also_splits=args.also_splits,
                      command=["mmgen", *args.argv], jobs=args.jobs)
        return 0
    if args.jobs != 1:
        raise UsageError("--check re-trains one seed; --jobs is for recording several")
    if args.overrides or args.name or args.seeds != [0, 1, 2] or args.also_splits:
        raise UsageError("--check re-trains the record's own config and seed (its overrides, its seeds, "
                         "its splits); it takes --seed, --out (the record), --runs and --device, not --set, "
                         "--name, --seeds or --also-split")
    ok, rows = record.check(args.source, record_path=args.out, seed=args.seed, runs_dir=args.runs,
                            device=args.device, threads=getattr(args, "threads", None))
    width = max(len(f"{r['split']} {r['metric']}") for r in rows)
    for r in rows:
        value = "missing" if r["value"] is None else f"{r['value']:.6g}"
        print(f"{'ok  ' if r['ok'] else 'FAIL'} {(r['split'] + ' ' + r['metric']).ljust(width)}  {value:>12}  "
              f"in [{r['low']:.6g}, {r['high']:.6g}] (mean {r['mean']:.6g}, sd {r['sd']:.3g})")
    same = [r for r in rows if r["recorded"] is not None and r["value"] == r["recorded"]]
    print(f"seed {rows[0]['seed']}: {len(same)} of {len(rows)} metrics repeat the recorded "
          "run exactly" + ("" if len(same) == len(rows) else " (another CPU or summation order gives another trajectory)"))
    failed = [r for r in rows if not r["ok"]]
    print(f"mmgen record --check {args.source}: "
          + (f"{len(failed)} of {len(rows)} metrics outside the recorded spread" if failed
             else f"all {len(rows)} metrics inside the recorded spread"))
    return 1 if failed else 0
