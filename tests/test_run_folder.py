"""`mmgen train --out DIR` never trains over a run silently: a folder holding a run is refused unless
`--resume` (continue from its latest checkpoint) or `--overwrite` (delete it, start at step 0; never
a folder that is not a run). `Trainer(resume=False | True | "auto")` is the same choice in Python."""
import json

import pytest
import torch

from helpers import cli_error, cli_usage_error
from mmgen import cli, runs
from mmgen.data import load
from mmgen.train import RunExistsError, Trainer

pytestmark = pytest.mark.plugins("image")

pytest.importorskip("sklearn")

TINY = ["--set", "train.batch_size=16", "--set", "train.checkpoint_every=2", "--set", "train.log_every=1",
        "--set", "train.progress=false", "--set", "eval.k=2", "--set", "eval.max_examples=8",
        "--set", "model.encoder.hidden=8", "--set", "model.decoder.hidden=8"]


def train(out, steps, *flags):
    return cli.main(["train", "--preset", "vae-digits", "--out", str(out), "--set", f"train.steps={steps}",
                     *TINY, *flags])


def logged_steps(out):
    return [r["step"] for r in map(json.loads, open(out / "metrics.jsonl")) if "loss" in r]


@pytest.fixture
def run4(tmp_path):
    """A finished 4-step run (checkpoints at steps 2 and 4)."""
    out = tmp_path / "runs" / "x"
    assert train(out, 4) == 0
    return out


def test_a_folder_holding_a_run_is_refused_without_resume_or_overwrite(run4, capsys):
    before = (run4 / "metrics.jsonl").read_text()
    assert cli_error(capsys, ["train", "--preset", "vae-digits", "--out", str(run4), "--set", "train.steps=6", *TINY]) == (
        f"mmgen: error: train: {run4} already holds a run (step 4 of 4, finished); pass --resume to "
        "continue it or --overwrite to start again")
    assert (run4 / "metrics.jsonl").read_text() == before  # untouched
    # run.json alone (stopped before its first checkpoint) is a run too
    only_config = run4.parent / "y"
    only_config.mkdir()
    (only_config / "run.json").write_text((run4 / "run.json").read_text())
    assert cli_error(capsys, ["train", "--preset", "vae-digits", "--out", str(only_config), *TINY]).endswith(
        f"{only_config} already holds a run (step 0 of 4, no checkpoint yet); pass --resume to continue it "
        "or --overwrite to start again")
    # so is a folder that Trainer wrote checkpoints into (no run.json)
    with pytest.raises(RunExistsError, match=r"step 4 of 4"):
        runs.check_run_folder(str(run4))


def test_resume_continues_at_the_latest_checkpoint(run4, capsys):
    assert train(run4, 6, "--resume") == 0
    assert logged_steps(run4) == [1, 2, 3, 4, 5, 6]
    events = [r for r in map(json.loads, open(run4 / "metrics.jsonl")) if r.get("event") == "resumed"]
    assert events == [{"event": "resumed", "from": "step-000004", "processes": 1, "processes_before": 1}]
    state = torch.load(run4 / "checkpoints" / "step-000006" / "training_state.pt", weights_only=True)
    assert state["step"] == 6


def test_resume_needs_a_checkpoint(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    for folder, what in ((tmp_path / "nope", "it does not exist"), (empty, "it holds no run")):
        assert cli_error(capsys, ["train", "--preset", "vae-digits", "--out", str(folder), "--resume", *TINY]) == (
            f"mmgen: error: train: {folder} holds no checkpoint to resume ({what})")
    (empty / "run.json").write_text("{}")
    assert "holds no checkpoint to resume (it holds a run (step 0 of 1000, no checkpoint yet); pass --overwrite" in cli_error(
        capsys, ["train", "--preset", "vae-digits", "--out", str(empty), "--resume", *TINY])
    assert not (tmp_path / "nope").exists()


def test_overwrite_deletes_the_run_and_starts_at_step_zero(run4, capsys):
    (run4 / "eval_test.json").write_text("{}")  # of the old model: must not survive
    assert train(run4, 2, "--overwrite") == 0
    assert f"--overwrite: deleting the run in {run4} (step 4 of 4, finished)" in capsys.readouterr().err
    assert logged_steps(run4) == [1, 2]
    assert not any(r.get("event") == "resumed" for r in map(json.loads, open(run4 / "metrics.jsonl")))
    assert sorted(p.name for p in (run4 / "checkpoints").iterdir()) == ["latest", "step-000002"]
    assert not (run4 / "eval_test.json").exists()
    assert json.loads((run4 / "run.json").read_text())["train"]["steps"] == 2


def test_overwrite_refuses_a_folder_that_is_not_a_run(tmp_path, capsys):
    mine = tmp_path / "mine"
    (mine / "photos").mkdir(parents=True)
    (mine / "notes.txt").write_text("keep me")
    assert cli_error(capsys, ["train", "--preset", "vae-digits", "--out", str(mine), "--overwrite", *TINY]) == (
        f"mmgen: error: train: {mine} is not a mmgen run folder (it holds notes.txt, photos/, but no run.json "
        "and no checkpoints/): --overwrite deletes only runs; choose another --out")
    assert (mine / "notes.txt").read_text() == "keep me" and (mine / "photos").is_dir()
    with pytest.raises(FileExistsError, match="not a mmgen run folder"):
        runs.clear_run_folder(str(mine))
    assert (mine / "notes.txt").exists()


def test_an_empty_or_new_folder_just_starts_with_either_flag_or_none(tmp_path):
    (tmp_path / "empty").mkdir()
    assert train(tmp_path / "empty", 2) == 0
    assert train(tmp_path / "new", 2, "--overwrite") == 0  # nothing to delete
    assert logged_steps(tmp_path / "empty") == logged_steps(tmp_path / "new") == [1, 2]


def test_resume_and_overwrite_together_is_a_usage_error(tmp_path, capsys):
    assert cli_usage_error(capsys, ["train", "--preset", "vae-digits", "--out", str(tmp_path), "--resume",
                                    "--overwrite"]) == \
        "mmgen train: error: argument --overwrite: not allowed with argument --resume"
    with pytest.raises(ValueError, match="resume and overwrite do not go together"):
        runs.check_run_folder(str(tmp_path), resume=True, overwrite=True)


def test_dry_run_says_what_becomes_of_the_run_folder(run4, capsys):
    assert train(run4, 6, "--resume", "--dry-run") == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"run:      resumes the run in {run4} (step 4 of 4, finished)"
    assert train(run4, 6, "--overwrite", "--dry-run") == 0
    assert capsys.readouterr().out.splitlines()[-1] == (
        f"run:      deletes the run in {run4} (step 4 of 4, finished) and starts at step 0")
    assert (run4 / "checkpoints" / "step-000004").is_dir()  # a dry run deletes nothing


def tiny_vae():
    from mmgen.models import VAE
    enc = {"name": "image.conv", "in_channels": 1, "size": 8, "out_features": 16, "hidden": 8}
    dec = {"name": "image.conv", "in_features": 4, "out_channels": 1, "size": 8, "params_per_channel": 17,
           "hidden": 8}
    return VAE(enc, dec, latent_dim=4, likelihood={"name": "categorical", "levels": 17})


def test_trainer_resume_false_true_auto(tmp_path):
    data = load("digits", "train")
    config = {"steps": 2, "batch_size": 16, "checkpoint_every": 1, "progress": False}
    run = str(tmp_path / "run")
    with pytest.raises(FileNotFoundError, match=r"resume=True, but .*run holds no checkpoint to resume"):
        Trainer(tiny_vae(), data, run_dir=run, config=config, resume=True).fit()
    Trainer(tiny_vae(), data, run_dir=run, config=config).fit()  # the default, False: a new run
    with pytest.raises(RunExistsError, match=r"run already holds a run \(checkpoint step 2\); pass resume=True"):
        Trainer(tiny_vae(), data, run_dir=run, config={**config, "steps": 3}).fit()
    trainer = Trainer(tiny_vae(), data, run_dir=run, config={**config, "steps": 3}, resume="auto")
    trainer.fit()
    assert trainer.step == 3
    fresh = Trainer(tiny_vae(), data, run_dir=str(tmp_path / "other"), config=config, resume="auto")
    fresh.fit()  # "auto" without a checkpoint: starts
    assert fresh.step == 2
    for bad in ("yes", 1, None):
        with pytest.raises(ValueError, match=r"resume must be False \(a new run\), True .* or 'auto'"):
            Trainer(tiny_vae(), data, run_dir=run, resume=bad)
