"""Kernel SDK: build, load and dispatch C++/CUDA ops the way mmgen does for its own.

* ``mmgen.kernels.build`` — setup-time helper for a plugin's ``setup.py`` (``native_extension``,
  ``build_ext_cmdclass``); mmgen's own ``setup.py`` uses it too.
* ``mmgen.kernels.load(name, sources)`` — JIT build into a cache keyed by sources, torch and CUDA.
* ``NativeLibrary`` — load a plugin's extension, the ``backend=`` switch, guarded ``register_fake``
  and ``register_autograd``; ``mmgen.kernels.checks`` — input checks with clear messages.
* ``mmgen.testing.check_op`` — the standard op checks; ``mmgen kernels info|build`` — the CLI.

See docs/kernels.md for a plugin op written from zero.
"""
from mmgen.kernels.build import BuildConfigError, build_ext_cmdclass, native_extension, read_build_record
from mmgen.kernels.jit import cache_dir, load
from mmgen.kernels.runtime import BACKENDS, NativeFallbackWarning, NativeLibrary, native_required

__all__ = ["BACKENDS", "BuildConfigError", "NativeFallbackWarning", "NativeLibrary", "build_ext_cmdclass",
           "cache_dir", "load", "native_extension", "native_required", "read_build_record"]
