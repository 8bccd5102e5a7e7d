"""Just-in-time builds for quick experiments: ``load(name, sources)``.

The library is built with the flags, switches and build record of ``mmgen.kernels.build`` into
``cache_dir()/<name>-<key>``, where the key hashes the sources (paths and contents), the torch and
CUDA versions, the archs and the flags; a second call with the same inputs reuses the build.
"""
from __future__ import annotations

import hashlib
import os

from mmgen.kernels.build import build_record, compile_flags, settings, torch_cpp_extension, write_build_info_header

__all__ = ["CACHE_ENV", "cache_dir", "build_key", "load"]

CACHE_ENV = "MMGEN_KERNELS_CACHE"
CUDA_SUFFIXES = (".cu",)


def cache_dir() -> str:
    """``$MMGEN_KERNELS_CACHE``, else ``~/.cache/mmgen/kernels``."""
    return os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "mmgen", "kernels")


def build_key(name: str, sources: list[str], parts: list[str]) -> str:
    """Hash of the name, each source's path and contents, and the other build inputs."""
    digest = hashlib.sha256(name.encode())
    for path in sources:
        digest.update(path.encode())
        with open(path, "rb") as f:
            digest.update(hashlib.sha256(f.read()).digest())
    for part in parts:
        digest.update(b"\0" + part.encode())
    return digest.hexdigest()[:16]


def load(name: str, sources, *, extra_cflags=(), extra_cuda_cflags=(), include_dirs=(), verbose: bool = False):
    """Build (or reuse) and import the extension module ``name`` from ``sources``.

    ``.cu`` sources are compiled when CUDA is on (the same decision as a setup.py build: toolkit
    found and torch with CUDA, ``MMGEN_CUDA=0`` to skip, ``FORCE_CUDA=1`` to insist) and left out
    otherwise. The sources' folders are on the include path, and ``"generated/build_info.h"``
    defines ``MMGEN_BUILD_INFO_JSON`` as for setup.py builds.

    Returns:
        the imported module (its ``TORCH_LIBRARY`` operators are registered).
    """
    import torch
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"mmgen.kernels.load: name must be a Python identifier (the module name), got {name!r}")
    sources = [sources] if isinstance(sources, str) else list(sources)
    missing = [s for s in sources if not os.path.isfile(s)]
    if not sources or missing:
        raise FileNotFoundError(f"mmgen.kernels.load: sources not found: {missing or 'none given'}")
    config = settings()
    sources = [os.path.abspath(s) for s in sources if config.use_cuda or not s.endswith(CUDA_SUFFIXES)]
    if not sources:
        raise ValueError(f"mmgen.kernels.load: only CUDA sources given but CUDA is off ({config.reason})")
    cxx, nvcc = compile_flags(config)
    cxx, nvcc = cxx + list(extra_cflags), nvcc + list(extra_cuda_cflags)
    if config.use_cuda:
        cxx.append("-DMMGEN_WITH_CUDA=1")
        nvcc.append("-DMMGEN_WITH_CUDA=1")
    includes = sorted({os.path.dirname(s) for s in sources}) + [os.path.abspath(d) for d in include_dirs]
    key = build_key(name, sources, [torch.__version__, str(torch.version.cuda), config.archs,
                                    " ".join(cxx), " ".join(nvcc), " ".join(includes)])
    build_dir = os.path.join(cache_dir(), f"{name}-{key}")
    os.makedirs(build_dir, exist_ok=True)
    write_build_info_header(os.path.join(build_dir, "generated", "build_info.h"), build_record(name, config))
    return torch_cpp_extension().load(name, sources, extra_cflags=cxx, extra_cuda_cflags=nvcc or None,
                                 extra_ldflags=["-fopenmp"], extra_include_paths=[build_dir, *includes],
                                 build_directory=build_dir, with_cuda=config.use_cuda, verbose=verbose)
