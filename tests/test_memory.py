"""mmgen.memory.keep_freed_memory (glibc keeps freed blocks for the next step or pass instead of
returning them to the OS): applied once per process, left alone where the user tuned malloc, and
turned on by the trainer on the CPU."""
import os
import subprocess
import sys

import pytest
import torch

from mmgen.train import Trainer

CALL = "import mmgen.memory as m; print(m.keep_freed_memory(), m.keep_freed_memory())"


def keep_in_a_new_process(**env) -> str:
    out = subprocess.run([sys.executable, "-c", CALL], capture_output=True, text=True,
                         env={**os.environ, **env}, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_applied_once_unless_the_user_tuned_malloc():
    clean = {k: v for k, v in os.environ.items() if k not in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_",
                                                               "GLIBC_TUNABLES")}
    out = subprocess.run([sys.executable, "-c", CALL], capture_output=True, text=True, env=clean, timeout=120)
    assert out.stdout.strip() == "True True", out.stderr
    assert keep_in_a_new_process(MALLOC_TRIM_THRESHOLD_="131072") == "False False"
    assert keep_in_a_new_process(GLIBC_TUNABLES="glibc.malloc.trim_threshold=131072") == "False False"


class Squares(torch.nn.Linear):
    def __init__(self):
        super().__init__(3, 1)

    def loss(self, x):
        return self(x).pow(2).mean()


def test_the_trainer_keeps_freed_memory_on_the_cpu(monkeypatch, tmp_path):
    import mmgen.train.trainer as trainer_module
    calls = []
    monkeypatch.setattr(trainer_module, "keep_freed_memory", lambda: calls.append(1) or True)
    monkeypatch.setattr(Trainer, "_fit", lambda self: {})
    Trainer(Squares(), [torch.zeros(2, 3)] * 64, run_dir=str(tmp_path), config={"steps": 1}).fit()
    assert calls == [1]
