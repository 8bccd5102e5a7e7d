"""`import mmgen` stays light: mmgen.ops, .models, .nn, .data, .train and .eval load on first access (PEP
562), torch with them; `mmgen --help` and `mmgen --version` import no command and not torch."""
import ast
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAZY = ("ops", "models", "nn", "data", "train", "eval")


def test_import_mmgen_loads_no_subpackage_until_it_is_used():
    code = ("import sys, mmgen\n"
            f"lazy = ['mmgen.' + name for name in {LAZY!r}]\n"
            "print(sorted(m for m in lazy if m in sys.modules), 'torch' in sys.modules)\n"
            f"print(all(name in dir(mmgen) for name in {LAZY!r}))\n"
            "print(mmgen.models.VAE.__module__, 'mmgen.models' in sys.modules)\n"
            "print(mmgen.nn.__name__, mmgen.data.__name__, mmgen.train.Trainer.__name__, mmgen.eval.__name__)\n"
            "from mmgen import models\n"
            "print(models is mmgen.models)\n"
            "try:\n    mmgen.no_such_thing\nexcept AttributeError as exc:\n    print(exc)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "[] False", "True", "mmgen.models.vae True", "mmgen.nn mmgen.data Trainer mmgen.eval", "True",
        "module 'mmgen' has no attribute 'no_such_thing'"]


def imported_by(argv: list[str]) -> tuple[int, list[str]]:
    """Run ``mmgen ARGV`` as ``python -m mmgen`` does (runpy) in a fresh interpreter; its exit code
    and the modules of torch and mmgen it imported."""
    code = ("import runpy, sys\n"
            f"sys.argv = ['mmgen', *{argv!r}]\n"
            "try:\n    runpy.run_module('mmgen', run_name='__main__', alter_sys=True)\n"
            "except SystemExit as exc:\n    code = exc.code\n"
            "print(code, sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'mmgen')), file=sys.stderr)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1"}, timeout=300)
    code, modules = out.stderr.strip().splitlines()[-1].split(" ", 1)
    return int(code), ast.literal_eval(modules)


def test_mmgen_help_and_version_import_neither_torch_nor_any_command():
    for argv in (["--help"], ["--version"]):
        code, modules = imported_by(argv)
        assert code == 0
        assert not any(m == "torch" or m.startswith("torch.") for m in modules), (argv, modules)
        assert modules == ["mmgen", "mmgen.cli", "mmgen.hookspecs", "mmgen.plugins"], (argv, modules)


def test_a_command_imports_only_its_own_module():
    code, modules = imported_by(["presets", "list"])
    assert code == 0
    assert [m for m in modules if m.startswith("mmgen.commands.")] == ["mmgen.commands.presets"]
    code, modules = imported_by(["train", "--help"])  # its help lists TrainConfig's options: torch is fine
    assert code == 0 and "mmgen.commands.train" in modules and "mmgen.commands.sample" not in modules
