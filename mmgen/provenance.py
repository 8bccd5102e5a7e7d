"""Where a recorded number comes from: code version, machine, threads, command line.

Every file under ``benchmarks/results/`` carries :func:`record` (the benchmarks through
``benchmarks/common.py``, quality runs through ``mmgen record``), so a number can be traced to the
commit, build, machine and command that produced it.
"""
from __future__ import annotations

import os
import platform
import subprocess
import sys
import time

import torch

__all__ = ["checkout_root", "cpu_name", "git_state", "machine", "record"]


def checkout_root() -> str:
    """The source checkout mmgen is imported from (editable installs): the folder above ``mmgen/``."""
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# environment variables that choose CPU code paths (mmgen's, oneDNN's, MKL's) or threads: a record
# names those that were set, e.g. an AVX2 machine emulated on an AVX-512 one
PATH_VARIABLES = ("MMGEN_CPU_ISA", "ATEN_CPU_CAPABILITY", "MMGEN_MASKED_CONV_PATH", "MMGEN_MASKED_CONV_TILE_BYTES", "ONEDNN_MAX_CPU_ISA",
                  "DNNL_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS", "MKL_DEBUG_CPU_TYPE", "OMP_NUM_THREADS",
                  "MKL_NUM_THREADS")


def machine(device: str = "cpu") -> dict:
    """CPU model, cores, torch threads, versions, the native build record, ATen's CPU capability, the code-path variables
    that are set (``env``, when any) and, on CUDA (when a GPU is there to ask), the GPU."""
    import mmgen
    info = {"cpu": cpu_name(), "cores": os.cpu_count(), "threads": torch.get_num_threads(),
            "python": platform.python_version(), "torch": torch.__version__,
            "mmgen": mmgen.__version__, "build": mmgen.ops.build_info(), "device": device,
            # the vector width of PyTorch's own CPU kernels (the eager baselines'): ATEN_CPU_CAPABILITY caps it
            "aten_cpu_capability": torch.backends.cpu.get_cpu_capability()}
    env = {name: os.environ[name] for name in PATH_VARIABLES if name in os.environ}
    if env:
        info["env"] = env
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
        info["cuda_runtime"] = torch.version.cuda
    return info


def git_state(root: str | None = None) -> dict:
    """The commit of the checkout, and whether its tracked files differ from it (result files under
    ``benchmarks/results/`` do not count: a benchmark run after another in the same checkout would
    otherwise call the code dirty). A copy of a commit
    (``git archive``; scripts/gpu_check.sh on another machine) names it in ``MMGEN_GIT_COMMIT``, which
    then wins over any ``.git`` found above the copy (whose HEAD is not what was copied)."""
    if os.environ.get("MMGEN_GIT_COMMIT"):
        return {"git_commit": os.environ["MMGEN_GIT_COMMIT"], "git_dirty": None}
    root = root or checkout_root()

    def git(*args):
        try:
            return subprocess.run(["git", "-C", root, *args], capture_output=True, text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    commit = git("rev-parse", "HEAD")
    return {"git_commit": commit or None,
            "git_dirty": bool(git("status", "--porcelain", "--untracked-files=no", "--", ".",
                                                     ":(exclude)benchmarks/results")) if commit else None}


def record(device: str = "cpu", command: list[str] | None = None) -> dict:
    """The provenance block of a result file: date, commit, command line (default: this Python
    and ``sys.argv``), load average, machine."""
    command = [os.path.basename(sys.executable), *sys.argv] if command is None else command
    return {"date": time.strftime("%Y-%m-%d"), **git_state(), "command": " ".join(command),
            "load_average": [round(v, 2) for v in os.getloadavg()], "machine": machine(device)}
