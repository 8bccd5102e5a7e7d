"""Setup-time helper that declares a native extension the way mmgen builds its own ``mmgen._C``.

Used by mmgen's ``setup.py`` (loaded by file path, so it needs nothing of mmgen) and by the
``setup.py`` of any plugin that ships C++/CUDA ops::

    from setuptools import setup
    from mmgen.kernels.build import build_ext_cmdclass, native_extension

    setup(ext_modules=[native_extension("my_plugin._C", root=ROOT,
                                        cpu_sources=["csrc/*.cpp", "csrc/cpu/*.cpp"],
                                        cuda_sources=["csrc/cuda/*.cu"])],
          cmdclass=build_ext_cmdclass())

Environment switches (all optional), the same for mmgen and every plugin:
  MMGEN_CUDA=0            build CPU kernels only
  FORCE_CUDA=1            compile CUDA kernels; an error when no toolkit or no CUDA torch is found, or
                          when the toolkit's major version differs from torch's CUDA (without it,
                          such a toolkit gives a CPU-only build and a BuildWarning)
  TORCH_CUDA_ARCH_LIST    CUDA architectures (default "8.0;9.0+PTX")
  MAX_JOBS                parallel compile jobs (default: min(2, cores); nvcc needs memory)
  DEBUG=1                 -O0 -g build
  CUDA_HOME               the toolkit (default /usr/local/cuda when it exists)

Every build writes ``<csrc>/generated/build_info.h`` defining ``MMGEN_BUILD_INFO_JSON``, the record
of what the library is built for, and adds a generated source, ``<csrc>/generated/mmgen_build_record.cpp``,
that exports it as the C function ``const char* mmgen_build_info_json(void)``. So every library
carries its record whether it defines a Python module or only registers operators
(``TORCH_LIBRARY`` / ``TORCH_LIBRARY_IMPL``, loaded with ``torch.ops.load_library``): the runtime
reads it through that function (``mmgen.kernels.runtime.library_build_record``), and it can be read
back from the library file without loading it (``read_build_record``). A Python module may also
return it from its own ``build_info_json()``. A set of sources that registers nothing (no
``TORCH_LIBRARY``, ``TORCH_LIBRARY_IMPL``, ``TORCH_LIBRARY_FRAGMENT`` and no ``PYBIND11_MODULE``) is
refused with a message naming the files (``check_registrations``).

Only the standard library is imported at module level; torch is imported when a function needs it,
after the CUDA_HOME default is applied.
"""
from __future__ import annotations

import glob
import json
import os
import re
import shlex
import subprocess
import sys
import sysconfig
import warnings
from dataclasses import dataclass

DEFAULT_ARCHS = "8.0;9.0+PTX"
RECORD_START = b'{"torch_version": '  # every record starts with this key (see build_record)
RECORD_SYMBOL = "mmgen_build_info_json"  # the C function of the generated record source
RECORD_SOURCE = "mmgen_build_record.cpp"  # written next to build_info.h (in <dir>/generated/)
OP_MACROS = ("TORCH_LIBRARY", "TORCH_LIBRARY_IMPL", "TORCH_LIBRARY_FRAGMENT")
MODULE_MACRO = "PYBIND11_MODULE"

__all__ = ["BuildConfigError", "BuildSettings", "BuildWarning", "DEFAULT_ARCHS", "Registrations", "build_ext_cmdclass",
           "build_record", "check_registrations", "cuda_library_headers", "decide_cuda", "editable_build_temp",
           "native_extension",
           "read_build_record", "registrations", "settings", "toolkit_version", "torch_cpp_extension",
           "write_build_info_header", "write_build_record_source"]


class BuildConfigError(RuntimeError):
    """The requested build cannot be made (FORCE_CUDA=1 without a toolkit, or with one whose major
    version differs from torch's CUDA)."""


class BuildWarning(UserWarning):
    """The build goes on with less than asked: a CUDA toolkit was found whose major version differs
    from torch's CUDA, so only the CPU kernels are built (``FORCE_CUDA=1`` makes this an error)."""


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def torch_cpp_extension():
    """``torch.utils.cpp_extension``, imported after choosing the toolkit folder.

    nvcc may be on PATH through a link outside the toolkit (e.g. /usr/local/bin/nvcc), from which
    torch would guess the wrong CUDA_HOME; prefer the conventional toolkit folder when it exists.
    """
    default = None
    if "CUDA_HOME" not in os.environ and "CUDA_PATH" not in os.environ and os.path.isdir("/usr/local/cuda/lib64"):
        default = os.environ["CUDA_HOME"] = "/usr/local/cuda"
    already = "torch.utils.cpp_extension" in sys.modules
    from torch.utils import cpp_extension
    if already and default is not None and cpp_extension.CUDA_HOME is not None:
        cpp_extension.CUDA_HOME = default  # imported before the default was set: same correction
    return cpp_extension


def toolkit_version(cuda_home: str) -> str | None:
    """``major.minor`` of the nvcc in ``cuda_home`` (None when it cannot be run)."""
    nvcc = os.path.join(cuda_home, "bin", "nvcc")
    try:
        out = subprocess.run([nvcc, "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"release (\d+\.\d+)", out)
    return match.group(1) if match else None


def decide_cuda() -> tuple[bool, str]:
    """Return ``(use_cuda, reason)``; raise BuildConfigError when CUDA is forced but impossible.

    A toolkit whose major version differs from torch's CUDA gives a CPU-only build with a
    BuildWarning (also printed to stderr, which ``pip -v`` shows), or an error with FORCE_CUDA=1."""
    import torch
    cuda_home = torch_cpp_extension().CUDA_HOME
    forced = _flag("FORCE_CUDA")
    if os.environ.get("MMGEN_CUDA", "").strip() == "0":
        return False, "MMGEN_CUDA=0"
    problem = None
    if cuda_home is None:
        problem = "no CUDA toolkit found (set CUDA_HOME to the folder holding bin/nvcc)"
    elif torch.version.cuda is None:
        problem = f"torch {torch.__version__} was built without CUDA"
    if problem:
        if forced:
            raise BuildConfigError(f"FORCE_CUDA=1 but {problem}; install the CUDA {torch.version.cuda or ''} "
                                   "toolkit, or unset FORCE_CUDA / set MMGEN_CUDA=0 for CPU kernels only")
        return False, problem
    found = toolkit_version(cuda_home)
    if found is None:
        raise BuildConfigError(f"cannot run {os.path.join(cuda_home, 'bin', 'nvcc')} --version: the CUDA "
                               "toolkit at CUDA_HOME looks broken; fix CUDA_HOME or set MMGEN_CUDA=0")
    if found.split(".")[0] != torch.version.cuda.split(".")[0]:
        mismatch = (f"CUDA toolkit {found} at {cuda_home} does not match torch {torch.__version__}, which was "
                    f"built with CUDA {torch.version.cuda}")
        advice = (f"install a CUDA {torch.version.cuda.split('.')[0]}.x toolkit and point CUDA_HOME at it, "
                  "or set MMGEN_CUDA=0 for CPU kernels only")
        if forced:
            raise BuildConfigError(f"{mismatch}; {advice}")
        reason = f"{mismatch}: CPU kernels only; for CUDA kernels {advice.split(', or')[0]}"
        warnings.warn(f"mmgen build: {reason}", BuildWarning, stacklevel=2)
        print(f"WARNING: mmgen build: {reason}", file=sys.stderr, flush=True)
        return False, reason
    # One reason whether or not FORCE_CUDA=1 asked for it: the reason is in the build record, which
    # mmgen.cpp includes, so a wording that changed with the flag alone would recompile it.
    return True, f"torch has CUDA {torch.version.cuda} and the toolkit {found} is at {cuda_home}"


@dataclass(frozen=True)
class BuildSettings:
    use_cuda: bool
    reason: str
    archs: str  # "" without CUDA
    max_jobs: str
    debug: bool


def settings() -> BuildSettings:
    """Read the environment switches (module docstring); sets MAX_JOBS and TORCH_CUDA_ARCH_LIST
    defaults in the environment, where torch's build reads them."""
    use_cuda, reason = decide_cuda()
    max_jobs = os.environ.setdefault("MAX_JOBS", str(min(2, os.cpu_count() or 1)))
    archs = os.environ.setdefault("TORCH_CUDA_ARCH_LIST", DEFAULT_ARCHS) if use_cuda else ""
    return BuildSettings(use_cuda, reason, archs, max_jobs, _flag("DEBUG"))


def build_record(module: str, config: BuildSettings) -> dict:
    """What a library is built for; ``torch_version`` stays the first key (see RECORD_START).
    ``cuda_reason`` says why the CUDA kernels are on or off (e.g. a toolkit that does not match)."""
    import torch
    return {"torch_version": torch.__version__, "cuda": config.use_cuda,
            "cuda_version": torch.version.cuda if config.use_cuda else None,
            "arch_list": config.archs or None, "debug": config.debug, "module": module,
            "cuda_reason": config.reason}


def write_build_info_header(path: str, record: dict) -> None:
    """Write the record as ``MMGEN_BUILD_INFO_JSON`` into the header at ``path``."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    text = '#pragma once\n#define MMGEN_BUILD_INFO_JSON R"mmgen(%s)mmgen"\n' % json.dumps(record)
    old = open(path).read() if os.path.exists(path) else None
    if old != text:  # keep the timestamp when nothing changed, so ninja does not rebuild
        with open(path + ".tmp", "w") as f:
            f.write(text)
        os.replace(path + ".tmp", path)


def write_build_record_source(generated_dir: str) -> str:
    """Write ``<generated_dir>/mmgen_build_record.cpp``, which exports the record of
    ``build_info.h`` (same folder) as the C function ``mmgen_build_info_json``; return its path.

    Added to the sources of every build, so an op-only library (no Python module) keeps its record
    too; the function is visible although the build uses ``-fvisibility=hidden``."""
    os.makedirs(generated_dir, exist_ok=True)
    path = os.path.join(generated_dir, RECORD_SOURCE)
    text = ("// Generated by mmgen.kernels.build: the build record of this library, readable without\n"
            "// a Python module (mmgen.kernels.runtime.library_build_record). Do not edit.\n"
            '#include "build_info.h"\n\n'
            'extern "C" __attribute__((visibility("default"))) const char* %s(void) {\n'
            "  return MMGEN_BUILD_INFO_JSON;\n}\n" % RECORD_SYMBOL)
    old = open(path).read() if os.path.exists(path) else None
    if old != text:
        with open(path + ".tmp", "w") as f:
            f.write(text)
        os.replace(path + ".tmp", path)
    return path


_COMMENTS = re.compile(r"//[^\n]*|/\*.*?\*/", re.S)
# STABLE_TORCH_LIBRARY*: the same blocks in torch's stable ABI (torch/csrc/stable/library.h)
_MACRO = re.compile(r"\b(?:STABLE_)?(TORCH_LIBRARY_IMPL|TORCH_LIBRARY_FRAGMENT|TORCH_LIBRARY|PYBIND11_MODULE)"
                    r"\s*\(\s*(\w*)")
_LOCAL_INCLUDE = re.compile(r'^\s*#\s*include\s*"([^"]+)"', re.M)


@dataclass(frozen=True)
class Registrations:
    """What a set of sources registers: operator namespaces (in order) and whether one defines a
    Python module (``PYBIND11_MODULE``)."""
    namespaces: tuple
    python_module: bool

    @property
    def registers_ops(self) -> bool:
        return bool(self.namespaces)


def registrations(sources) -> Registrations:
    """Scan sources (comments stripped, following ``#include "..."`` of files next to them) for
    ``TORCH_LIBRARY(ns, m)``, ``TORCH_LIBRARY_IMPL(ns, K, m)``, ``TORCH_LIBRARY_FRAGMENT(ns, m)`` and
    ``PYBIND11_MODULE``."""
    namespaces, python_module, seen = [], False, set()
    todo = [os.path.abspath(s) for s in sources]
    while todo:
        path = todo.pop(0)
        if path in seen or not os.path.isfile(path):
            continue
        seen.add(path)
        with open(path, errors="replace") as f:
            text = _COMMENTS.sub(" ", f.read())
        for macro, arg in _MACRO.findall(text):
            if macro == MODULE_MACRO:
                python_module = True
            elif arg and arg != "_" and arg not in namespaces:  # "_": an impl block for every namespace
                namespaces.append(arg)
        todo += [os.path.join(os.path.dirname(path), inc) for inc in _LOCAL_INCLUDE.findall(text)]
    return Registrations(tuple(namespaces), python_module)


def check_registrations(sources, what: str, error=None) -> Registrations:
    """``registrations(sources)``; raise ``error`` (default BuildConfigError) naming the files when
    they register neither an operator nor a Python module."""
    found = registrations(sources)
    if not found.registers_ops and not found.python_module:
        files = ", ".join(str(s) for s in sources)
        raise (error or BuildConfigError)(
            f"{what}: {files} register{'s' * (len(sources) == 1)} nothing: no TORCH_LIBRARY, TORCH_LIBRARY_IMPL "
            "or TORCH_LIBRARY_FRAGMENT block and no PYBIND11_MODULE, so the built library would hold no "
            "operator to call. Register the op, e.g.\n"
            '  TORCH_LIBRARY(my_ops, m) { m.def("scale(Tensor x, float factor) -> Tensor"); }\n'
            '  TORCH_LIBRARY_IMPL(my_ops, CPU, m) { m.impl("scale", &scale); }')
    return found


def read_build_record(library: str) -> dict | None:
    """The build record embedded in a compiled library file, read without loading the library."""
    with open(library, "rb") as f:
        data = f.read()
    start = data.find(RECORD_START)
    if start < 0:
        return None
    end = data.find(b"}", start)
    try:
        return json.loads(data[start:end + 1].decode())
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None


def cuda_library_headers() -> list[str]:
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


def compile_flags(config: BuildSettings) -> tuple[list[str], list[str]]:
    """``(cxx, nvcc)`` flags of every mmgen build (nvcc empty without CUDA)."""
    opt = ["-O0", "-g"] if config.debug else ["-O3"]
    # -fopenmp: at::parallel_for is OpenMP-based in torch's CPU build; without it, loops run serially.
    # -fno-trapping-math: no code reads floating-point exception flags, and without it GCC keeps a
    # select such as `x > hi ? inf : y` as a branch (computing y could raise a flag), so loops with
    # one are not vectorized below AVX-512 (no masked operations). Results are unchanged.
    cxx = opt + ["-std=c++17", "-fvisibility=hidden", "-fno-math-errno", "-fno-trapping-math", "-fopenmp"]
    if not config.use_cuda:
        return cxx, []
    nvcc = opt + ["-std=c++17", "--expt-relaxed-constexpr", "-lineinfo"]
    for inc in cuda_library_headers():  # searched after the toolkit's own headers
        cxx += ["-isystem", inc]
        nvcc += ["-isystem", inc]
    return cxx, nvcc


def cxx_compiler() -> str:
    """The C++ compiler setuptools and torch's extension builder run: ``$CXX``, else Python's."""
    cxx = os.environ.get("CXX") or sysconfig.get_config_var("CXX") or "c++"
    return shlex.split(cxx)[0]


_OPENMP_PROBE = "#include <omp.h>\nint main() { return omp_get_max_threads() > 0 ? 0 : 1; }\n"


def check_openmp(cxx: str | None = None) -> None:
    """Raise BuildConfigError when ``cxx -fopenmp`` cannot compile ``#include <omp.h>``.

    torch's CPU build parallelizes with OpenMP and its ATen headers include ``omp.h``, so every
    extension needs it. GCC ships the header; clang needs LLVM's OpenMP runtime installed beside it
    (Debian/Ubuntu: libomp-dev; macOS: brew install libomp). Without the check the build fails deep
    in torch's headers. A compiler that cannot be run at all is left for the build to report."""
    import torch
    if not torch.backends.openmp.is_available():
        return
    cxx = cxx or cxx_compiler()
    try:
        probe = subprocess.run([cxx, "-fopenmp", "-fsyntax-only", "-x", "c++", "-"], input=_OPENMP_PROBE,
                               capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return
    if probe.returncode != 0 and "omp.h" in probe.stderr:
        hint = ("install LLVM's OpenMP runtime for it (Debian/Ubuntu: apt install libomp-dev; macOS: "
                "brew install libomp)" if "clang" in os.path.basename(cxx) or "clang" in probe.stderr
                else "install the compiler's OpenMP support, or build with GCC (CXX=g++)")
        raise BuildConfigError(
            f"the C++ compiler {cxx!r} cannot compile '#include <omp.h>' with -fopenmp, which torch's "
            f"ATen headers need (torch is built with OpenMP): {hint}. Compiler said: "
            f"{probe.stderr.strip().splitlines()[0] if probe.stderr.strip() else 'nothing'}")


def _sources(root: str, patterns) -> list[str]:
    found = []
    for pattern in patterns:
        matches = sorted(glob.glob(os.path.join(root, pattern)))
        if not matches:
            raise BuildConfigError(f"source pattern {pattern!r} matches no file under {root}")
        found += [os.path.relpath(m) for m in matches]
    return found


def native_extension(name: str, *, root: str, cpu_sources, cuda_sources=(), csrc: str = "csrc",
                     include_dirs=(), define_macros=(), config: BuildSettings | None = None):
    """A CppExtension (or CUDAExtension when CUDA is on) named ``name`` (e.g. ``"my_plugin._C"``).

    Args:
        root: the folder of the ``setup.py``; source patterns are globs relative to it.
        cpu_sources: C++ sources, always compiled (the schema file and the CPU kernels).
        cuda_sources: ``.cu`` sources, compiled when CUDA is on (then ``MMGEN_WITH_CUDA=1``).
        csrc: folder (relative to root) on the include path; its ``generated/build_info.h`` is
            written here with the build record, and ``generated/mmgen_build_record.cpp`` (added to
            the sources) exports it as the C function ``mmgen_build_info_json``.

    The sources may define a Python module (``PYBIND11_MODULE``) or only register operators
    (``TORCH_LIBRARY`` / ``TORCH_LIBRARY_IMPL``); ``NativeLibrary`` loads either. Sources that
    register nothing raise BuildConfigError naming them.
    """
    config = config or settings()
    cpp_extension = torch_cpp_extension()
    check_openmp()
    sources = _sources(root, cpu_sources)
    csrc_dir = os.path.join(root, csrc)
    generated = os.path.join(csrc_dir, "generated")
    write_build_info_header(os.path.join(generated, "build_info.h"), build_record(name, config))
    cuda_files = _sources(root, cuda_sources) if config.use_cuda else []
    check_registrations(cuda_files + sources, f"native_extension({name!r})")
    sources.append(os.path.relpath(write_build_record_source(generated)))
    cxx, nvcc = compile_flags(config)
    macros = list(define_macros)
    common = dict(include_dirs=[csrc_dir, *include_dirs], extra_link_args=["-fopenmp"])
    if config.use_cuda:
        # CUDA first: with few jobs the slowest compile starts first, and a broken .cu fails fast.
        sources = cuda_files + sources
        macros.append(("MMGEN_WITH_CUDA", "1"))
        ext = cpp_extension.CUDAExtension(name, sources, define_macros=macros,
                                          extra_compile_args={"cxx": cxx, "nvcc": nvcc}, **common)
    else:
        ext = cpp_extension.CppExtension(name, sources, define_macros=macros,
                                         extra_compile_args={"cxx": cxx}, **common)
    import torch
    print("%s setup: CUDA kernels %s (%s); archs=%s; MAX_JOBS=%s; debug=%s; torch %s"
          % (name, "ON" if config.use_cuda else "OFF", config.reason, config.archs or "-",
             config.max_jobs, config.debug, torch.__version__), file=sys.stderr, flush=True)
    return ext


def editable_build_temp(root: str) -> str:
    """Where an editable install keeps its object files between installs: ``<root>/build/editable-<tag>``.

    pip's editable builds otherwise compile in a new temporary folder each time, so installing again
    (say, the test extra after the main job) recompiled every kernel. ninja then rebuilds only what
    changed: a source or header (its depfiles), or a compile command (other flags, another torch)."""
    return os.path.join(root, "build", f"editable-{sys.implementation.cache_tag}")


def build_ext_cmdclass() -> dict:
    """``cmdclass`` for ``setup()``: torch's BuildExtension with ninja; an editable install keeps its
    object files (``editable_build_temp``) so a second install of unchanged sources only links."""
    base = torch_cpp_extension().BuildExtension.with_options(use_ninja=True)

    class BuildExtension(base):
        def finalize_options(self):
            super().finalize_options()
            if getattr(self, "editable_mode", False) or self.inplace:
                self.build_temp = editable_build_temp(os.getcwd())

    return {"build_ext": BuildExtension}
