"""``mmgen kernels info`` and ``mmgen kernels build PATH``."""
from __future__ import annotations

import glob
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings

LIBRARY_SUFFIXES = (".so", ".pyd")


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("kernels")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    info = actions.add_parser("info", help="what mmgen and each plugin built (torch, CUDA, archs) and "
                                           "whether it loads; exit 1 if one does not")
    info.add_argument("--json", action="store_true", help="print JSON instead of text")
    info.set_defaults(func=run_info)
    build = actions.add_parser("build", help="build a plugin's extension in place, with diagnostics")
    build.add_argument("path", help="folder of the plugin (holding its setup.py)")
    build.add_argument("--install", action="store_true",
                       help="pip install --no-build-isolation -e PATH instead of setup.py build_ext --inplace")
    build.add_argument("--verbose", action="store_true", help="echo the compiler output")
    build.set_defaults(func=run_build)


def _ops(namespace: str) -> list[str]:
    prefix = namespace + "::"
    return sorted(n[len(prefix):] for n in torch_op_names() if n.startswith(prefix))


def torch_op_names() -> list[str]:
    import torch
    return list(torch._C._dispatch_get_all_op_names())


def _library_file(module: str) -> str | None:
    loaded = sys.modules.get(module)
    if loaded is not None and getattr(loaded, "__file__", None):
        return loaded.__file__
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    return spec.origin if spec and spec.origin and spec.origin.endswith(LIBRARY_SUFFIXES) else None


def _entry(owner: str, module: str, record: dict | None, error, file: str | None) -> dict:
    from mmgen.kernels.build import read_build_record
    if record is None and file and os.path.exists(file):
        record = read_build_record(file)  # what it was built for, though it did not load
    namespace = module.split(".")[0]
    return {"owner": owner, "module": module, "file": file, "loads": error is None,
            "error": None if error is None else f"{type(error).__name__}: {error}",
            "torch_version": record and record.get("torch_version"), "cuda": bool(record and record.get("cuda")),
            "cuda_version": record and record.get("cuda_version"), "arch_list": record and record.get("arch_list"),
            "debug": bool(record and record.get("debug")),
            "ops": _ops(namespace) if error is None else []}


def _package_libraries(package: str) -> list[str]:
    """Compiled libraries inside an installed (maybe unimportable) package, found without importing it."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return []
    found = []
    for folder in (spec.submodule_search_locations or []) if spec else []:
        for suffix in LIBRARY_SUFFIXES:
            found += glob.glob(os.path.join(folder, "**", "*" + suffix), recursive=True)
    return sorted(found)


def collect() -> dict:
    """mmgen's library, every plugin library, and the JIT cache."""
    from mmgen import _extension, plugins
    from mmgen.kernels import jit, runtime
    from mmgen.kernels.build import read_build_record
    entries = [_entry("mmgen", _extension.MODULE, _extension._INFO, _extension.load_error(),
                      _library_file(_extension.MODULE))]
    with warnings.catch_warnings():  # failures are reported below
        warnings.simplefilter("ignore")
        found = plugins.list_plugins()
    seen = set()
    for lib in runtime.libraries():
        owner = next((p for p in found if p.status == "ok" and p.origin.split("=")[-1].strip().split(".")[0]
                      == lib.namespace), None)
        label = f"{owner.name} ({owner.distribution} {owner.version})" if owner and owner.distribution else lib.project
        entries.append(_entry(label, lib.module, lib.record, lib.error, _library_file(lib.module)))
        seen.add(lib.namespace)
    for p in found:  # a plugin that failed to import: show what its package holds
        package = p.origin.split("=")[-1].strip().split(":")[0].split(".")[0]
        if p.status == "ok" or package in seen:
            continue
        for file in _package_libraries(package):
            record = read_build_record(file)
            if record:
                error = RuntimeError(f"plugin {p.name} failed to load: {p.failure.error}")
                entries.append(_entry(p.name, record.get("module", package), None, error, file))
    cache = jit.cache_dir()
    builds = sorted(glob.glob(os.path.join(cache, "*", "*" + LIBRARY_SUFFIXES[0])))
    return {"libraries": entries, "jit_cache": {"dir": cache, "builds": [os.path.relpath(b, cache) for b in builds]}}


def run_info(args) -> int:
    import torch
    found = collect()
    failed = [e for e in found["libraries"] if not e["loads"]]
    if args.json:
        print(json.dumps(found, indent=2))
        return 1 if failed else 0
    print(f"torch {torch.__version__} (CUDA {torch.version.cuda or '-'}, GPU "
          f"{'available' if torch.cuda.is_available() else 'not available'})")
    for e in found["libraries"]:
        status = "loads" if e["loads"] else "DOES NOT LOAD"
        built = (f"torch {e['torch_version']}, CUDA {e['cuda_version'] if e['cuda'] else 'off'}, "
                 f"archs {e['arch_list'] or '-'}, debug {'on' if e['debug'] else 'off'}"
                 if e["torch_version"] else "no build record")
        print(f"{e['owner']}: {e['module']} {status}; built for {built}")
        print(f"    file: {e['file'] or 'not built'}")
        if e["ops"]:
            print(f"    ops: torch.ops.{e['module'].split('.')[0]}: {', '.join(e['ops'])}")
        if e["error"]:
            print(f"    why: {e['error']}")
    jit = found["jit_cache"]
    print(f"JIT cache {jit['dir']}: {len(jit['builds'])} build{'s' * (len(jit['builds']) != 1)}")
    return 1 if failed else 0


def build_command(path: str, install: bool) -> list[str]:
    if install:
        return [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "--no-build-isolation",
                "-v", "-e", path]
    return [sys.executable, "setup.py", "build_ext", "--inplace"]


def run_build(args) -> int:
    from mmgen.kernels.build import read_build_record, settings
    from mmgen.kernels.diagnose import build_failure_summary
    root = os.path.abspath(args.path)
    if not os.path.isfile(os.path.join(root, "setup.py")):
        raise FileNotFoundError(f"{args.path} has no setup.py (give the folder of the plugin, the one holding "
                                "setup.py that calls mmgen.kernels.build.native_extension)")
    config = settings()  # a BuildConfigError (toolkit and torch do not match) stops here, before compiling
    print(f"building {args.path}: CUDA kernels {'ON' if config.use_cuda else 'OFF'} ({config.reason}); "
          f"archs {config.archs or '-'}; MAX_JOBS={config.max_jobs}; debug {'on' if config.debug else 'off'}",
          flush=True)
    command = build_command(root, args.install)
    started = time.time()
    log = tempfile.NamedTemporaryFile("w", prefix="mmgen-kernels-build-", suffix=".log", delete=False)
    with log:
        process = subprocess.Popen(command, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        lines = []
        for line in process.stdout:
            lines.append(line)
            log.write(line)
            if args.verbose:
                print(line, end="", flush=True)
        code = process.wait()
    elapsed = time.time() - started
    if code != 0:
        print(f"build of {args.path} FAILED after {elapsed:.0f} s (exit {code})")
        print(build_failure_summary("".join(lines), root))
        print(f"full log: {log.name}")
        return 1
    built = [f for s in LIBRARY_SUFFIXES for f in glob.glob(os.path.join(root, "**", "*" + s), recursive=True)
             if os.path.getmtime(f) >= started - 1 and os.sep + "build" + os.sep not in f[len(root):]]
    print(f"built {args.path} in {elapsed:.0f} s")
    for file in sorted(built):
        record = read_build_record(file) or {}
        print(f"    {os.path.relpath(file, root)}: {record.get('module', '?')} for torch {record.get('torch_version')}, "
              f"CUDA {record.get('cuda_version') or 'off'}, archs {record.get('arch_list') or '-'}")
    print("check it with `mmgen kernels info` (the plugin must be installed: pip install --no-build-isolation -e PATH)")
    os.unlink(log.name)
    return 0
