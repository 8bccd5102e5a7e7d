"""``mmgen presets list`` and ``mmgen presets show NAME``."""
from __future__ import annotations

import json

from mmgen import presets


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("presets")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="each preset's name and description, one per line")
    listing.set_defaults(func=run_list)
    show = actions.add_parser("show", help="a preset's run config as JSON (a file that `mmgen train FILE` "
                                           "accepts; JSON is YAML too)")
    show.add_argument("name", metavar="NAME", help="a preset name (mmgen presets list)")
    show.set_defaults(func=run_show)


def print_presets() -> None:
    """One line per preset: its name and description (also ``mmgen train --list-presets``)."""
    width = max(len(name) for name in presets.PRESETS)
    for name, config in sorted(presets.PRESETS.items()):
        print(f"{name:{width}s}  {config.get('description', '')}".rstrip())


def run_list(args) -> int:
    print_presets()
    return 0


def run_show(args) -> int:
    print(json.dumps(presets.get(args.name), indent=2))
    return 0
