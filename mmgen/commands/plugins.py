"""``mmgen plugins list`` and ``mmgen plugins doctor``."""
from __future__ import annotations

import json
import warnings

from mmgen import plugins


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("plugins")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="plugins with their version, status and components")
    listing.add_argument("--json", action="store_true", help="print JSON instead of text")
    listing.set_defaults(func=run_list)
    doctor = actions.add_parser("doctor", help="explain why plugins failed; exit 1 if any did")
    doctor.set_defaults(func=run_doctor)


def load_quietly() -> list[plugins.PluginInfo]:
    with warnings.catch_warnings():  # the failures are printed by the commands themselves
        warnings.simplefilter("ignore", plugins.PluginLoadWarning)
        return plugins.list_plugins()


def as_dict(info: plugins.PluginInfo) -> dict:
    components: dict[str, list[str]] = {}
    for c in info.components:
        components.setdefault(c.kind, []).append(c.name)
    return {"plugin": info.name, "version": info.version, "distribution": info.distribution,
            "origin": info.origin, "status": info.status, "components": components,
            "error": str(info.failure) if info.failure else None}


def run_list(args) -> int:
    found = load_quietly()
    if args.json:
        print(json.dumps([as_dict(info) for info in found], indent=2))
        return 0
    if not found:
        print("no plugins loaded" + _autoload_note())
    width = max([20, *(len(c.name) for info in found for c in info.components)])
    for info in found:
        if info.status == "ok":
            print(f"{info.name} {info.version or '-'}  ok")
            for c in info.components:
                description = c.meta.get("description", "")
                print(f"    {c.kind:<14} {c.name:<{width}} {description}".rstrip())
        else:
            print(f"{info.name} -  failed: {info.failure.stage}: {info.failure.error} "
                  "(run `mmgen plugins doctor`)")
    return 0


def _autoload_note() -> str:
    if plugins.autoload_disabled():
        return f" ({plugins.DISABLE_AUTOLOAD_ENV} is set)"
    return ""


def run_doctor(args) -> int:
    found = load_quietly()
    note = _autoload_note()
    print("entry-point autoload: " + ("off" + note if note else "on"))
    allowed = plugins.allow_list()
    if allowed is not None:
        left_out = ", ".join(plugins.skipped()) or "none"
        print(f"{plugins.ALLOW_LIST_ENV}={','.join(sorted(allowed))} (left out: {left_out})")
    failed = [info for info in found if info.status != "ok"]
    for info in found:
        if info.status == "ok":
            where = f"{info.distribution} {info.version}, " if info.distribution else ""
            count = len(info.components)
            print(f"ok      {info.name} ({where}{info.origin}): {count} component{'s' * (count != 1)}")
        else:
            failure = info.failure
            print(f"FAILED  {info.name} ({failure.origin}): {failure.stage}")
            print(f"        {failure.error}")
            if failure.hint:
                print(f"        hint: {failure.hint}")
    if failed:
        print(f"{len(failed)} of {len(found)} plugins failed")
        return 1
    print(f"all {len(found)} plugins loaded")
    return 0
