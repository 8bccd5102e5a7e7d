"""``mmgen report RUN [RUN ...]``."""
from __future__ import annotations


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "report", description="Write one self-contained HTML page (no network needed to view it) of one or "
                              "several run folders: loss and metric curves over steps (several runs overlaid), "
                              "the run config, the evaluations, the sample grids, audio players and text "
                              "samples of the last sampling steps, and the provenance (commit, versions, machine).")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run folders written by `mmgen train`")
    p.add_argument("--out", help="the HTML file (default: RUN/report.html for one run, ./report.html for several)")
    p.add_argument("--sample-steps", default="5", metavar="N|all",
                   help="show the samples of the last N sampling steps of each run (default 5; 'all': every "
                        "one; the page grows by about 2 MB per step with audio); earlier steps are named")
    p.set_defaults(func=run)


def run(args) -> int:
    from mmgen import report
    print(f"report: {report.write(args.runs, args.out, args.sample_steps)}")
    return 0
