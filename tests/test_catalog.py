"""Datasets as plugin components: mmgen's own through its built-in plugin, a plugin's through `load`
and run configs."""
import json
import types

import pytest
import torch

import mmgen
from mmgen import builtins, plugins, runs
from mmgen.data import catalog, load
from mmgen.data.datasets import Dataset


def toy_plugin():
    module = types.ModuleType("toydata")

    def squares(size: int = 4) -> dict:
        """Four images of one bright square."""
        x = torch.zeros(4, 1, size, size)
        x[:, :, 1:3, 1:3] = 1.0
        return {"train": Dataset("toy.squares", "train", x), "val": Dataset("toy.squares", "val", x[:2]),
                "test": Dataset("toy.squares", "test", x[:2])}

    @mmgen.hookimpl
    def mmgen_register(registry):
        registry.add("dataset", "toy.squares", squares)

    module.mmgen_register = mmgen_register
    return module


def test_the_builtin_plugin_registers_every_own_dataset(isolated):
    plugins.register(builtins, "mmgen")
    found = {c.name: c for c in mmgen.list_components("dataset")}
    assert set(found) == set(catalog.component_names().values())
    assert found["image.digits"].meta["short_name"] == "digits" and found["text.lee"].meta["modality"] == "text"
    splits = mmgen.build("dataset", "image.digits")
    assert len(splits["test"]) == 300


def test_load_takes_short_names_component_names_and_plugin_datasets(isolated):
    assert torch.equal(load("image.digits", "val").x, load("digits", "val").x)
    with pytest.raises(ValueError, match="unknown dataset 'toy.squares'; available: digits, mnist"):
        load("toy.squares")
    plugins.register(toy_plugin(), "toydata")
    assert load("toy.squares", "test", size=6).x.shape == (2, 1, 6, 6)
    with pytest.raises(ValueError, match=r"unknown split 'heldout'; available: train, val, test \(dataset 'toy.squares'\)"):
        load("toy.squares", "heldout")
    with pytest.raises(ValueError, match="registered by plugins: toy.squares"):
        load("cifar")


def test_a_plugin_dataset_trains_from_a_run_config(isolated, tmp_path):
    plugins.register(toy_plugin(), "toydata")
    config = {"data": {"name": "toy.squares", "size": 8},
              "model": {"model": "pixelcnn", "channels": 1, "levels": 2, "image_size": 8, "hidden": 8, "layers": 2},
              "train": {"steps": 2, "batch_size": 4, "progress": False}}
    assert runs.dataset(config, "train").x.shape == (4, 1, 8, 8)
    with pytest.raises(ValueError, match=r"dataset 'toy.squares' has no option\(s\) \['colour'\]; accepted: \['labels', 'size'\]"):
        runs.dataset({"data": {"name": "toy.squares", "colour": 1}}, "train")
    runs.train(config, str(tmp_path / "run"))
    with open(tmp_path / "run" / "eval_val.json") as f:
        assert json.load(f)["examples"] == 2
