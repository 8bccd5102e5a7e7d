"""``mmgen env``: what a bug report needs to say about this installation."""
from __future__ import annotations

import json
import os
import platform
import sys

# the environment variables that change what mmgen does (besides the MMGEN_* ones)
ENVIRONMENT = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "CUDA_VISIBLE_DEVICES", "TORCH_CUDA_ARCH_LIST")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("env")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=run)


def collect() -> dict:
    """mmgen's machine description (:func:`mmgen.provenance.machine`: versions, CPU, threads, native
    build) with the platform, the CUDA devices torch sees, the checkout, the plugins, the fallbacks
    of mmgen's and each plugin's ops (what ``backend="auto"`` runs on CPU and CUDA inputs, and why:
    :func:`mmgen.kernels.runtime.fallbacks`) and the environment variables that matter."""
    import torch
    import mmgen
    from mmgen import _extension, provenance
    from mmgen.commands.plugins import as_dict, load_quietly
    from mmgen.kernels import runtime
    info = provenance.machine("cpu")
    del info["device"]
    cuda = torch.cuda.is_available()
    found = [as_dict(p) for p in load_quietly()]  # loads the plugins' native libraries too
    return {**info, "mmgen_path": os.path.dirname(os.path.abspath(mmgen.__file__)),
            "python_executable": sys.executable, "platform": platform.platform(),
            "interop_threads": torch.get_num_interop_threads(),
            "cuda": {"available": cuda, "torch_cuda": torch.version.cuda,
                     "devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
                     if cuda else []},
            **provenance.git_state(),
            "plugins": [p for p in found if p["status"] == "ok"],
            "plugin_failures": [p for p in found if p["status"] != "ok"],
            "fallbacks": [f for f in (_extension.fallbacks(), *(lib.fallbacks() for lib in runtime.libraries()))
                          if f["reason"]],
            "environment": {k: v for k, v in sorted(os.environ.items()) if k.startswith("MMGEN_") or k in ENVIRONMENT}}


def run(args) -> int:
    info = collect()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    build, cuda = info["build"], info["cuda"]
    commit = info["git_commit"]
    where = f", git {commit[:12]}{' (modified)' if info['git_dirty'] else ''}" if commit else ""
    native = (f"{build.get('module', 'mmgen._C')} built for torch {build.get('torch_version')}"
              + (f", CUDA {build.get('cuda_version')} archs {build.get('arch_list')}" if build.get("cuda") else ", CPU only")
              + (", debug" if build.get("debug") else "")
              + (f", {build['compiler']}" if build.get("compiler") else "")
              + (f"; CPU path {build['cpu_isa']} (MMGEN_CPU_ISA)" if build.get("cpu_isa") else "") if build.get("native")
              else "not loaded: the pure-PyTorch reference ops are used (mmgen kernels info says why)")
    devices = ", ".join(cuda["devices"])
    lines = [
        ("mmgen", f"{info['mmgen']} ({info['mmgen_path']}{where})"),
        ("python", f"{info['python']} ({info['python_executable']})"),
        ("platform", info["platform"]),
        ("torch", f"{info['torch']} (CUDA {cuda['torch_cuda'] or '-'})"),
        ("cpu", f"{info['cpu']}, {info['cores']} cores; torch threads {info['threads']}, "
                f"inter-op {info['interop_threads']}"),
        ("native", native),
        ("cuda", f"available: {len(cuda['devices'])} device(s): {devices}" if cuda["available"]
         else "not available (torch.cuda.is_available() is False)"),
        ("plugins", ", ".join(f"{p['plugin']} {p['version'] or '-'}" for p in info["plugins"]) or "none"),
        *([("failed", p["error"]) for p in info["plugin_failures"]] or [("failed", "none")]),
        *([("fallback", f"{f['project']}: CPU inputs {f['cpu']}, CUDA inputs {f['cuda']}, because "
                        f"{f['reason']}; fix: {f['fix']}")
           for f in info["fallbacks"]] or [("fallback", "none: every native library has CPU and CUDA kernels")]),
        ("env", ", ".join(f"{k}={v}" for k, v in info["environment"].items()) or "-"),
    ]
    for name, value in lines:
        print(f"{name:9s} {value}")
    return 0
