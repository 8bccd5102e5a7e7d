"""Build script of the mmgen-gumbel plugin's native extension ``mmgen_gumbel._C``.

mmgen.kernels.build gives it mmgen's own conventions: CPU sources always, CUDA sources when the
toolkit and a CUDA torch are there (FORCE_CUDA=1 insists, MMGEN_CUDA=0 skips), the same arch list,
MAX_JOBS bound, DEBUG=1 switch and embedded build record. Install mmgen first, then
``pip install --no-build-isolation .`` (or ``mmgen kernels build .`` to build in place).
"""
import os

from setuptools import setup

from mmgen.kernels.build import build_ext_cmdclass, native_extension

ROOT = os.path.dirname(os.path.abspath(__file__))

setup(ext_modules=[native_extension("mmgen_gumbel._C", root=ROOT,
                                    cpu_sources=["csrc/gumbel.cpp", "csrc/cpu/*.cpp"],
                                    cuda_sources=["csrc/cuda/*.cu"])],
      cmdclass=build_ext_cmdclass())
