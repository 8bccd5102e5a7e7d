"""mmgen.kernels.load on op-only sources (TORCH_LIBRARY / TORCH_LIBRARY_IMPL, no pybind11 module), as
PyTorch's custom-op tutorial writes them; the build record the JIT adds itself; sources that register
nothing. One JIT build per test session, into a temporary cache."""
import json
import os
import shutil
import subprocess
import sys
import sysconfig

import pytest
import torch

import mmgen.kernels
from mmgen.kernels import build, jit, runtime
from mmgen.testing import Sample, check_op

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

# The shortest op (docs/kernels.md shows the same): no pybind11, no build-record boilerplate.
OP_ONLY = r"""
#include <torch/library.h>
#include <ATen/ATen.h>

at::Tensor scale(const at::Tensor& x, double factor) { return x * factor; }

TORCH_LIBRARY(mmgen_test_op_only, m) { m.def("scale(Tensor x, float factor) -> Tensor"); }
TORCH_LIBRARY_IMPL(mmgen_test_op_only, CPU, m) { m.impl("scale", &scale); }
"""


@pytest.fixture(scope="session")
def op_only(tmp_path_factory):
    """The op-only source built once per session into a temporary kernel cache, with its Python
    side (fake kernel, autograd) registered."""
    folder = tmp_path_factory.mktemp("jit_op_only")
    source = folder / "scale_op.cpp"
    source.write_text(OP_ONLY)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(jit.CACHE_ENV, str(folder / "cache"))
        mp.setenv("MMGEN_CUDA", "0")  # a CPU op: no need to link CUDA
        library = mmgen.kernels.load("mmgen_test_op_only", source)
        again = mmgen.kernels.load("mmgen_test_op_only", [str(source)])  # cached: no second build

    @torch.library.register_fake("mmgen_test_op_only::scale")
    def _(x, factor):
        return torch.empty_like(x)

    def backward(ctx, grad):
        return grad * ctx.factor, None

    def setup_context(ctx, inputs, output):
        ctx.factor = inputs[1]

    torch.library.register_autograd("mmgen_test_op_only::scale", backward, setup_context=setup_context)
    return library, again, folder


def _samples(device, requires_grad):
    yield Sample(torch.randn(4, 3, device=device, requires_grad=requires_grad), 2.5)
    yield Sample(torch.randn(7, device=device, dtype=torch.float64, requires_grad=requires_grad), -0.5)


def test_op_only_source_builds_loads_and_passes_check_op(op_only):
    library, again, folder = op_only
    assert isinstance(library, jit.JitLibrary) and library.namespaces == ("mmgen_test_op_only",)
    assert library.__file__.startswith(str(folder / "cache")) and again.__file__ == library.__file__
    x = torch.randn(5)
    torch.testing.assert_close(torch.ops.mmgen_test_op_only.scale(x, 3.0), x * 3.0)
    assert library.ops.scale is torch.ops.mmgen_test_op_only.scale
    report = check_op(torch.ops.mmgen_test_op_only.scale, _samples, lambda x, f: x * f)
    assert {"correctness", "gradcheck", "opcheck", "compile"} == report.checks("cpu")


def test_the_jit_records_the_build_of_an_op_only_library(op_only):
    library, _, _ = op_only
    record = library.build_info()
    assert record == {"torch_version": torch.__version__, "cuda": False, "cuda_version": None, "arch_list": None,
                      "debug": False, "module": "mmgen_test_op_only", "cuda_reason": "MMGEN_CUDA=0"}
    assert json.loads(library.build_info_json()) == record
    assert runtime.library_build_record(library.__file__) == record  # the generated C function
    assert build.read_build_record(library.__file__) == record       # from the file, without loading it
    generated = os.path.join(os.path.dirname(library.__file__), "generated", build.RECORD_SOURCE)
    assert build.RECORD_SYMBOL in open(generated).read()


def test_native_library_loads_an_op_only_extension_of_a_package(op_only, tmp_path):
    """A plugin's setup.py extension without a Python module: NativeLibrary loads it with
    torch.ops.load_library and reads its record (in a fresh process: a namespace registers once)."""
    library, _, _ = op_only
    package = tmp_path / "op_only_plugin"
    package.mkdir()
    (package / "__init__.py").write_text("")
    shutil.copy(library.__file__, package / ("_C" + sysconfig.get_config_var("EXT_SUFFIX")))
    code = ("import json, torch\n"
            "from mmgen.kernels import NativeLibrary\n"
            "lib = NativeLibrary('op_only_plugin._C')\n"
            "assert lib.has_native(), lib.load_error()\n"
            "print(json.dumps(lib.build_info()))\n"
            "print(torch.ops.mmgen_test_op_only.scale(torch.ones(2), 4.0).tolist())\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(tmp_path),
                         env={**ENV, "PYTHONPATH": os.pathsep.join([ROOT, str(tmp_path)])}, timeout=300)
    assert out.returncode == 0, out.stderr
    info, values = out.stdout.strip().splitlines()[-2:]
    assert json.loads(info)["native"] is True and json.loads(info)["module"] == "mmgen_test_op_only"
    assert values == "[4.0, 4.0]"


def test_a_source_that_registers_nothing_is_refused_naming_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv(jit.CACHE_ENV, str(tmp_path / "cache"))
    source = tmp_path / "helpers_only.cpp"
    source.write_text("#include <ATen/ATen.h>\n// TORCH_LIBRARY(in_a_comment, m) {}\n"
                      "at::Tensor twice(const at::Tensor& x) { return x * 2; }\n")
    with pytest.raises(ValueError, match=r"helpers_only\.cpp registers nothing: no TORCH_LIBRARY, "
                                         r"TORCH_LIBRARY_IMPL or TORCH_LIBRARY_FRAGMENT block and no PYBIND11_MODULE"):
        mmgen.kernels.load("mmgen_test_nothing", str(source))
    assert not (tmp_path / "cache").exists()  # refused before compiling


def test_registrations_follow_local_includes_and_ignore_comments(tmp_path):
    (tmp_path / "reg.h").write_text("TORCH_LIBRARY_FRAGMENT(frag_ns, m) {}\n")
    (tmp_path / "a.cpp").write_text('#include "reg.h"\n/* PYBIND11_MODULE(x, m) */\n'
                                    "TORCH_LIBRARY_IMPL(other_ns, CPU, m) {}\n")
    found = build.registrations([str(tmp_path / "a.cpp")])
    assert found.namespaces == ("other_ns", "frag_ns") and not found.python_module
    (tmp_path / "s.cpp").write_text("STABLE_TORCH_LIBRARY(stable_ns, m) {}\nTORCH_LIBRARY_IMPL(_, Meta, m) {}\n")
    assert build.registrations([str(tmp_path / "s.cpp")]).namespaces == ("stable_ns",)
    (tmp_path / "b.cpp").write_text("PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {}\n")
    found = build.registrations([str(tmp_path / "b.cpp")])
    assert found.python_module and not found.registers_ops
