"""Build script for mmgen's native extension ``mmgen._C``.

Environment switches (all optional):
  MMGEN_CUDA=0            build CPU kernels only
  FORCE_CUDA=1            compile CUDA kernels even if torch reports no CUDA device support
  TORCH_CUDA_ARCH_LIST    CUDA architectures (default "8.0;9.0+PTX")
  MAX_JOBS                parallel compile jobs (default: min(2, cores); nvcc needs memory)
  DEBUG=1                 -O0 -g build
"""
import glob
import json
import os
import sys

from setuptools import setup

import torch

# nvcc may be on PATH through a link outside the toolkit (e.g. /usr/local/bin/nvcc), from which
# torch would guess the wrong CUDA_HOME; prefer the conventional toolkit folder when it exists.
if "CUDA_HOME" not in os.environ and "CUDA_PATH" not in os.environ and os.path.isdir("/usr/local/cuda/lib64"):
    os.environ["CUDA_HOME"] = "/usr/local/cuda"

from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension

ROOT = os.path.dirname(os.path.abspath(__file__))
DEFAULT_ARCHS = "8.0;9.0+PTX"


def _flag(name):
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def decide_cuda():
    """Return (use_cuda, reason)."""
    if os.environ.get("MMGEN_CUDA", "").strip() == "0":
        return False, "MMGEN_CUDA=0"
    if CUDA_HOME is None:
        return False, "no CUDA toolkit found (set CUDA_HOME)"
    if torch.version.cuda is None:
        return False, "torch %s was built without CUDA" % torch.__version__
    if _flag("FORCE_CUDA"):
        return True, "FORCE_CUDA=1 (toolkit at %s)" % CUDA_HOME
    return True, "torch has CUDA %s and the toolkit is at %s" % (torch.version.cuda, CUDA_HOME)


def cuda_library_headers():
    """Include dirs of the CUDA library headers (cuBLAS, cuSPARSE, ...) that torch's CUDA headers
    include. A minimal toolkit (nvcc + runtime) lacks them; torch's nvidia-* wheels ship them."""
    try:
        import nvidia
    except ImportError:
        return []
    found = []
    for root in nvidia.__path__:
        for inc in sorted(glob.glob(os.path.join(root, "*", "include"))):
            if os.path.exists(os.path.join(inc, "cusparse.h")) or os.path.exists(os.path.join(inc, "cublas_v2.h")):
                found.append(inc)
    return found


def write_build_info_header(info):
    """Record what this build was made for inside the library itself (read by build_info())."""
    path = os.path.join(ROOT, "csrc", "generated", "build_info.h")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    text = '#pragma once\n#define MMGEN_BUILD_INFO_JSON R"mmgen(%s)mmgen"\n' % json.dumps(info)
    old = open(path).read() if os.path.exists(path) else None
    if old != text:  # keep the timestamp when nothing changed, so ninja does not rebuild
        with open(path + ".tmp", "w") as f:
            f.write(text)
        os.replace(path + ".tmp", path)


def main():
    debug = _flag("DEBUG")
    use_cuda, reason = decide_cuda()
    os.environ.setdefault("MAX_JOBS", str(min(2, os.cpu_count() or 1)))
    archs = os.environ.setdefault("TORCH_CUDA_ARCH_LIST", DEFAULT_ARCHS) if use_cuda else ""

    sources = ["csrc/mmgen.cpp"] + sorted(glob.glob("csrc/ops/cpu/*.cpp"))
    opt = ["-O0", "-g"] if debug else ["-O3"]
    # -fopenmp: at::parallel_for is OpenMP-based in torch's CPU build; without it, loops run serially.
    cxx = opt + ["-std=c++17", "-fvisibility=hidden", "-fno-math-errno", "-fopenmp"]
    info = {
        "torch_version": torch.__version__,
        "cuda": use_cuda,
        "cuda_version": torch.version.cuda if use_cuda else None,
        "arch_list": archs or None,
        "debug": debug,
    }
    write_build_info_header(info)
    macros = []
    if use_cuda:
        sources += sorted(glob.glob("csrc/ops/cuda/*.cu"))
        macros.append(("MMGEN_WITH_CUDA", "1"))
        nvcc = opt + ["-std=c++17", "--expt-relaxed-constexpr", "-lineinfo"]
        for inc in cuda_library_headers():  # searched after the toolkit's own headers
            cxx += ["-isystem", inc]
            nvcc += ["-isystem", inc]
        ext = CUDAExtension("mmgen._C", sources, include_dirs=[os.path.join(ROOT, "csrc")],
                            define_macros=macros, extra_compile_args={"cxx": cxx, "nvcc": nvcc},
                            extra_link_args=["-fopenmp"])
    else:
        ext = CppExtension("mmgen._C", sources, include_dirs=[os.path.join(ROOT, "csrc")],
                           define_macros=macros, extra_compile_args={"cxx": cxx},
                           extra_link_args=["-fopenmp"])

    print("mmgen setup: CUDA kernels %s (%s); archs=%s; MAX_JOBS=%s; debug=%s; torch %s"
          % ("ON" if use_cuda else "OFF", reason, archs or "-", os.environ["MAX_JOBS"], debug,
             torch.__version__), file=sys.stderr, flush=True)

    setup(ext_modules=[ext], cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)})


main()
