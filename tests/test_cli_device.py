"""`mmgen sample --device` and `mmgen eval --device`: the run's model is loaded on that device (the
noise generator too); CUDA cases run where a GPU is visible."""
import json
import math

import pytest

from conftest import DEVICES
from mmgen import cli

pytestmark = pytest.mark.plugins("image")

pytest.importorskip("sklearn")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("device") / "run"
    assert cli.main(["train", "--preset", "vae-digits", "--out", str(out), "--set", "train.steps=3",
                     "--set", "train.batch_size=16", "--set", "eval.k=2", "--set", "eval.max_examples=8"]) == 0
    return out


@pytest.mark.parametrize("device", DEVICES)
def test_sample_and_eval_on_a_device(run_dir, device, tmp_path, capsys):
    png = tmp_path / f"samples-{device}.png"
    assert cli.main(["sample", str(run_dir), "-n", "4", "--device", device, "--out", str(png)]) == 0
    assert png.stat().st_size > 100
    capsys.readouterr()
    assert cli.main(["eval", str(run_dir), "--device", device, "--k", "2", "--max-examples", "8"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["examples"] == 8 and math.isfinite(metrics["elbo"])
    assert json.loads((run_dir / "eval_val.json").read_text()) == metrics


def test_the_same_seed_draws_the_same_samples_on_cpu(run_dir, tmp_path):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    assert cli.main(["sample", str(run_dir), "-n", "4", "--seed", "3", "--device", "cpu", "--out", str(a)]) == 0
    assert cli.main(["sample", str(run_dir), "-n", "4", "--seed", "3", "--out", str(b)]) == 0  # cpu: the default
    assert a.read_bytes() == b.read_bytes()


def test_training_ends_with_its_evaluation_on_the_training_device(tmp_path, monkeypatch):
    """runs.train hands the trainer's device to the final evaluation (CUDA is stood in for by a
    trainer whose fit() is stubbed: nothing runs on it, the device is only passed through)."""
    import torch
    from mmgen import presets, record, runs
    calls = []
    monkeypatch.setattr(runs, "evaluate", lambda run_dir, split="val", **kw: calls.append((split, kw)) or {})
    config = runs.apply_overrides(presets.get("vae-digits"), ["train.steps=2", "train.batch_size=16",
                                                              "train.progress=false"])
    runs.train(config, str(tmp_path / "cpu"))
    assert calls == [("val", {"strict": False, "device": "cpu", "progress": False})]
    trainer = runs.prepare(config, str(tmp_path / "gpu"))
    trainer.device = torch.device("cuda", 1)
    monkeypatch.setattr(trainer, "fit", lambda: {})
    calls.clear()
    runs.train(config, str(tmp_path / "gpu"), trainer=trainer)
    assert calls == [("val", {"strict": False, "device": "cuda:1", "progress": False})]
    # mmgen record evaluates its other splits on the training device as well
    monkeypatch.setattr(runs, "train", lambda *args, **kw: None)
    calls.clear()
    record.run_seed(config, 0, str(tmp_path / "rec"), device="cuda:1", splits=("test",), log=lambda line: None)
    assert calls == [("test", {"device": "cuda:1", "sampling": None})]
