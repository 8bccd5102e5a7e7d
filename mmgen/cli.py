"""The ``mmgen`` command line.

Each subcommand lives in its own module under ``mmgen/commands/`` with a function
``add_parser(subparsers)`` that adds its parser and sets ``func`` (called with the parsed
arguments, returning the exit code). To add a subcommand, write such a module and list it in
``COMMANDS``.
"""
from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = ("mmgen.commands.plugins", "mmgen.commands.train", "mmgen.commands.sample",
            "mmgen.commands.evaluate", "mmgen.commands.bench", "mmgen.commands.kernels")


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mmgen", description="Multimodal deep generative models.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMANDS:
        importlib.import_module(module).add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
