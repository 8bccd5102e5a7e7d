"""The ``mmgen`` command line.

Each subcommand lives in its own module under ``mmgen/commands/`` with a function
``add_parser(subparsers)`` that adds its parser and sets ``func`` (called with the parsed
arguments, returning the exit code). To add a subcommand, write such a module and list it in
``COMMANDS``.

Global options (before the subcommand): ``--threads N`` sets torch's CPU threads for the command
(``torch.set_num_threads(N)`` and, while still allowed, ``torch.set_interop_threads(N)``); the
default is torch's own choice. ``train``, ``eval``, ``sample`` and ``bench`` also accept it after
the subcommand (``THREADS_OPTION``). Where it is recorded: ``metrics.jsonl`` lines of a training
run and ``eval_<split>.json`` carry ``"threads"``; ``mmgen bench`` runs each benchmark with
``OMP_NUM_THREADS=N`` (its result records ``machine.threads``) and writes ``threads`` in the summary.
"""
from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = ("mmgen.commands.plugins", "mmgen.commands.train", "mmgen.commands.sample",
            "mmgen.commands.evaluate", "mmgen.commands.record", "mmgen.commands.bench",
            "mmgen.commands.kernels")

THREADS_HELP = "torch CPU threads for this command (torch.set_num_threads; default: torch's choice)"


def thread_count(value: str) -> int:
    """argparse type of ``--threads``: an integer >= 1."""
    try:
        count = int(value)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value!r}") from None
    if count < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer (>= 1), got {count}")
    return count


def add_threads_option(parser: argparse.ArgumentParser) -> None:
    """``--threads N`` after a subcommand; it leaves the global ``mmgen --threads N`` alone when absent."""
    parser.add_argument("--threads", type=thread_count, default=argparse.SUPPRESS, metavar="N", help=THREADS_HELP)


def set_threads(count: int | None) -> dict:
    """Apply ``--threads``: intra-op threads always; inter-op threads only while torch still allows
    it (before any inter-op work, once per process), else they stay as they are. Returns the
    counts in effect: ``{"threads": ..., "interop_threads": ...}``."""
    import torch
    if count is not None:
        torch.set_num_threads(count)
        if torch.get_num_interop_threads() != count:
            try:
                torch.set_num_interop_threads(count)
            except RuntimeError:  # already set, or inter-op work started: keep torch's
                pass
    return {"threads": torch.get_num_threads(), "interop_threads": torch.get_num_interop_threads()}


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mmgen", description="Multimodal deep generative models.")
    parser.add_argument("--threads", type=thread_count, default=None, metavar="N", help=THREADS_HELP)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMANDS:
        importlib.import_module(module).add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # the command line, for the records
    if args.threads is not None:
        set_threads(args.threads)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
