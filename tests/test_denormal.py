"""Flush-to-zero of denormal floats on every CPU thread (mmgen.ops.flush_denormal), and training and
evaluation (and sampling) running under it."""
import argparse

import pytest
import torch

from mmgen import ops, runs
from mmgen.commands import sample
from mmgen.ops.denormal import denormal_floats, denormals_flushed, set_flush_denormal
from mmgen.train import Trainer


@pytest.fixture
def two_threads():
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    set_flush_denormal(False)
    torch.set_num_threads(threads)


def surviving_denormals() -> int:
    """Denormals left by an elementwise op that runs on both threads of the pool (half each)."""
    return int((denormal_floats(1 << 22) * 1.0).count_nonzero())


@pytest.mark.skipif(not ops.has_native(), reason="the native library sets the pool threads' mode")
def test_every_pool_thread_flushes(two_threads):
    assert surviving_denormals() == 1 << 22  # IEEE gradual underflow by default
    torch.set_flush_denormal(True)  # PyTorch's switch: the calling thread only
    assert denormals_flushed() and 0 < surviving_denormals() < 1 << 22
    torch.set_flush_denormal(False)
    assert set_flush_denormal(True) == "all threads"
    assert surviving_denormals() == 0
    assert set_flush_denormal(False) == "all threads"
    assert not denormals_flushed() and surviving_denormals() == 1 << 22


def test_context_restores_the_previous_mode(two_threads):
    assert not denormals_flushed()
    with ops.flush_denormal():
        assert denormals_flushed()
        assert (denormal_floats(8) + 0.0).count_nonzero() == 0
    assert not denormals_flushed()
    assert (denormal_floats(8) + 0.0).count_nonzero() == 8
    set_flush_denormal(True)
    with ops.flush_denormal():
        pass
    assert denormals_flushed()  # it was on before: left on
    set_flush_denormal(False)
    with ops.flush_denormal(False):
        assert not denormals_flushed()


def test_bad_switch_names_the_value():
    with pytest.raises(TypeError, match="True or False, got 'yes'"):
        set_flush_denormal("yes")


class Squares(torch.nn.Linear):
    def __init__(self):
        super().__init__(3, 1)

    def loss(self, x):
        return self(x).pow(2).mean()


@pytest.mark.parametrize("option", [True, False])
def test_training_and_evaluation_run_flushed_unless_turned_off(monkeypatch, tmp_path, two_threads, option):
    data = [torch.zeros(2, 3)] * 64
    monkeypatch.setattr(Trainer, "_fit", lambda self: {"flushed": denormals_flushed()})
    trainer = Trainer(Squares(), data, run_dir=str(tmp_path), config={"flush_denormal": option})
    assert trainer.fit() == {"flushed": option}
    assert not denormals_flushed()
    monkeypatch.setattr(runs, "read_run_config", lambda run_dir: {"train": {"flush_denormal": option}})
    monkeypatch.setattr(runs, "_evaluate", lambda *args, **kwargs: {"flushed": denormals_flushed()})
    assert runs.evaluate(str(tmp_path), "val") == {"flushed": option}
    assert not denormals_flushed()
    monkeypatch.setattr(sample, "_sample", lambda *args: int(denormals_flushed()))
    assert sample.run(argparse.Namespace(n=1, device="cpu", run_dir=str(tmp_path))) == int(option)
    assert not denormals_flushed()


def test_training_option_is_checked(tmp_path):
    with pytest.raises(ValueError, match="flush_denormal='no' must be bool"):
        Trainer(Squares(), [torch.zeros(2, 3)] * 64, run_dir=str(tmp_path), config={"flush_denormal": "no"})
