"""The kernel SDK: build helper, runtime loader and backend switch, mmgen.testing, JIT, the CLI."""
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import warnings

import pytest
import torch

import mmgen
from helpers import cli_error
from mmgen import cli
from mmgen.kernels import build, diagnose, jit, runtime
from mmgen.testing import DEVICES, CheckReport, Sample, check_op

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "examples", "mmgen-gumbel")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


# ---- build helper ---------------------------------------------------------------------------

def test_build_helper_loads_by_path_without_mmgen():
    code = ("import importlib.util, sys\n"
            f"spec = importlib.util.spec_from_file_location('b', {os.path.join(ROOT, 'mmgen', 'kernels', 'build.py')!r})\n"
            "m = importlib.util.module_from_spec(spec); sys.modules['b'] = m; spec.loader.exec_module(m)\n"
            "assert 'mmgen' not in sys.modules and 'torch' not in sys.modules, sorted(sys.modules)\n"
            "print(m.DEFAULT_ARCHS)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "8.0;9.0+PTX"


@pytest.fixture
def build_env(monkeypatch):
    """Every build switch cleared for the test and restored after it (settings() sets defaults)."""
    for name in ("MMGEN_CUDA", "FORCE_CUDA", "DEBUG", "TORCH_CUDA_ARCH_LIST", "MAX_JOBS"):
        monkeypatch.setenv(name, "")  # records the original value, so the undo restores or removes it
        monkeypatch.delenv(name)
    return monkeypatch


def _plugin_tree(tmp_path):
    root = tmp_path / "plugin"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns("*.so", "build", "*.egg-info", "generated",
                                                                 "__pycache__"))
    return root


def test_native_extension_cpu_only_and_debug(build_env, tmp_path):
    build_env.setenv("MMGEN_CUDA", "0")
    build_env.setenv("DEBUG", "1")
    root = _plugin_tree(tmp_path)
    build_env.chdir(root)
    ext = build.native_extension("mmgen_gumbel._C", root=str(root), cpu_sources=["csrc/gumbel.cpp", "csrc/cpu/*.cpp"],
                                 cuda_sources=["csrc/cuda/*.cu"])
    assert ext.sources == ["csrc/gumbel.cpp", "csrc/cpu/gumbel_softmax_kernel.cpp",
                           "csrc/generated/mmgen_build_record.cpp"]  # exports the record as a C function
    assert "mmgen_build_info_json" in (root / "csrc" / "generated" / "mmgen_build_record.cpp").read_text()
    assert ext.extra_compile_args["cxx"][:2] == ["-O0", "-g"] and "nvcc" not in ext.extra_compile_args
    assert ("MMGEN_WITH_CUDA", "1") not in ext.define_macros
    header = (root / "csrc" / "generated" / "build_info.h").read_text()
    record = json.loads(header.split('R"mmgen(')[1].split(')mmgen"')[0])
    assert record == {"torch_version": torch.__version__, "cuda": False, "cuda_version": None, "arch_list": None,
                      "debug": True, "module": "mmgen_gumbel._C", "cuda_reason": "MMGEN_CUDA=0"}
    with pytest.raises(build.BuildConfigError, match="'csrc/nope/\\*.cpp' matches no file"):
        build.native_extension("x._C", root=str(root), cpu_sources=["csrc/nope/*.cpp"])
    (root / "csrc" / "helpers.cpp").write_text("// TORCH_LIBRARY(x, m) only in a comment\nint helper() { return 1; }\n")
    with pytest.raises(build.BuildConfigError, match="csrc/helpers.cpp registers nothing: no TORCH_LIBRARY"):
        build.native_extension("x._C", root=str(root), cpu_sources=["csrc/helpers.cpp"])
    # op-only sources (no PYBIND11_MODULE) are accepted as they are
    (root / "csrc" / "op_only.cpp").write_text('#include <torch/library.h>\nTORCH_LIBRARY(x, m) { m.def("f(Tensor a) -> Tensor"); }\n')
    ext = build.native_extension("x._C", root=str(root), cpu_sources=["csrc/op_only.cpp"])
    assert ext.sources[0] == "csrc/op_only.cpp"


@pytest.mark.skipif(build.torch_cpp_extension().CUDA_HOME is None or torch.version.cuda is None,
                    reason="needs the CUDA toolkit and a CUDA build of torch")
def test_native_extension_with_cuda_uses_mmgen_archs_and_flags(build_env, tmp_path):
    build_env.setenv("FORCE_CUDA", "1")
    root = _plugin_tree(tmp_path)
    build_env.chdir(root)
    ext = build.native_extension("mmgen_gumbel._C", root=str(root), cpu_sources=["csrc/*.cpp", "csrc/cpu/*.cpp"],
                                 cuda_sources=["csrc/cuda/*.cu"])
    assert ext.sources[0] == "csrc/cuda/gumbel_softmax_kernel.cu" and len(ext.sources) == 4
    assert os.environ["TORCH_CUDA_ARCH_LIST"] == "8.0;9.0+PTX"
    assert os.environ["MAX_JOBS"] == str(min(2, os.cpu_count()))
    assert ("MMGEN_WITH_CUDA", "1") in ext.define_macros
    assert {"-O3", "--expt-relaxed-constexpr", "-lineinfo"} <= set(ext.extra_compile_args["nvcc"])


def test_forced_cuda_without_toolkit_or_with_a_mismatched_one_is_an_error(build_env):
    build_env.setenv("FORCE_CUDA", "1")
    cpp_extension = build.torch_cpp_extension()
    build_env.setattr(cpp_extension, "CUDA_HOME", None)
    with pytest.raises(build.BuildConfigError, match="FORCE_CUDA=1 but no CUDA toolkit found"):
        build.decide_cuda()
    build_env.delenv("FORCE_CUDA")
    assert build.decide_cuda()[0] is False  # not forced: CPU kernels only, with the reason
    if torch.version.cuda is None:
        return
    build_env.setenv("FORCE_CUDA", "1")
    build_env.setattr(cpp_extension, "CUDA_HOME", "/opt/some-cuda")
    build_env.setattr(build, "toolkit_version", lambda home: "11.8")
    with pytest.raises(build.BuildConfigError, match=r"toolkit 11.8 at /opt/some-cuda does not match torch"):
        build.decide_cuda()
    build_env.setenv("MMGEN_CUDA", "0")
    assert build.decide_cuda() == (False, "MMGEN_CUDA=0")


def _fake_toolkit(tmp_path, release: str):
    """A CUDA_HOME whose bin/nvcc prints what a real nvcc of that release prints."""
    home = tmp_path / f"cuda-{release}"
    (home / "bin").mkdir(parents=True)
    nvcc = home / "bin" / "nvcc"
    nvcc.write_text("#!/bin/sh\necho 'nvcc: NVIDIA (R) Cuda compiler driver'\n"
                    f"echo 'Cuda compilation tools, release {release}, V{release}.131'\n")
    nvcc.chmod(0o755)
    return home


@pytest.mark.skipif(torch.version.cuda is None, reason="needs a CUDA build of torch (the mismatch is with its CUDA)")
def test_a_toolkit_of_another_cuda_major_gives_a_cpu_only_build_with_a_warning(build_env, tmp_path, capfd):
    home = _fake_toolkit(tmp_path, "12.4" if not torch.version.cuda.startswith("12.") else "11.8")
    release = home.name.split("-")[1]
    build_env.setattr(build.torch_cpp_extension(), "CUDA_HOME", str(home))
    assert build.toolkit_version(str(home)) == release  # the fake nvcc is read as a real one would be
    with pytest.warns(build.BuildWarning, match=f"CUDA toolkit {release} at {home} does not match torch"):
        use_cuda, reason = build.decide_cuda()
    assert use_cuda is False and "CPU kernels only" in reason and "FORCE_CUDA" not in reason
    assert "WARNING: mmgen build: CUDA toolkit" in capfd.readouterr().err  # what pip -v / the log shows
    # the extension is then a CPU one, and its record says why
    root = _plugin_tree(tmp_path)
    build_env.chdir(root)
    with pytest.warns(build.BuildWarning):
        ext = build.native_extension("mmgen_gumbel._C", root=str(root), cpu_sources=["csrc/*.cpp", "csrc/cpu/*.cpp"],
                                     cuda_sources=["csrc/cuda/*.cu"])
    assert not any(s.endswith(".cu") for s in ext.sources) and ("MMGEN_WITH_CUDA", "1") not in ext.define_macros
    header = (root / "csrc" / "generated" / "build_info.h").read_text()
    record = json.loads(header.split('R"mmgen(')[1].split(')mmgen"')[0])
    assert record["cuda"] is False and record["cuda_reason"] == reason
    # FORCE_CUDA=1 insists: then it is an error, before anything compiles
    build_env.setenv("FORCE_CUDA", "1")
    with pytest.raises(build.BuildConfigError, match=f"CUDA toolkit {release} at {home} does not match torch"):
        build.decide_cuda()


def test_build_record_is_read_from_the_library_file(tmp_path):
    if not mmgen.ops.has_native():
        pytest.skip("needs the native extension")
    record = build.read_build_record(importlib.util.find_spec("mmgen._C").origin)
    # native, cpu_isa (the CPU code path in use) and compiler (read from the loaded library's code)
    # are not in the file's record
    assert record == {k: v for k, v in mmgen.ops.build_info().items()
                      if k not in ("native", "cpu_isa", "compiler")}
    other = tmp_path / "x.so"
    other.write_bytes(b"\x7fELF no record here")
    assert build.read_build_record(str(other)) is None


# ---- runtime: loading and the backend switch -------------------------------------------------

def test_native_library_without_a_build_falls_back_once(monkeypatch):
    monkeypatch.delenv("MMGEN_REQUIRE_NATIVE", raising=False)
    monkeypatch.setattr(runtime, "_LIBRARIES", [])
    lib = runtime.NativeLibrary("mmgen_kernels_missing_plugin._C")
    assert not lib.has_native() and isinstance(lib.load_error(), ModuleNotFoundError)
    assert lib.build_info()["native"] is False and runtime.libraries() == [lib]
    assert lib.register_fake("anything")(len) is len  # a missing build leaves the reference working
    lib.register_autograd("anything", lambda ctx, g: g)
    cpu = torch.device("cpu")
    with pytest.warns(runtime.NativeFallbackWarning, match="mmgen_kernels_missing_plugin"):
        assert lib.use_native("auto", "demo.op", cpu) is False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert lib.use_native("auto", "demo.op", cpu) is False  # once only
        assert lib.use_native("reference", "demo.op", cpu) is False
    with pytest.raises(RuntimeError, match="demo.op needs the compiled extension mmgen_kernels_missing_plugin._C"):
        lib.use_native("native", "demo.op", cpu)
    with pytest.raises(ValueError, match="backend must be one of"):
        lib.use_native("fast", "demo.op", cpu)
    monkeypatch.setenv("MMGEN_REQUIRE_NATIVE", "1")
    with pytest.raises(RuntimeError, match="did not load"):
        lib.use_native("auto", "demo.op", cpu)


def test_a_library_built_for_another_torch_is_refused(tmp_path, monkeypatch):
    package = tmp_path / "mmgen_kernels_stale"
    package.mkdir()
    (package / "__init__.py").write_text("")
    record = {"torch_version": "1.13.0", "cuda": False, "cuda_version": None, "arch_list": None, "debug": False}
    (package / "_C.py").write_text(f"def build_info_json():\n    return {json.dumps(record)!r}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(runtime, "_LIBRARIES", [])
    lib = runtime.NativeLibrary("mmgen_kernels_stale._C", rebuild_hint="`make it`")
    assert not lib.has_native()
    assert f"built for torch 1.13.0 but torch {torch.__version__} is installed; rebuild with `make it`" in str(lib.error)


NO_GUMBEL_BUILD = ("import sys\n"
                   "class NoBuild:  # as if mmgen_gumbel._C were not built\n"
                   "    def find_spec(self, name, path=None, target=None):\n"
                   "        if name == 'mmgen_gumbel._C':\n"
                   "            raise ImportError('mmgen_gumbel._C is not built')\n"
                   "sys.meta_path.insert(0, NoBuild())\n")


def test_example_plugin_without_its_build_falls_back_to_the_reference():
    pytest.importorskip("mmgen_gumbel", reason="the example plugin is installed by scripts/install.sh test")
    code = NO_GUMBEL_BUILD + (
        "import warnings, torch, mmgen, mmgen_gumbel\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    y = mmgen_gumbel.gumbel_softmax_sample(torch.zeros(2, 3), uniform=torch.full((2, 3), 0.5))\n"
        "print(mmgen_gumbel.library.has_native(), y.sum().item(), mmgen.ops.has_native())\n"
        "print([str(w.message) for w in caught])\n")
    env = {k: v for k, v in ENV.items() if k != "MMGEN_REQUIRE_NATIVE"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"False 2.0 {mmgen.ops.has_native()}\n"), out.stdout
    assert "using the pure-PyTorch reference (slower)" in out.stdout and "mmgen_gumbel._C is not built" in out.stdout
    strict = subprocess.run([sys.executable, "-c", NO_GUMBEL_BUILD + "import mmgen_gumbel"], capture_output=True,
                            text=True, env={**env, "MMGEN_REQUIRE_NATIVE": "1"})
    assert strict.returncode != 0
    assert "needs the compiled extension mmgen_gumbel._C, which did not load" in strict.stderr


def test_mmgen_dispatch_goes_through_the_shared_switch():
    from mmgen.ops import _dispatch
    assert _dispatch.BACKENDS is runtime.BACKENDS
    assert mmgen.ops.NativeFallbackWarning is runtime.NativeFallbackWarning
    mu = torch.randn(3, 4)
    with pytest.raises(ValueError, match="backend must be one of"):
        mmgen.ops.gaussian_kl(mu, mu, backend="fast")


# ---- mmgen.testing.check_op finds broken ops -------------------------------------------------

def _python_op(name, forward, *, fake=True, backward=None):
    """A custom op in the test namespace, defined in Python (no compile needed)."""
    op = torch.library.custom_op(f"mmgen_kernels_test::{name}", forward, mutates_args=(),
                                 schema="(Tensor x, float a) -> Tensor")
    if fake:
        op.register_fake(lambda x, a: torch.empty_like(x))
    if backward is not None:
        op.register_autograd(backward, setup_context=lambda ctx, inputs, output: setattr(ctx, "a", inputs[1]))
    return getattr(torch.ops.mmgen_kernels_test, name)


def _scale(x: torch.Tensor, a: float) -> torch.Tensor:
    return x * a


def _samples(device, requires_grad):
    yield Sample(torch.randn(3, 5, device=device, requires_grad=requires_grad), 1.5)
    yield Sample(torch.randn(0, 2, device=device, requires_grad=requires_grad), -2.0)


def test_check_op_passes_a_correct_op_and_reports_what_ran():
    op = _python_op("scale_ok", lambda x, a: x * a, backward=lambda ctx, g: (g * ctx.a, None))
    report = check_op(op, _samples, _scale, devices=["cpu"], compile_backend="aot_eager")
    assert isinstance(report, CheckReport)
    assert report.checks("cpu") == {"correctness", "gradcheck", "opcheck", "compile"}
    assert sum(1 for _, _, c in report.ran if c == "compile") == 1


def test_check_op_finds_a_wrong_forward():
    op = _python_op("scale_wrong", lambda x, a: x * a + 1e-3, backward=lambda ctx, g: (g * ctx.a, None))
    with pytest.raises(AssertionError, match=r"scale_wrong.* on cpu, sample 0 .*correctness failed: op vs reference"):
        check_op(op, _samples, _scale, compile=False)


def test_check_op_finds_a_wrong_backward_by_gradcheck():
    op = _python_op("scale_bad_grad", lambda x, a: x * a, backward=lambda ctx, g: (2 * g * ctx.a, None))
    with pytest.raises(AssertionError, match="correctness failed: op vs reference gradients"):
        check_op(op, _samples, _scale, compile=False)
    with pytest.raises(AssertionError, match="gradcheck failed"):  # against itself: only gradcheck can tell
        check_op(op, _samples, lambda x, a: op(x, a), compile=False, opcheck=False)


def test_check_op_finds_a_missing_fake_kernel():
    op = _python_op("scale_no_fake", lambda x, a: x * a, fake=False, backward=lambda ctx, g: (g * ctx.a, None))
    with pytest.raises(AssertionError, match="opcheck failed"):
        check_op(op, _samples, _scale, compile=False, gradcheck=False)


@pytest.mark.skipif(not mmgen.ops.has_native(), reason="needs the native extension")
@pytest.mark.parametrize("device", DEVICES)
def test_check_op_runs_on_mmgen_own_ops(device):
    from mmgen.ops import reference

    def samples(device, requires_grad):
        for shape in [(4, 7), (3, 2, 5), (1, 1)]:
            mu = torch.randn(shape, device=device, requires_grad=requires_grad)
            yield Sample(mu, (0.5 * torch.randn(shape, device=device)).requires_grad_(requires_grad))

    report = check_op(torch.ops.mmgen.gaussian_kl, samples, reference.gaussian_kl, devices=[device])
    assert report.checks(device) == {"correctness", "gradcheck", "opcheck", "compile"}


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU skip")
def test_check_op_skips_when_no_requested_device_exists():
    op = _python_op("scale_cuda_only", lambda x, a: x * a)
    with pytest.raises(pytest.skip.Exception, match="no requested device is available"):
        check_op(op, _samples, _scale, devices=["cuda"])


def test_check_op_rejects_a_python_function():
    with pytest.raises(TypeError, match="op must be a torch.ops operator"):
        check_op(_scale, _samples, _scale)


# ---- JIT ---------------------------------------------------------------------------------------

def test_build_key_changes_with_sources_and_versions(tmp_path):
    src = tmp_path / "a.cpp"
    src.write_text("int a;")
    key = jit.build_key("demo", [str(src)], ["2.11.0", "13.0"])
    assert key == jit.build_key("demo", [str(src)], ["2.11.0", "13.0"])
    assert key != jit.build_key("demo", [str(src)], ["2.11.0", "12.8"])
    src.write_text("int b;")
    assert key != jit.build_key("demo", [str(src)], ["2.11.0", "13.0"])


def test_jit_load_builds_once_into_the_cache_and_runs_the_op():
    """Uses the default cache (``$MMGEN_KERNELS_CACHE`` or ~/.cache/mmgen/kernels): the first run
    compiles one small file, later runs reuse it."""
    source = os.path.join(EXAMPLE, "experiments", "scale_op.cpp")
    module = mmgen.kernels.load("mmgen_scale_demo", [source])
    record = json.loads(module.build_info_json())
    assert record["module"] == "mmgen_scale_demo" and record["torch_version"] == torch.__version__
    assert runtime.library_build_record(module.__file__) == record  # the generated C function, as for op-only
    assert os.path.dirname(module.__file__).startswith(jit.cache_dir())
    x = torch.randn(4, 3)
    torch.testing.assert_close(torch.ops.mmgen_scale_demo.scale(x, 2.5), x * 2.5)
    again = mmgen.kernels.load("mmgen_scale_demo", [source])
    assert again.__file__ == module.__file__
    with pytest.raises(ValueError, match="name must be a Python identifier"):
        mmgen.kernels.load("not-a-name", [source])
    with pytest.raises(FileNotFoundError, match="sources not found"):
        mmgen.kernels.load("demo", ["/nonexistent/file.cpp"])


def test_jit_load_removes_the_lock_file_a_killed_build_left():
    """torch's build lock is a plain file; a build killed mid-way leaves it and torch would wait for
    it forever. mmgen.kernels.load holds an OS lock around the build and removes such a file."""
    import subprocess
    import sys
    source = os.path.join(EXAMPLE, "experiments", "scale_op.cpp")
    module = mmgen.kernels.load("mmgen_scale_demo", [source])
    stale = os.path.join(os.path.dirname(module.__file__), "lock")
    open(stale, "w").close()
    script = ("import mmgen.kernels, sys; m = mmgen.kernels.load('mmgen_scale_demo', [sys.argv[1]]); "
              "print(m.__file__)")
    done = subprocess.run([sys.executable, "-c", script, source], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "removing the lock file" in done.stderr and not os.path.exists(stale)
    assert done.stdout.strip() == module.__file__


# ---- the CLI -----------------------------------------------------------------------------------

def test_kernels_info_lists_mmgen_and_the_example_plugin(capsys):
    pytest.importorskip("mmgen_gumbel", reason="the example plugin is installed by scripts/install.sh test")
    code = cli.main(["kernels", "info", "--json"])
    found = json.loads(capsys.readouterr().out)
    by_module = {e["module"]: e for e in found["libraries"]}
    assert by_module["mmgen._C"]["loads"] is mmgen.ops.has_native()
    gumbel = by_module["mmgen_gumbel._C"]
    assert gumbel["loads"] and gumbel["owner"].startswith("gumbel (mmgen-gumbel 0.1.0)")
    assert gumbel["torch_version"] == torch.__version__
    assert {"gumbel_softmax_sample", "_gumbel_softmax_backward"} <= set(gumbel["ops"])
    assert code == (0 if all(e["loads"] for e in found["libraries"]) else 1)
    cli.main(["kernels", "info"])
    text = capsys.readouterr().out
    assert "mmgen_gumbel._C loads; built for torch" in text and "JIT cache" in text


def test_kernels_info_explains_a_library_that_does_not_load(capsys, monkeypatch):
    monkeypatch.setattr(runtime, "_LIBRARIES", [])
    runtime.NativeLibrary("mmgen_kernels_missing_plugin._C", project="missing-plugin")
    assert cli.main(["kernels", "info"]) == 1
    text = capsys.readouterr().out
    assert "missing-plugin: mmgen_kernels_missing_plugin._C DOES NOT LOAD" in text
    assert "why: ModuleNotFoundError" in text


def test_kernels_build_needs_a_setup_py(tmp_path, capsys):
    assert cli_error(capsys, ["kernels", "build", str(tmp_path)]) == (
        f"mmgen: error: kernels build: {tmp_path} has no setup.py (give the folder of the plugin, the one "
        "holding setup.py that calls mmgen.kernels.build.native_extension)")


@pytest.mark.skipif(torch.version.cuda is None, reason="needs a CUDA build of torch")
def test_kernels_build_stops_on_a_toolkit_torch_mismatch_before_compiling_when_cuda_is_forced(build_env, tmp_path,
                                                                                               capsys):
    root = _plugin_tree(tmp_path)
    build_env.setenv("FORCE_CUDA", "1")  # without it the build goes on, CPU kernels only (test above)
    build_env.setattr(build.torch_cpp_extension(), "CUDA_HOME", "/opt/old-cuda")
    build_env.setattr(build, "toolkit_version", lambda home: "11.8")
    assert cli_error(capsys, ["kernels", "build", str(root)]).startswith(
        f"mmgen: error: kernels build: CUDA toolkit 11.8 at /opt/old-cuda does not match torch {torch.__version__}")
    assert not (root / "build").exists()


def test_failure_summary_names_gcc_errors_and_linker_errors(tmp_path):
    output = (f"[1/2] c++ -c {tmp_path}/csrc/cpu/op.cpp\n"
              f"{tmp_path}/csrc/cpu/op.cpp:12:5: error: 'foo' was not declared in this scope\n"
              "   12 |     foo(x);\n      |     ^~~\nninja: build stopped\n")
    summary = diagnose.build_failure_summary(output, str(tmp_path))
    assert "compiler errors in 1 file: csrc/cpu/op.cpp" in summary
    assert "csrc/cpu/op.cpp:12: error: 'foo' was not declared in this scope" in summary and "foo(x);" in summary
    linked = diagnose.build_failure_summary("x.o: undefined reference to `bar()'\ncollect2: error: ld returned 1\n",
                                            str(tmp_path))
    assert "linker errors:" in linked and "undefined reference to `bar()'" in linked


@pytest.mark.skipif(build.torch_cpp_extension().CUDA_HOME is None or torch.version.cuda is None,
                    reason="needs the CUDA toolkit and a CUDA build of torch")
def test_kernels_build_reports_a_broken_cuda_file_and_mmgen_keeps_working(tmp_path):
    root = _plugin_tree(tmp_path)
    kernel = root / "csrc" / "cuda" / "gumbel_softmax_kernel.cu"
    text = kernel.read_text()
    anchor = "constexpr int kRowsPerBlock = 8;\n"
    kernel.write_text(text.replace(anchor, anchor + "constexpr int kBroken = undefined_gumbel_symbol;\n"))
    line = text[:text.index(anchor)].count("\n") + 2
    # MMGEN_CUDA=0 (a CPU-only developer build) would turn the CUDA sources off: this test compiles them
    env = {**{k: v for k, v in ENV.items() if k != "MMGEN_CUDA"}, "FORCE_CUDA": "1", "MAX_JOBS": "1"}
    out = subprocess.run([sys.executable, "-m", "mmgen", "kernels", "build", str(root)], capture_output=True,
                         text=True, env=env, timeout=1500)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "compiler errors in 1 file: csrc/cuda/gumbel_softmax_kernel.cu" in out.stdout, out.stdout
    assert f'csrc/cuda/gumbel_softmax_kernel.cu:{line}: error: identifier "undefined_gumbel_symbol" is undefined' \
        in out.stdout, out.stdout
    assert not list(root.glob("mmgen_gumbel/*.so"))
    check = ("import torch, mmgen\n"
             "mu = torch.randn(4, 3)\n"
             "torch.testing.assert_close(mmgen.ops.gaussian_kl(mu, mu), mmgen.ops.gaussian_kl(mu, mu, backend='reference'))\n"
             "print(mmgen.ops.has_native())")
    after = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, env=ENV, cwd=str(tmp_path))
    assert after.returncode == 0, after.stderr
    assert after.stdout.strip() == str(mmgen.ops.has_native())


ISA_LEVELS = ("baseline", "avx2", "avx512")


def test_cpu_isa_reports_a_level_and_can_be_forced_lower():
    """build_info()["cpu_isa"] is the level every ISA-dispatching CPU kernel runs at (one check of
    every extension of x86-64-v3 / v4 and of the OS's saved register state); MMGEN_CPU_ISA lowers
    it, never raises it, and a bad value is an error naming the accepted ones."""
    if not mmgen.ops.has_native():
        pytest.skip("needs the native extension")
    level = mmgen.ops.build_info()["cpu_isa"]
    assert level in ISA_LEVELS
    code = ("import json, torch, mmgen\n"
            "mu = torch.randn(3, 300, generator=torch.Generator().manual_seed(0))\n"
            "x, e = mu[:, :8].contiguous(), mu[0, :80].reshape(10, 8)\n"
            "z = mmgen.ops.reparameterize(mu, 0.5 * mu, generator=torch.Generator().manual_seed(1))\n"
            "print(json.dumps([mmgen.ops.build_info()['cpu_isa'], z.tolist(),\n"
            "                  mmgen.ops.vq_nearest(x, e)[0].tolist()]))\n")
    runs = {}
    for forced in ISA_LEVELS:
        env = {**ENV, "MMGEN_CPU_ISA": forced, "PYTHONPATH": ROOT}
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
        assert out.returncode == 0, out.stderr
        runs[forced] = json.loads(out.stdout)
        assert runs[forced][0] == ISA_LEVELS[min(ISA_LEVELS.index(forced), ISA_LEVELS.index(level))]
    for forced in ISA_LEVELS[1:]:  # every code path gives the same noise and the same codes
        torch.testing.assert_close(torch.tensor(runs[forced][1]), torch.tensor(runs["baseline"][1]),
                                   rtol=2e-6, atol=2e-6)
        assert runs[forced][2] == runs["baseline"][2]
    env = {**ENV, "MMGEN_CPU_ISA": "sse9", "PYTHONPATH": ROOT}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode != 0 and "MMGEN_CPU_ISA must be one of avx512, avx2, baseline, got 'sse9'" in out.stderr


def test_build_info_names_the_compiler():
    """build_info()["compiler"] is the C++ compiler of the loaded library, from its predefined
    macros (gcc or clang and a version), and `mmgen env` prints it on the native line."""
    if not mmgen.ops.has_native():
        pytest.skip("needs the native extension")
    compiler = mmgen.ops.build_info()["compiler"]
    assert re.fullmatch(r"(gcc|clang) \d+\.\d+\S*.*", compiler), compiler
    out = subprocess.run([sys.executable, "-m", "mmgen", "env"], capture_output=True, text=True,
                         env={**ENV, "PYTHONPATH": ROOT})
    assert out.returncode == 0, out.stderr
    assert compiler in out.stdout


# ---- CUDA inputs without CUDA kernels: an error that says how to rebuild, never a silent slow path --

def fake_cuda(*shape):
    """A CUDA tensor that needs no GPU: FakeTensorMode tensors carry a device but no data."""
    return torch.empty(*shape, device="cuda")


@pytest.mark.parametrize("loaded", [True, False], ids=["built-without-cuda", "not-loaded"])
def test_auto_on_cuda_inputs_without_cuda_kernels_raises_how_to_rebuild(monkeypatch, loaded):
    from torch._subclasses.fake_tensor import FakeTensorMode
    from mmgen import _extension
    from mmgen.ops import _dispatch
    monkeypatch.delenv("MMGEN_REQUIRE_NATIVE", raising=False)
    record = {k: v for k, v in mmgen.ops.build_info().items() if k != "native"}
    # what has_native() and build_info() (of _extension, which _dispatch uses) read
    monkeypatch.setattr(_extension, "_INFO", {**record, "cuda": False} if loaded else None)
    monkeypatch.setattr(_extension, "_ERROR", None if loaded else OSError("undefined symbol: _ZN3c10"))
    assert _dispatch.has_native() is loaded and _dispatch.build_info()["cuda"] is False
    why = (r"mmgen._C was built without CUDA kernels \(no CUDA toolkit or no CUDA torch at build time\)" if loaded
           else r"its extension mmgen._C did not load \(OSError: undefined symbol: _ZN3c10\)")
    with FakeTensorMode(), warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback warning either: an error
        mu, logvar = fake_cuda(4, 3), fake_cuda(4, 3)
        for backend in ("auto", "native"):
            with pytest.raises(RuntimeError, match=(
                    rf"mmgen.ops.gaussian_kl: the input is on CUDA, but mmgen has no CUDA kernel: {why}. Rebuild "
                    r"it with its CUDA kernels: `FORCE_CUDA=1 pip install --no-build-isolation -e \.` .*"
                    r"or pass backend='reference' to run the pure-PyTorch reference on purpose")):
                mmgen.ops.gaussian_kl(mu, logvar, backend=backend)
        with pytest.raises(RuntimeError, match="mmgen.ops.vq_nearest: the input is on CUDA"):
            mmgen.ops.vq_nearest(fake_cuda(5, 2), fake_cuda(3, 2))
        kl = mmgen.ops.gaussian_kl(mu, logvar, backend="reference")  # asked for: runs
        assert kl.device.type == "cuda" and kl.shape == (4,)
    info = _extension.fallbacks()
    assert info["cuda"].startswith("raise an error") and info["fix"].startswith(
        "`FORCE_CUDA=1 pip install" if loaded else "`pip install --no-build-isolation -e .`")
    assert info["cpu"] == ("run the native kernels" if loaded else
                           "run the pure-PyTorch reference (slower; one warning per op)")


def test_a_plugin_library_refuses_cuda_inputs_and_warns_per_op_on_cpu(monkeypatch):
    monkeypatch.delenv("MMGEN_REQUIRE_NATIVE", raising=False)
    monkeypatch.setattr(runtime, "_LIBRARIES", [])
    lib = runtime.NativeLibrary("mmgen_kernels_missing_plugin._C", project="demo")
    with pytest.raises(RuntimeError, match=r"demo.op: the input is on CUDA, but demo has no CUDA kernel: its extension "
                                           r"mmgen_kernels_missing_plugin._C did not load \(ModuleNotFoundError: .*\)\. "
                                           r"Rebuild it with its CUDA kernels: `FORCE_CUDA=1 mmgen kernels build "
                                           r"<path of demo>`"):
        lib.use_native("auto", "demo.op", torch.device("cuda", 0))
    cpu = torch.device("cpu")
    for op in ("demo.a", "demo.b"):  # one warning per op, each naming the cause
        with pytest.warns(runtime.NativeFallbackWarning, match=rf"{op}: .* because its extension "
                                                                r"mmgen_kernels_missing_plugin._C did not load"):
            assert lib.use_native("auto", op, cpu) is False
    assert lib.fallbacks()["reason"].startswith("its extension mmgen_kernels_missing_plugin._C did not load")
    lib.record, lib.error = {"torch_version": torch.__version__, "cuda": True}, None  # as if built with CUDA
    assert lib.fallbacks() == {"project": "demo", "module": "mmgen_kernels_missing_plugin._C",
                               "cpu": "run the native kernels", "cuda": "run the native kernels",
                               "reason": None, "fix": None}


def test_check_openmp_names_the_missing_header_and_the_fix(tmp_path):
    """A compiler whose -fopenmp finds no omp.h (clang without LLVM's OpenMP runtime) is refused
    before the build, with the package that fixes it; the compiler the build uses passes."""
    gxx = shutil.which("g++")
    if gxx is None or not torch.backends.openmp.is_available():
        pytest.skip("needs g++ and a torch built with OpenMP")
    build.check_openmp()  # the compiler of this build has omp.h
    fake = tmp_path / "clang++"  # a compiler that searches no system header folder
    fake.write_text(f"#!/bin/sh\nexec {gxx} -nostdinc \"$@\"\n")
    fake.chmod(0o755)
    with pytest.raises(build.BuildConfigError, match=r"cannot compile '#include <omp.h>'.*apt install libomp-dev"):
        build.check_openmp(str(fake))
