"""`mmgen presets list` and `mmgen presets show NAME`: the show output is a run config that
`mmgen train FILE` accepts back."""
import json

import pytest

from helpers import cli_error
from mmgen import cli, presets


def test_list_prints_every_preset_with_its_description(capsys):
    assert cli.main(["presets", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == sorted(presets.PRESETS)
    for line in lines:
        name = line.split()[0]
        assert line[len(name):].strip() == presets.PRESETS[name]["description"]
    assert cli.main(["train", "--list-presets"]) == 0  # the same listing
    assert capsys.readouterr().out.splitlines() == lines


@pytest.mark.parametrize("name", sorted(presets.PRESETS))
def test_show_prints_the_preset_as_json(name, capsys):
    assert cli.main(["presets", "show", name]) == 0
    assert json.loads(capsys.readouterr().out) == presets.get(name)


def test_an_unknown_preset_is_named_with_the_available_ones(capsys):
    line = cli_error(capsys, ["presets", "show", "vae-cifar"])
    assert line == ("mmgen: error: presets show: unknown preset 'vae-cifar'; available: "
                    + ", ".join(sorted(presets.PRESETS)))


@pytest.mark.plugins("image")
def test_the_shown_config_trains(tmp_path, capsys):
    pytest.importorskip("sklearn")
    assert cli.main(["presets", "show", "vae-digits"]) == 0
    config = tmp_path / "vae-digits.json"
    config.write_text(capsys.readouterr().out)
    out = tmp_path / "run"
    assert cli.main(["train", str(config), "--out", str(out), "--set", "train.steps=3", "--set", "train.batch_size=16",
                     "--set", "eval.k=2", "--set", "eval.max_examples=8"]) == 0
    saved = json.loads((out / "run.json").read_text())
    assert saved["model"] == presets.get("vae-digits")["model"] and saved["train"]["steps"] == 3
    assert (out / "model" / "model.safetensors").exists()
    assert json.loads((out / "eval_val.json").read_text())["examples"] == 8
