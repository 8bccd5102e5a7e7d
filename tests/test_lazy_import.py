"""`import mmgen` stays light: mmgen.models, .nn, .data, .train and .eval load on first access (PEP 562)."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAZY = ("models", "nn", "data", "train", "eval")


def test_import_mmgen_loads_no_subpackage_until_it_is_used():
    code = ("import sys, mmgen\n"
            f"lazy = ['mmgen.' + name for name in {LAZY!r}]\n"
            "print(sorted(m for m in lazy if m in sys.modules))\n"
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
        "[]", "True", "mmgen.models.vae True", "mmgen.nn mmgen.data Trainer mmgen.eval", "True",
        "module 'mmgen' has no attribute 'no_such_thing'"]
