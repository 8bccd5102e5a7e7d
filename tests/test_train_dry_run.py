"""`mmgen train --dry-run`: the config is loaded, overridden and built as training would (data,
model, trainer), a summary is printed, and nothing is written: the run folder is not created."""
import json
import re

import pytest

from helpers import cli_error
from mmgen import cli, presets, runs

pytestmark = pytest.mark.plugins("image")

pytest.importorskip("sklearn")


def test_dry_run_summarizes_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "runs" / "vae"
    assert cli.main(["train", "--preset", "vae-digits", "--out", str(out), "--dry-run",
                     "--set", "train.steps=30", "--set", "train.batch_size=32"]) == 0
    printed = capsys.readouterr().out.splitlines()
    trainer = runs.prepare(runs.apply_overrides(presets.get("vae-digits"), ["train.steps=30"]), str(out))
    parameters = sum(p.numel() for p in trainer.model.parameters())
    assert printed == [
        f"dry run: the config is valid; nothing was trained or written ({out} untouched)",
        "config:   preset vae-digits with train.steps=30, train.batch_size=32",
        f"model:    VAE (vae), {parameters:,} parameters",
        "data:     digits: train 1,297, val 200 examples",
        "training: 30 steps of batch 32 (0.7 epochs) on cpu",
        f"run:      a new run in {out}"]
    assert not (tmp_path / "runs").exists()


def test_dry_run_of_a_config_file_reports_its_errors(tmp_path, capsys):
    config = tmp_path / "run.json"
    config.write_text(json.dumps(presets.get("vae-digits")))
    out = tmp_path / "run"
    assert cli.main(["train", str(config), "--out", str(out), "--dry-run"]) == 0
    assert re.search(rf"^config:   config {re.escape(str(config))}$", capsys.readouterr().out, re.M)
    line = cli_error(capsys, ["train", str(config), "--out", str(out), "--dry-run", "--set", "model.latent_dim=-3"])
    assert line.startswith("mmgen: error: train: run config model: ")
    line = cli_error(capsys, ["train", str(config), "--out", str(out), "--dry-run", "--set", "train.batch_size=5000"])
    assert line == ("mmgen: error: train: run config train: training option batch_size=5000 is larger than the "
                    "training data (1297 examples)")
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["run.json"]


def test_the_dry_run_example_of_docs_cli_md_is_what_mmgen_prints(capsys, monkeypatch, tmp_path):
    import pathlib
    import shlex
    doc = (pathlib.Path(__file__).resolve().parents[1] / "docs" / "cli.md").read_text()
    block = next(b for b in doc.split("```bash\n")[1:] if b.startswith("$ python -m mmgen train")).split("```")[0]
    command, *expected = block.strip().splitlines()
    monkeypatch.chdir(tmp_path)
    assert cli.main(shlex.split(command)[4:]) == 0
    assert capsys.readouterr().out.splitlines() == expected
    assert not (tmp_path / "runs").exists()
