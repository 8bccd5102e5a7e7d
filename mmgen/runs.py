"""Runs: a run config (JSON or a preset) turned into data, model and training, in a run folder.

    run_dir/run.json      the full run config
    run_dir/model/        the trained model (config.json + model.safetensors)
    run_dir/eval_<split>.json, metrics.jsonl, samples/, checkpoints/
"""
from __future__ import annotations

import copy
import json
import os

import torch

from mmgen import data as datasets
from mmgen import presets
from mmgen.io import atomic_write_bytes
from mmgen.models import GenerativeModel, from_config
from mmgen.train import TrainConfig, Trainer, checkpoint

RUN_FILE = "run.json"
SECTIONS = ("description", "data", "model", "train", "eval")


def load_config(source: str) -> dict:
    """A run config from a preset name or a JSON file path."""
    if os.path.exists(source):
        with open(source) as f:
            try:
                config = json.load(f)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{source} is not valid JSON: {exc}") from exc
    else:
        config = presets.get(source)
    unknown = sorted(set(config) - set(SECTIONS))
    if unknown:
        raise ValueError(f"unknown run config section(s) {unknown}; accepted: {list(SECTIONS)}")
    for key in ("data", "model"):
        if key not in config:
            raise ValueError(f"run config has no {key!r} section")
    return config


def apply_overrides(config: dict, overrides: list[str]) -> dict:
    """``["train.steps=100", "model.beta=4"]``: values parsed as JSON, else kept as strings."""
    config = copy.deepcopy(config)
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} must look like section.key=value")
        path, raw = item.split("=", 1)
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        keys = path.split(".")
        node = config
        for key in keys[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ValueError(f"override {item!r}: {key!r} is not a section")
        node[keys[-1]] = value
    return config


def dataset(config: dict, split: str):
    kwargs = dict(config["data"])
    return datasets.load(kwargs.pop("name"), split, **kwargs)


def train(config: dict, run_dir: str, device: str | None = None) -> dict:
    """Train (resuming if run_dir has checkpoints), then evaluate on the test split."""
    os.makedirs(run_dir, exist_ok=True)
    saved = os.path.join(run_dir, RUN_FILE)
    if os.path.exists(saved) and checkpoint.latest(os.path.join(run_dir, "checkpoints")):
        with open(saved) as f:
            previous = json.load(f)
        if previous["model"] != config["model"] or previous["data"] != config["data"]:
            raise ValueError(f"{run_dir} holds a run with another model or data; use a new folder")
    atomic_write_bytes(saved, json.dumps(config, indent=2).encode())
    train_cfg = TrainConfig.from_dict({**config.get("train", {}), **({"device": device} if device else {})})
    torch.manual_seed(train_cfg.seed)  # the initial weights are part of the reproducible run
    model = from_config(config["model"])
    labels = getattr(model, "condition_on_labels", False)  # M2, CVAE: loss(x, y=labels)
    trainer = Trainer(model, dataset(config, "train"), run_dir=run_dir, config=train_cfg,
                      val_data=dataset(config, "val"), condition_on_labels=labels,
                      evaluate=_validate_with_labels if labels else None)
    trainer.fit()
    return evaluate(run_dir, "test")


def _validate_with_labels(model, data) -> dict:
    """Validation metrics of a model that needs labels (the trainer's default calls loss(x))."""
    from mmgen.eval import evaluate as evaluate_model
    return {f"val_{key}": value for key, value in evaluate_model(model, data).items()}


def load_model(run_dir: str, device: str = "cpu") -> GenerativeModel:
    """The trained model of a run (its final model, else its latest checkpoint)."""
    final = os.path.join(run_dir, "model")
    if os.path.isdir(final):
        return GenerativeModel.from_pretrained(final, map_location=device)
    latest = checkpoint.latest(os.path.join(run_dir, "checkpoints"))
    if latest is None:
        raise FileNotFoundError(f"{run_dir} has neither a model/ folder nor a checkpoint")
    return GenerativeModel.from_pretrained(latest, map_location=device)


def read_run_config(run_dir: str) -> dict:
    path = os.path.join(run_dir, RUN_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{run_dir} is not a run folder (no {RUN_FILE})")
    with open(path) as f:
        return json.load(f)


def evaluate(run_dir: str, split: str = "test", **overrides) -> dict:
    from mmgen.eval import evaluate as evaluate_model, uniform_nll
    config = read_run_config(run_dir)
    options = {**config.get("eval", {}), **{k: v for k, v in overrides.items() if v is not None}}
    data = dataset(config, split)
    model = load_model(run_dir)
    torch.manual_seed(0)
    metrics = evaluate_model(model, data, **options)
    metrics.update({"split": split, "dataset": config["data"], "uniform_nll": uniform_nll(data)})
    atomic_write_bytes(os.path.join(run_dir, f"eval_{split}.json"), json.dumps(metrics, indent=2).encode())
    return metrics
