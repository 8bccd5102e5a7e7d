"""The ``mmgen`` command line.

Each subcommand lives in its own module under ``mmgen/commands/`` with a function
``add_parser(subparsers)`` that adds its parser and sets ``func`` (called with the parsed
arguments, returning the exit code). To add a subcommand, write such a module and list it in
``COMMANDS`` with its one-line help. Only the module of the command being run is imported (its
parser is built when the command line names it), and ``import mmgen`` does not import torch, so
``mmgen --help`` and ``mmgen --version`` import neither torch nor any command.

Global options (before the subcommand): ``--threads N`` sets torch's CPU threads for the command
(``torch.set_num_threads(N)`` and, while still allowed, ``torch.set_interop_threads(N)``); the
default is torch's own choice. ``train``, ``eval``, ``sample``, ``bench`` and ``demo`` also accept
it after the subcommand (``THREADS_OPTION``). Where it is recorded: ``metrics.jsonl`` lines of a training
run and ``eval_<split>.json`` carry ``"threads"``; ``mmgen bench`` runs each benchmark with
``OMP_NUM_THREADS=N`` (its result records ``machine.threads``) and writes ``threads`` in the summary.

Errors: :func:`main` is the one place that turns a user's error into a message. A command raises
ValueError, TypeError, LookupError, OSError or one of mmgen's errors (``USER_ERRORS``); ``main``
prints ``mmgen: error: COMMAND: message`` on one line of stderr and returns 1. A wrong command line
is exit 2 (argparse's own errors, and :class:`UsageError` raised by a command); Ctrl-C is exit 130.
``--traceback`` (or ``MMGEN_DEBUG=1``) re-raises instead, with the full stack.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

# command -> (its module, its help in the list of ``mmgen --help``)
COMMANDS = {
    "plugins": ("mmgen.commands.plugins", "list installed plugins and diagnose failures"),
    "presets": ("mmgen.commands.presets", "the built-in run configs (mmgen train --preset NAME)"),
    "train": ("mmgen.commands.train", "train a model from a run config or a preset, then evaluate it on val"),
    "sample": ("mmgen.commands.sample", "draw samples from a trained run and write a PNG grid"),
    "eval": ("mmgen.commands.evaluate", "evaluate a trained run (nats per example, bits/dim, registered metrics)"),
    "report": ("mmgen.commands.report", "write an HTML page of runs: curves, samples, audio, evaluations, provenance"),
    "demo": ("mmgen.commands.demo", "serve a local web page that samples a trained run (prompt, class or upload)"),
    "record": ("mmgen.commands.record",
               "train a preset over several seeds and record its val and test numbers (mean ± sd)"),
    "bench": ("mmgen.commands.bench", "run the kernel and training benchmarks, print a table and write JSON"),
    "kernels": ("mmgen.commands.kernels", "native extensions of mmgen and its plugins"),
    "env": ("mmgen.commands.env", "versions, machine, native build, CUDA and plugins, for a bug report"),
}

# mmgen's own errors of a bad run, config, checkpoint or build: (module, class), looked up only when
# the module is already imported (an error of a module never imported cannot have been raised)
MMGEN_ERRORS = (("mmgen.plugins", "PluginError"), ("mmgen.train.checkpoint", "CheckpointError"),
                ("mmgen.train.trainer", "TrainingDiverged"), ("mmgen.kernels.build", "BuildConfigError"))
DEBUG_ENV = "MMGEN_DEBUG"

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


class UsageError(Exception):
    """A command line whose options do not go together: exit 2 with the command's usage, as argparse does."""


def user_errors() -> tuple[type[BaseException], ...]:
    """The exceptions :func:`main` reports as one line (see ``MMGEN_ERRORS``)."""
    found = tuple(getattr(sys.modules[module], name) for module, name in MMGEN_ERRORS if module in sys.modules)
    return (ValueError, TypeError, LookupError, OSError, *found)


def error_message(exc: BaseException) -> str:
    """The exception's message on one line (a KeyError's without the quotes it adds)."""
    text = str(exc)
    if isinstance(exc, KeyError) and len(exc.args) == 1:
        text = str(exc.args[0]) if " " in str(exc.args[0]) else f"missing key {exc}"
    return "; ".join(line.strip() for line in text.splitlines() if line.strip()) or type(exc).__name__


def version() -> str:
    import mmgen
    return (f"mmgen {mmgen.__version__} from {os.path.dirname(os.path.abspath(mmgen.__file__))} "
            f"(Python {sys.version.split()[0]})")


class _VersionAction(argparse.Action):
    """``--version``, computed only when asked for."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        print(version())
        parser.exit()


class _Commands(argparse._SubParsersAction):
    """The subcommands: all listed (name and help) at once, each one's module imported and its
    parser built only when the command line names it (argparse's own choice of a subparser)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._modules: dict[str, str] = {}  # commands whose parser is not built yet

    def add_command(self, name: str, module: str, help: str) -> None:
        super().add_parser(name, help=help)  # a placeholder until the module adds the real one
        self._modules[name] = module

    def load(self, name: str) -> argparse.ArgumentParser:
        """The command's parser, built by its module's ``add_parser`` on first use."""
        module = self._modules.pop(name, None)
        if module is not None:
            del self._name_parser_map[name]
            importlib.import_module(module).add_parser(self)
            if name not in self._name_parser_map:
                raise RuntimeError(f"{module}.add_parser added no parser named {name!r}")
        return self._name_parser_map[name]

    def __call__(self, parser, namespace, values, option_string=None):
        if values and values[0] in self._modules:
            self.load(values[0])
        super().__call__(parser, namespace, values, option_string)


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mmgen", description="Multimodal deep generative models.")
    parser.add_argument("--version", action=_VersionAction, help="print mmgen's version and where it is imported from")
    parser.add_argument("--threads", type=thread_count, default=None, metavar="N", help=THREADS_HELP)
    parser.add_argument("--traceback", action="store_true",
                        help=f"on an error, show the full stack instead of one line (also: {DEBUG_ENV}=1)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, action=_Commands)
    for name, (module, help) in COMMANDS.items():
        subparsers.add_command(name, module, help)
    parser.commands = subparsers  # .load(name): the command's parser (for UsageError)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns its exit code (argparse's usage errors and ``--help`` raise
    SystemExit themselves)."""
    parser = make_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # the command line, for the records
    debug = args.traceback or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    try:
        if args.threads is not None:
            set_threads(args.threads)
        return int(args.func(args) or 0)
    except UsageError as exc:
        if debug:
            raise
        parser.commands.load(args.command).error(error_message(exc))  # usage, then the message; exit 2
    except KeyboardInterrupt:
        if debug:
            raise
        print("mmgen: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (mmgen presets list | head): nothing to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 1
    except Exception as exc:
        if debug or not isinstance(exc, user_errors()):
            raise
        command = " ".join(filter(None, (args.command, getattr(args, "action", None))))
        print(f"mmgen: error: {command}: {error_message(exc)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
