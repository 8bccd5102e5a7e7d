"""``mmgen report RUN [RUN ...]``."""
from __future__ import annotations


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "report", description="Write one self-contained HTML page (no network needed to view it) of one or "
                              "several run folders: loss and metric curves over steps (several runs overlaid), "
                              "the run config, the evaluations, the sample grids, audio players and text "
                              "samples of every sampling step, and the provenance (commit, versions, machine).")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run folders written by `mmgen train`")
    p.add_argument("--out", help="the HTML file (default: RUN/report.html for one run, ./report.html for several)")
    p.set_defaults(func=run)


def run(args) -> int:
    from mmgen import report
    print(f"report: {report.write(args.runs, args.out)}")
    return 0
