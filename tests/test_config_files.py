"""Run config files: JSON or YAML (.yaml / .yml) wherever a config file is accepted (runs.load_config:
mmgen train CONFIG, mmgen record CONFIG), and clear errors for a file that holds no mapping."""
import json

import pytest

from helpers import cli_error
from mmgen import presets, runs

yaml = pytest.importorskip("yaml")


@pytest.mark.parametrize("suffix", [".yaml", ".yml"])
def test_a_yaml_config_loads_as_its_json_twin(tmp_path, suffix):
    config = presets.get("vae-digits")
    path = tmp_path / f"run{suffix}"
    path.write_text(yaml.safe_dump(config))
    assert runs.load_config(str(path)) == config


def test_yaml_exponents_are_numbers_as_in_json(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("data: {name: digits}\nmodel: {model: vae}\n"
                    "train: {lr: 1e-3, weight_decay: 2.5E-4, steps: 1e3, seed: 0, device: cpu, tag: 1e}\n")
    train = runs.load_config(str(path))["train"]
    assert train == {"lr": 1e-3, "weight_decay": 2.5e-4, "steps": 1000.0, "seed": 0, "device": "cpu", "tag": "1e"}
    assert isinstance(train["lr"], float) and isinstance(train["seed"], int)


@pytest.mark.parametrize("name, text, kind", [("run.yaml", "- data\n- model\n", "list"),
                                              ("run.yml", "just a string\n", "str"),
                                              ("run.json", "[1, 2]", "list"),
                                              ("empty.yaml", "", "NoneType")])
def test_a_file_whose_top_level_is_not_a_mapping_says_so(tmp_path, name, text, kind):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ValueError, match=rf"^{path}: the top level of a run config must be a mapping of sections "
                                         rf"\['description', 'data', 'model', 'train', 'eval'\], got {kind}"):
        runs.load_config(str(path))


def test_broken_and_missing_files(tmp_path, capsys):
    path = tmp_path / "run.yaml"
    path.write_text("data: {name: digits\nmodel: [\n")
    with pytest.raises(ValueError, match=rf"^{path} is not valid YAML: "):
        runs.load_config(str(path))
    with pytest.raises(FileNotFoundError, match=r"run config file 'nope.yml' does not exist .*presets: "):
        runs.load_config("nope.yml")
    assert cli_error(capsys, ["train", str(tmp_path / "nope.yaml"), "--out", str(tmp_path / "run")]).startswith(
        f"mmgen: error: train: run config file '{tmp_path / 'nope.yaml'}' does not exist")


@pytest.mark.plugins("image")
def test_mmgen_train_takes_a_yaml_config(tmp_path, capsys):
    pytest.importorskip("sklearn")
    from mmgen import cli
    path = tmp_path / "vae.yaml"
    path.write_text(yaml.safe_dump(runs.apply_overrides(presets.get("vae-digits"), [
        "train.steps=3", "train.batch_size=16", "eval.k=2", "eval.max_examples=8"])))
    out = tmp_path / "run"
    assert cli.main(["train", str(path), "--out", str(out)]) == 0
    assert json.loads((out / "run.json").read_text()) == runs.load_config(str(path))
    assert json.loads((out / "eval_val.json").read_text())["examples"] == 8
