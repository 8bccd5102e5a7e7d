"""Just-in-time builds for quick experiments: ``load(name, sources)``.

The library is built with the flags, switches and build record of ``mmgen.kernels.build`` into
``cache_dir()/<name>-<key>``, where the key hashes the sources (paths and contents), the torch and
CUDA versions, the archs and the flags; a second call with the same inputs reuses the build.

Sources may be written either way PyTorch documents custom ops:

* op-only: ``TORCH_LIBRARY`` / ``TORCH_LIBRARY_IMPL`` / ``TORCH_LIBRARY_FRAGMENT`` blocks and no
  Python module (PyTorch's custom-op tutorial, extension-cpp). The library is loaded with
  ``torch.ops.load_library`` and ``load`` returns a ``JitLibrary``.
* with a Python module (``PYBIND11_MODULE``): the module is imported and returned, as before.

Either way the JIT adds a generated source of its own, ``<build dir>/generated/mmgen_build_record.cpp``,
exporting the build record as the C function ``mmgen_build_info_json`` (the author writes no
boilerplate); ``JitLibrary.build_info()`` and, on modules, ``build_info_json()`` read it. Sources
that register nothing are refused before compiling, with a message naming the files.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import warnings

from mmgen.kernels.build import (build_record, check_registrations, compile_flags, settings, torch_cpp_extension,
                                 write_build_info_header, write_build_record_source)

__all__ = ["CACHE_ENV", "JitLibrary", "cache_dir", "build_key", "load"]

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


class JitLibrary:
    """An op-only library built and loaded by ``load`` (its operators are registered).

    Attributes: ``name``, ``__file__`` (the library file), ``namespaces`` (the ``TORCH_LIBRARY``
    namespaces its sources name). ``ops`` is ``torch.ops.<namespace>`` of the first namespace.
    """

    def __init__(self, name: str, file: str, namespaces: tuple):
        self.name, self.__file__, self.namespaces = name, file, tuple(namespaces)

    def build_info(self) -> dict:
        """The build record (torch version, CUDA, archs, debug, module name), read from the library."""
        from mmgen.kernels.runtime import library_build_record
        return library_build_record(self.__file__)

    def build_info_json(self) -> str:
        """The record as JSON, as a Python module built by mmgen returns it."""
        return json.dumps(self.build_info())

    @property
    def ops(self):
        import torch
        if not self.namespaces:
            raise AttributeError(f"{self.name}: its sources register no TORCH_LIBRARY namespace")
        return getattr(torch.ops, self.namespaces[0])

    def __repr__(self) -> str:
        return f"JitLibrary({self.name!r}, {self.__file__!r}, namespaces={self.namespaces})"


@contextlib.contextmanager
def _build_lock(build_dir: str):
    """Hold an OS lock on ``build_dir`` (released by the OS when the process dies) around torch's
    build. torch's own lock is a plain file that a killed build leaves behind, after which every
    later build of that directory waits for it forever; under this lock no other mmgen build is
    running, so such a file is stale and is removed (with a warning)."""
    os.makedirs(build_dir, exist_ok=True)
    with open(os.path.join(build_dir, ".mmgen-build.lock"), "a") as handle:
        try:
            import fcntl
        except ImportError:  # no flock (Windows): torch's lock alone
            fcntl = None
        if fcntl is not None:
            fcntl.flock(handle, fcntl.LOCK_EX)
            stale = os.path.join(build_dir, "lock")
            if os.path.exists(stale):
                warnings.warn(f"mmgen.kernels.load: removing the lock file {stale} that a killed build left "
                              "(no build holds this directory)", RuntimeWarning, stacklevel=3)
                os.remove(stale)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(handle, fcntl.LOCK_UN)


def load(name: str, sources, *, extra_cflags=(), extra_cuda_cflags=(), include_dirs=(), verbose: bool = False):
    """Build (or reuse) and load the library ``name`` from ``sources`` (a path or a list).

    ``.cu`` sources are compiled when CUDA is on (the same decision as a setup.py build: toolkit
    found and torch with CUDA, ``MMGEN_CUDA=0`` to skip, ``FORCE_CUDA=1`` to insist) and left out
    otherwise. The sources' folders are on the include path, and ``"generated/build_info.h"``
    defines ``MMGEN_BUILD_INFO_JSON`` as for setup.py builds.

    Returns:
        sources with a ``PYBIND11_MODULE``: the imported module (with ``build_info_json()``);
        op-only sources: a ``JitLibrary`` (loaded with ``torch.ops.load_library``). Either way the
        ``TORCH_LIBRARY`` operators are registered (``torch.ops.<namespace>.<op>``).

    Raises:
        ValueError: ``name`` is not an identifier, or the sources register nothing (no
            ``TORCH_LIBRARY``/``TORCH_LIBRARY_IMPL``/``TORCH_LIBRARY_FRAGMENT``, no ``PYBIND11_MODULE``).
        FileNotFoundError: a source does not exist.
    """
    import torch
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"mmgen.kernels.load: name must be a Python identifier (the module name), got {name!r}")
    sources = [sources] if isinstance(sources, (str, os.PathLike)) else list(sources)
    sources = [os.fspath(s) for s in sources]
    missing = [s for s in sources if not os.path.isfile(s)]
    if not sources or missing:
        raise FileNotFoundError(f"mmgen.kernels.load: sources not found: {missing or 'none given'}")
    config = settings()
    sources = [os.path.abspath(s) for s in sources if config.use_cuda or not s.endswith(CUDA_SUFFIXES)]
    if not sources:
        raise ValueError(f"mmgen.kernels.load: only CUDA sources given but CUDA is off ({config.reason})")
    found = check_registrations(sources, "mmgen.kernels.load", error=ValueError)
    cxx, nvcc = compile_flags(config)
    cxx, nvcc = cxx + list(extra_cflags), nvcc + list(extra_cuda_cflags)
    if config.use_cuda:
        cxx.append("-DMMGEN_WITH_CUDA=1")
        nvcc.append("-DMMGEN_WITH_CUDA=1")
    includes = sorted({os.path.dirname(s) for s in sources}) + [os.path.abspath(d) for d in include_dirs]
    key = build_key(name, sources, [torch.__version__, str(torch.version.cuda), config.archs,
                                    " ".join(cxx), " ".join(nvcc), " ".join(includes)])
    build_dir = os.path.join(cache_dir(), f"{name}-{key}")
    generated = os.path.join(build_dir, "generated")
    write_build_info_header(os.path.join(generated, "build_info.h"), build_record(name, config))
    record_source = write_build_record_source(generated)
    with _build_lock(build_dir):
        loaded = torch_cpp_extension().load(
            name, sources + [record_source], extra_cflags=cxx, extra_cuda_cflags=nvcc or None,
            extra_ldflags=["-fopenmp"], extra_include_paths=[build_dir, *includes], build_directory=build_dir,
            with_cuda=config.use_cuda, verbose=verbose, is_python_module=found.python_module)
    if not found.python_module:
        return JitLibrary(name, loaded, found.namespaces)
    if not hasattr(loaded, "build_info_json"):  # a module that does not return the record itself
        from mmgen.kernels.runtime import library_build_record
        record = json.dumps(library_build_record(loaded.__file__))
        loaded.build_info_json = lambda: record
    return loaded
