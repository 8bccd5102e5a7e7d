"""Build script for mmgen's native extension ``mmgen._C``.

The build logic lives in ``mmgen/kernels/build.py`` (shared with plugins that ship their own ops);
it is loaded here by file path, so building needs nothing of mmgen but that file. Environment
switches (all optional; see that module): MMGEN_CUDA=0, FORCE_CUDA=1, TORCH_CUDA_ARCH_LIST
(default "8.0;9.0+PTX"), MAX_JOBS (default min(2, cores)), DEBUG=1, CUDA_HOME.
"""
import importlib.util
import os
import sys

from setuptools import setup

ROOT = os.path.dirname(os.path.abspath(__file__))


def _load_build_helper():
    spec = importlib.util.spec_from_file_location("mmgen_kernels_build",
                                                  os.path.join(ROOT, "mmgen", "kernels", "build.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


build = _load_build_helper()
setup(ext_modules=[build.native_extension("mmgen._C", root=ROOT,
                                          cpu_sources=["csrc/mmgen.cpp", "csrc/ops/autograd.cpp", "csrc/ops/cpu/*.cpp"],
                                          cuda_sources=["csrc/ops/cuda/*.cu"])],
      cmdclass=build.build_ext_cmdclass())
