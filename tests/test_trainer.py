import json
import math
import os

import pytest
import torch

from mmgen import cli, runs
from mmgen.data import load
from mmgen.train import CheckpointError, Trainer, TrainingDiverged
from test_vae import digits_vae

pytestmark = pytest.mark.plugins("image")

pytest.importorskip("sklearn")

FAST = {"batch_size": 32, "lr": 3e-3, "log_every": 5, "eval_every": 10, "sample_every": 10,
        "checkpoint_every": 10, "seed": 4}


def params(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_resume_continues_the_identical_trajectory(tmp_path):
    data, val = load("digits", "train"), load("digits", "val")
    torch.manual_seed(0)
    straight = digits_vae()
    init = {k: v.clone() for k, v in straight.state_dict().items()}
    Trainer(straight, data, val_data=val, run_dir=str(tmp_path / "a"), config={**FAST, "steps": 60}).fit()

    half = digits_vae()
    half.load_state_dict(init)
    Trainer(half, data, val_data=val, run_dir=str(tmp_path / "b"), config={**FAST, "steps": 30}).fit()
    resumed = digits_vae()  # fresh process state: new model, new trainer, same run folder
    torch.manual_seed(123)
    Trainer(resumed, data, val_data=val, run_dir=str(tmp_path / "b"), config={**FAST, "steps": 60},
            resume=True).fit()
    assert torch.equal(params(straight), params(resumed))
    log = [json.loads(line) for line in open(tmp_path / "b" / "metrics.jsonl")]
    assert any(r.get("event") == "resumed" for r in log)
    assert os.path.exists(tmp_path / "b" / "samples" / "step-000060.png")


def test_damaged_checkpoint_gives_a_clear_error_and_is_kept(tmp_path):
    data = load("digits", "train")
    run = tmp_path / "run"
    Trainer(digits_vae(), data, run_dir=str(run), config={**FAST, "steps": 10}).fit()
    weights = run / "checkpoints" / "step-000010" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="corrupted or truncated"):
        Trainer(digits_vae(), data, run_dir=str(run), config={**FAST, "steps": 20}, resume=True).fit()
    assert weights.stat().st_size == 100  # not overwritten silently


class Exploding(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(1))
        self.config = {"model": "exploding"}
        self.calls = 0

    def loss(self, x):
        self.calls += 1
        return self.w.sum() * (float("nan") if self.calls == 7 else 1.0)

    def save_pretrained(self, path):
        os.makedirs(path, exist_ok=True)
        torch.save(self.state_dict(), os.path.join(path, "w.pt"))


def test_nan_loss_stops_or_skips_by_config(tmp_path):
    data = load("digits", "train")
    with pytest.raises(TrainingDiverged, match="step 7.*step-000005"):
        Trainer(Exploding(), data, run_dir=str(tmp_path / "stop"),
                config={**FAST, "steps": 20, "checkpoint_every": 5}).fit()
    model = Exploding()
    trainer = Trainer(model, data, run_dir=str(tmp_path / "skip"),
                      config={**FAST, "steps": 10, "nan_policy": "skip"})
    trainer.fit()
    assert trainer.skipped == 1 and trainer.step == 10


def test_bad_training_options_name_the_key():
    with pytest.raises(ValueError, match="optimizer='adamax'"):
        Trainer(digits_vae(), load("digits", "train"), run_dir="unused", config={"optimizer": "adamax"})
    with pytest.raises(ValueError, match=r"unknown training option\(s\) \['stpes'\]"):
        Trainer(digits_vae(), load("digits", "train"), run_dir="unused", config={"stpes": 3})


def test_cli_train_sample_eval(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert cli.main(["train", "--preset", "vae-digits", "--out", out, "--set", "train.steps=20",
                     "--set", "eval.k=8", "--set", "model.encoder.hidden=16",
                     "--set", "model.decoder.hidden=16"]) == 0
    metrics = json.load(open(os.path.join(out, "eval_val.json")))     # training ends on val, not test
    assert not os.path.exists(os.path.join(out, "eval_test.json"))
    assert metrics["split"] == "val" and metrics["examples"] == 200 and metrics["nll_iwae_k8"] < metrics["uniform_nll"] + 50
    assert cli.main(["sample", out, "-n", "9"]) == 0
    assert os.path.getsize(os.path.join(out, "samples", "sample-seed0.png")) > 100
    assert cli.main(["eval", out, "--k", "4", "--max-examples", "50"]) == 0
    printed = capsys.readouterr().out
    assert '"nll_iwae_k4"' in printed and '"examples": 50' in printed
    with pytest.raises(ValueError, match="unknown preset 'vae-cifar'"):
        runs.load_config("vae-cifar")


def test_progress_is_a_line_per_logged_step_on_stderr_unless_disabled(tmp_path, capsys):
    data = load("digits", "train")
    Trainer(digits_vae(), data, run_dir=str(tmp_path / "on"), config={**FAST, "steps": 10}).fit()
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.startswith("step ")]
    assert [line.split()[1] for line in lines] == ["5/10", "10/10"] and "loss" in lines[0]
    assert "step " not in captured.out
    Trainer(digits_vae(), data, run_dir=str(tmp_path / "off"), config={**FAST, "steps": 10, "progress": False}).fit()
    assert "step " not in capsys.readouterr().err


def test_progress_bar_uses_tqdm_on_a_terminal():
    pytest.importorskip("tqdm")
    import io
    from mmgen.train.progress import Progress

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    stream = Terminal()
    bar = Progress(8, 2, stream=stream)
    for step in range(3, 9):
        bar.update(step, {"step": step, "loss": 1.5} if step % 4 == 0 else None)
    bar.close()
    assert bar.bar is not None and "8/8" in stream.getvalue() and "loss 1.5000" in stream.getvalue()
    assert Progress(8, 0, stream=Terminal(), enabled=False).bar is None


def test_validation_passes_labels_to_label_conditioned_models(tmp_path):
    from mmgen.models import CVAE, M2
    enc = {"name": "image.conv", "in_channels": 1, "size": 8, "out_features": 32, "hidden": 8}
    dec = {"name": "image.conv", "in_features": 14, "out_channels": 1, "size": 8, "params_per_channel": 17,
           "hidden": 8}
    likelihood = {"name": "categorical", "levels": 17}
    data, val = load("digits", "train"), load("digits", "val")
    for name, model in (("cvae", CVAE(enc, dec, num_classes=10, latent_dim=4, likelihood=likelihood)),
                        ("m2", M2(enc, dec, enc, num_classes=10, latent_dim=4, likelihood=likelihood))):
        Trainer(model, data, val_data=val, run_dir=str(tmp_path / name),
                config={**FAST, "steps": 2, "eval_every": 2}).fit()
        record = [json.loads(line) for line in open(tmp_path / name / "metrics.jsonl") if "val_loss" in line][-1]
        assert 0 < record["val_loss"] < 64 * math.log(17) * 2, record  # nats, near the uniform 181
        model.eval()
        if name == "m2":  # the classifier's error on the labelled validation split
            expected = (model.classify(val.x) != val.y).float().mean().item()
            assert record["val_error"] == pytest.approx(expected)
        else:  # without labels the CVAE's loss fails: validation must have passed them
            assert "val_error" not in record
            with pytest.raises(ValueError, match="needs the labels"):
                model.loss(val.x[:4])


def test_each_process_gets_a_contiguous_share_of_every_field(tmp_path):
    trainer = Trainer(digits_vae(), load("digits", "train"), run_dir=str(tmp_path))
    batch = {"image": torch.arange(10).view(5, 2), "captions": list("abcde"), "y": torch.arange(5), "k": 3}
    shares = []
    for rank in (0, 1):
        trainer.rank, trainer.world = rank, 2  # as under torchrun with 2 processes
        shares.append(trainer._shard(batch))
    assert [s["captions"] for s in shares] == [["a", "b"], ["c", "d", "e"]]
    assert torch.equal(torch.cat([s["image"] for s in shares]), batch["image"])
    assert [s["y"].tolist() for s in shares] == [[0, 1], [2, 3, 4]] and shares[1]["k"] == 3
