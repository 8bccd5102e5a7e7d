"""Loading a compiled extension and choosing between its kernels and a pure-PyTorch reference.

mmgen's own ``mmgen._C`` goes through these helpers (``mmgen._extension``, ``mmgen.ops._dispatch``)
and a plugin's extension through ``NativeLibrary``, so both behave alike: a missing or broken build
is not an import error; on the CPU ``backend="auto"`` falls back to the reference with one warning
per op, naming the cause; a CUDA input without a CUDA kernel is an error that says how to rebuild
(never a silent slow path on the GPU: ``backend="reference"`` runs the reference on purpose);
``MMGEN_REQUIRE_NATIVE=1`` turns every fallback into an error naming the cause; and a library built
for another torch is refused. ``fallbacks`` says what each library falls back to, and why
(``mmgen env`` prints it).
"""
from __future__ import annotations

import ctypes
import importlib
import importlib.util
import json
import os
import warnings
from typing import Callable

import torch

__all__ = ["BACKENDS", "REQUIRE_NATIVE_ENV", "NativeFallbackWarning", "NativeLibrary", "choose_native",
           "cuda_missing_error", "describe_build", "fallback_message", "fallbacks", "libraries",
           "library_build_record", "load_native", "missing_native_error", "native_required"]

BACKENDS = ("auto", "native", "reference")
_LIBRARIES: list = []  # every NativeLibrary made in this process (``mmgen kernels info`` lists them)
REQUIRE_NATIVE_ENV = "MMGEN_REQUIRE_NATIVE"


class NativeFallbackWarning(UserWarning):
    """Emitted once per op when it runs its pure-PyTorch reference because no native kernel is built."""


def native_required() -> bool:
    """True when ``MMGEN_REQUIRE_NATIVE`` is set: falling back to a reference is an error."""
    return os.environ.get(REQUIRE_NATIVE_ENV, "").strip() in ("1", "true", "yes")


def library_build_record(path: str) -> dict | None:
    """The build record of a loaded (or loadable) library, from the C function
    ``mmgen_build_info_json`` that mmgen's builds add to every library (``mmgen.kernels.build``);
    None when the library has no such function (built without mmgen.kernels)."""
    from mmgen.kernels.build import RECORD_SYMBOL
    handle = ctypes.CDLL(path)  # the same handle when torch or Python already loaded this file
    try:
        function = getattr(handle, RECORD_SYMBOL)
    except AttributeError:
        return None
    function.restype, function.argtypes = ctypes.c_char_p, []
    return json.loads(function().decode())


def _module_file(module: str) -> str | None:
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    return spec.origin if spec is not None and spec.origin and os.path.isfile(spec.origin) else None


def _without_python_module(exc: ImportError) -> bool:
    """The import found a compiled library that defines no Python module (an op-only library)."""
    return "module export function" in str(exc)


def load_native(module: str, rebuild_hint: str) -> tuple[dict | None, BaseException | None]:
    """Load the extension ``module`` (which registers its operators) and read its build record.

    A library that defines a Python module is imported; one that only registers operators
    (``TORCH_LIBRARY`` / ``TORCH_LIBRARY_IMPL``, no ``PYBIND11_MODULE``) is loaded with
    ``torch.ops.load_library`` from the file the import system finds for ``module``. The record
    comes from the module's ``build_info_json()`` when it has one, else from the library's
    ``mmgen_build_info_json`` C function (``library_build_record``).

    Returns ``(record, None)`` when it loaded and was built for the installed torch, else
    ``(None, cause)``.
    """
    library = None
    try:
        library = importlib.import_module(module)
    except ImportError as exc:
        file = _module_file(module) if _without_python_module(exc) else None
        if file is None:
            return None, exc
        try:
            torch.ops.load_library(file)
        except (OSError, RuntimeError) as load_exc:  # an undefined symbol from a torch mismatch, ...
            return None, load_exc
    except OSError as exc:  # an undefined symbol from a torch mismatch
        return None, exc
    try:
        if library is not None and hasattr(library, "build_info_json"):
            record = json.loads(library.build_info_json())
        else:
            file = getattr(library, "__file__", None) or _module_file(module)
            record = library_build_record(file) if file else None
            if record is None:
                raise ValueError("no build_info_json() and no mmgen_build_info_json symbol")
    except (AttributeError, ValueError, OSError) as exc:
        return None, RuntimeError(f"{module} has no valid build record (build_info_json()): {exc}; "
                                  f"build it with mmgen.kernels ({rebuild_hint})")
    if record["torch_version"] != torch.__version__:
        return None, RuntimeError(
            f"{module} was built for torch {record['torch_version']} but torch {torch.__version__} "
            f"is installed; rebuild with {rebuild_hint}")
    return record, None


def missing_native_error(what: str, module: str, error: BaseException | None, rebuild_hint: str) -> RuntimeError:
    return RuntimeError(f"{what} needs the compiled extension {module}, which did not load: {error!r}. "
                        f"Build it with {rebuild_hint} (see README).")


def _why_not_loaded(module: str, error: BaseException) -> str:
    return f"its extension {module} did not load ({type(error).__name__}: {error})"


def fallback_message(what: str, error: BaseException | None, project: str, module: str | None = None,
                     rebuild_hint: str | None = None) -> str:
    """The warning of an op that runs its reference under ``backend="auto"``, with the reason."""
    if error:
        why = _why_not_loaded(module, error) if module else f"the native kernel is not available ({error!r})"
        return (f"{what}: using the pure-PyTorch reference (slower) because {why}"
                + (f"; build it with {rebuild_hint}" if rebuild_hint else "") + " (`mmgen env` lists the fallbacks)")
    return (f"{what}: using the pure-PyTorch reference (slower) because {project} was built without "
            "kernels for this device")


def cuda_missing_error(what: str, project: str, module: str, error: BaseException | None,
                       cuda_rebuild_hint: str) -> RuntimeError:
    """The error of an op given CUDA tensors when its library has no CUDA kernel (not built with
    CUDA, or not loaded at all): what to rebuild, and how to ask for the slow reference instead."""
    why = (_why_not_loaded(module, error) if error is not None
           else f"{module} was built without CUDA kernels (no CUDA toolkit or no CUDA torch at build time)")
    return RuntimeError(f"{what}: the input is on CUDA, but {project} has no CUDA kernel: {why}. Rebuild it "
                        f"with its CUDA kernels: {cuda_rebuild_hint}; or pass backend='reference' to run the "
                        "pure-PyTorch reference on purpose (slower)")


def fallbacks(project: str, module: str, record: dict | None, error: BaseException | None,
              rebuild_hint: str, cuda_rebuild_hint: str) -> dict:
    """What a library's ops do with CPU and with CUDA inputs under ``backend="auto"``, and why
    (``mmgen env``): ``{"project", "module", "cpu", "cuda", "reason", "fix"}`` (reason and fix: None
    when both run native kernels)."""
    cuda = bool(record and record.get("cuda"))
    if record is None:
        reason, fix = _why_not_loaded(module, error), rebuild_hint
    elif not cuda:
        reason, fix = f"{module} was built without CUDA kernels", cuda_rebuild_hint
    else:
        reason = fix = None
    return {"project": project, "module": module,
            "cpu": "run the native kernels" if record is not None
            else "run the pure-PyTorch reference (slower; one warning per op)",
            "cuda": "run the native kernels" if cuda
            else "raise an error (backend='reference' runs the reference on purpose)",
            "reason": reason, "fix": fix}


def describe_build(record: dict | None, error: BaseException | None) -> dict:
    """``build_info()`` of a library: native, cuda, torch_version, cuda_version, arch_list, debug."""
    if record is None:
        return {"native": False, "cuda": False, "torch_version": torch.__version__,
                "cuda_version": None, "arch_list": None, "debug": False, "error": repr(error)}
    return {"native": True, **record}


def choose_native(backend: str, op: str, device: torch.device, *, loaded: bool, cuda: bool,
                  require: Callable[[str], None], fallback: Callable[[str], None],
                  no_cuda: Callable[[str], BaseException], project: str) -> bool:
    """True to call the compiled kernel, False to run the reference. Without a kernel for the
    device: a CUDA input raises ``no_cuda(op)`` (``"auto"`` included: the reference on the GPU is
    never chosen silently); otherwise ``"native"`` raises and ``"auto"`` calls ``fallback(op)``
    (which warns once per op) and runs the reference."""
    if backend not in BACKENDS:
        raise ValueError(f"{op}: backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "reference":
        return False
    if loaded and (device.type in ("cpu", "meta") or (device.type == "cuda" and cuda)):
        return True
    if device.type == "cuda":
        raise no_cuda(op)
    if backend == "native":
        require(op)
        raise RuntimeError(f"{op}: {project} was built without kernels for device {device.type!r}; "
                           "use backend='reference'")
    fallback(op)
    return False


def libraries() -> list:
    """The plugin libraries (``NativeLibrary``) created so far, loaded or not."""
    return list(_LIBRARIES)


class NativeLibrary:
    """A plugin's compiled extension: load it, dispatch to it, register its Python-side kernels.

    ``NativeLibrary("my_plugin._C")`` imports the module now; its operators live in the
    ``TORCH_LIBRARY`` namespace named after the top-level package (``torch.ops.my_plugin``).
    ``register_fake`` and ``register_autograd`` do nothing when the library did not load, so a
    missing build leaves the reference path working instead of failing at import.
    """

    def __init__(self, module: str, *, project: str | None = None, rebuild_hint: str | None = None,
                 cuda_rebuild_hint: str | None = None):
        self.module = module
        self.namespace = module.split(".")[0]
        self.project = project or self.namespace
        self.rebuild_hint = rebuild_hint or f"`mmgen kernels build <path of {self.project}>`"
        self.cuda_rebuild_hint = cuda_rebuild_hint or (
            f"`FORCE_CUDA=1 mmgen kernels build <path of {self.project}>`" if rebuild_hint is None
            else f"{rebuild_hint} with FORCE_CUDA=1 and the CUDA toolkit")
        self.record, self.error = load_native(module, self.rebuild_hint)
        self._warned: set[str] = set()  # ops that warned of their fallback
        _LIBRARIES.append(self)

    def has_native(self) -> bool:
        return self.record is not None

    def load_error(self) -> BaseException | None:
        return self.error

    def build_info(self) -> dict:
        return describe_build(self.record, self.error)

    @property
    def ops(self):
        """``torch.ops.<namespace>``."""
        return getattr(torch.ops, self.namespace)

    def require_native(self, what: str | None = None) -> None:
        if self.record is None:
            raise missing_native_error(what or self.project, self.module, self.error,
                                       self.rebuild_hint) from self.error

    def warn_fallback(self, what: str) -> None:
        if native_required():
            self.require_native(what)
            raise RuntimeError(f"{what}: no native kernel for this input and {REQUIRE_NATIVE_ENV}=1")
        if what not in self._warned:
            self._warned.add(what)
            warnings.warn(fallback_message(what, self.error, self.project, self.module, self.rebuild_hint),
                          NativeFallbackWarning, stacklevel=4)

    def cuda_missing(self, what: str) -> RuntimeError:
        return cuda_missing_error(what, self.project, self.module, self.error, self.cuda_rebuild_hint)

    def fallbacks(self) -> dict:
        """See :func:`fallbacks`."""
        return fallbacks(self.project, self.module, self.record, self.error, self.rebuild_hint,
                         self.cuda_rebuild_hint)

    def use_native(self, backend: str, op: str, device: torch.device) -> bool:
        """The ``backend=`` switch of a wrapper: True to call ``self.ops.<op>``, False for the reference."""
        return choose_native(backend, op, device, loaded=self.has_native(),
                             cuda=bool(self.record and self.record["cuda"]),
                             require=self.require_native, fallback=self.warn_fallback,
                             no_cuda=self.cuda_missing, project=self.project)

    def register_fake(self, name: str):
        """Decorator: ``torch.library.register_fake("<namespace>::<name>")`` when loaded."""
        if not self.has_native():
            return lambda fn: fn
        return torch.library.register_fake(f"{self.namespace}::{name}")

    def register_autograd(self, name: str, backward, *, setup_context=None) -> None:
        """``torch.library.register_autograd("<namespace>::<name>", ...)`` when loaded."""
        if self.has_native():
            torch.library.register_autograd(f"{self.namespace}::{name}", backward,
                                            setup_context=setup_context)
