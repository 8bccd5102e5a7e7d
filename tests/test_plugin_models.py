"""Plugins add model families and metrics: a plugin's model trains from a run config, saves, reloads,
samples and evaluates through the CLI like mmgen's own; a registered metric runs in `mmgen eval`
and at the end of training; mmgen's own families are `model` components of its built-in plugin."""
import json
import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest
import torch

import mmgen
from mmgen import builtins, models, plugins, runs
from mmgen.data import load

REPO = Path(__file__).resolve().parents[1]
FAMILIES = ("vae", "pixelcnn", "gan", "vqvae", "gumbel_vae", "cvae", "m2", "text_to_image_gan",
            "sentence_vae", "mfm", "mvae", "mmvae", "mopoe", "flow", "avb", "diffusion")

# The plugin's source: a diagonal Gaussian over the pixels, with no likelihood method (only metrics
# evaluate it) and no config of its own (from_config records the options it was built from), and
# a metric comparing its mean with the data's mean image.
TOY_SOURCE = '''
"""A toy mmgen plugin: a pixel-wise Gaussian model family and a metric."""
import torch
from torch import nn

from mmgen import hookimpl
from mmgen.models import GenerativeModel


class Gauss(GenerativeModel):
    """Independent Gaussians over the pixels."""

    def __init__(self, shape=(1, 8, 8)):
        super().__init__()
        self.shape = tuple(shape)
        self.mean = nn.Parameter(torch.zeros(self.shape))
        self.log_std = nn.Parameter(torch.zeros(self.shape))

    def loss(self, x):
        z = (x - self.mean) / self.log_std.exp()
        return (0.5 * z.square() + self.log_std).flatten(1).sum(1).mean()

    def sample(self, n, generator=None):
        eps = torch.randn(n, *self.shape, generator=generator)
        return (self.mean + self.log_std.exp() * eps).detach()


def mean_error(model, data, scale: float = 1.0):
    """Mean absolute error between the model's mean and the data's mean image."""
    error = (model.mean.detach() - data.x.float().mean(0)).abs().mean().item()
    return {"mean_abs_error": scale * error}


@hookimpl
def mmgen_register(registry):
    registry.add("model", "toy.gauss", Gauss, description="pixel-wise Gaussians")
    registry.add("metric", "toy.mean_error", mean_error, description="|model mean - data mean|")
'''

PYPROJECT = '''
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "mmgen-toy"
version = "0.3.0"

[project.entry-points.mmgen]
toy = "mmgen_toy"

[tool.setuptools]
packages = ["mmgen_toy"]
'''


def toy_module():
    """The toy plugin as an in-process module (for the tests that need no installed package)."""
    module = types.ModuleType("mmgen_toy_inproc")
    exec(compile(TOY_SOURCE, "mmgen_toy", "exec"), module.__dict__)
    return module


def run_config(**model):
    return {"data": {"name": "digits"}, "model": {"model": "toy.gauss", **model},
            "train": {"steps": 20, "batch_size": 32, "lr": 0.1, "progress": False, "log_every": 10,
                      "sample_every": 20, "eval_every": 20, "checkpoint_every": 20, "num_samples": 4},
            "eval": {"metrics": ["toy.mean_error"]}}


def expected_error(model_dir, split="test", scale=1.0):
    """The metric computed here from the saved weights and the data, without the plugin's code."""
    from safetensors.torch import load_file
    mean = load_file(os.path.join(model_dir, "model.safetensors"))["mean"]
    return scale * (mean - load(split=split, name="digits").x.float().mean(0)).abs().mean().item()


@pytest.fixture(scope="module")
def toy_site(tmp_path_factory):
    """The toy plugin built as a package and pip-installed into a folder (entry points in its .dist-info)."""
    root = tmp_path_factory.mktemp("toy")
    package = root / "pkg"
    (package / "mmgen_toy").mkdir(parents=True)
    (package / "pyproject.toml").write_text(PYPROJECT)
    (package / "mmgen_toy" / "__init__.py").write_text(TOY_SOURCE)
    site = root / "site"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
                           "--no-index", "--quiet", "--target", str(site), str(package)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert any(p.name.endswith(".dist-info") for p in site.iterdir())
    return site


def mmgen_cli(site, *args, timeout=300):
    env = {k: v for k, v in os.environ.items() if k not in (plugins.DISABLE_AUTOLOAD_ENV, plugins.ALLOW_LIST_ENV)}
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(REPO), os.environ.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = "1"
    return subprocess.run([sys.executable, "-m", "mmgen", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_installed_plugin_model_trains_samples_and_evaluates_through_the_cli(toy_site, tmp_path):
    config = tmp_path / "toy.json"
    config.write_text(json.dumps(run_config()))
    run = tmp_path / "run"
    done = mmgen_cli(toy_site, "train", str(config), "--out", str(run))
    assert done.returncode == 0, done.stdout + done.stderr
    saved = json.loads((run / "model" / "config.json").read_text())
    assert saved == {"model": "toy.gauss"}  # the registered name: from_pretrained finds the family again
    after_training = json.loads((run / "eval_val.json").read_text())
    error = expected_error(run / "model", split="val")
    assert after_training["metrics"]["toy.mean_error"]["mean_abs_error"] == pytest.approx(error, rel=1e-5)
    untrained = load("digits", "test").x.float().mean(0).abs().mean().item()  # the error of mean 0
    assert error < untrained  # it learned

    done = mmgen_cli(toy_site, "sample", str(run), "-n", "9")  # reloads with from_pretrained
    assert done.returncode == 0, done.stdout + done.stderr
    assert (run / "samples" / "sample-seed0.png").stat().st_size > 100

    done = mmgen_cli(toy_site, "eval", str(run), "--split", "val", "--metric", "toy.mean_error",
                     "--metric-option", "toy.mean_error.scale=2")
    assert done.returncode == 0, done.stdout + done.stderr
    evaluated = json.loads((run / "eval_val.json").read_text())
    assert evaluated["split"] == "val" and set(evaluated) == {"metrics", "split", "dataset", "threads", "eval_seconds"}
    assert evaluated["metrics"]["toy.mean_error"]["mean_abs_error"] == pytest.approx(
        expected_error(run / "model", "val", scale=2), rel=1e-5)
    assert json.loads(done.stdout)["metrics"] == evaluated["metrics"]

    done = mmgen_cli(toy_site, "eval", str(run), "--metric", "toy.mean_eror")
    assert done.returncode == 1
    assert ("mmgen: error: eval: unknown metric 'toy.mean_eror'; did you mean 'toy.mean_error'? "
            "(registered metric names: mmgen.ais, toy.mean_error)") in done.stderr

    done = mmgen_cli(toy_site, "plugins", "list", "--json")
    listing = {p["plugin"]: p for p in json.loads(done.stdout)}
    assert listing["toy"]["version"] == "0.3.0"
    assert listing["toy"]["components"] == {"metric": ["toy.mean_error"], "model": ["toy.gauss"]}
    assert sorted(listing["mmgen"]["components"]["model"]) == sorted(f"mmgen.{f}" for f in FAMILIES)


def test_every_builtin_family_is_a_model_component_of_the_builtin_plugin(isolated):
    plugins.register(builtins, "mmgen")
    found = {c.name: c for c in mmgen.list_components("model")}
    assert set(found) == {f"mmgen.{name}" for name in FAMILIES}
    for name in FAMILIES:
        component = found[f"mmgen.{name}"]
        assert component.plugin == "mmgen" and component.meta["short_name"] == name
        assert models.get(name) is component and models.get(f"mmgen.{name}") is component
    assert set(models.registered()) == set(FAMILIES)


def test_builtin_families_resolve_without_entry_points(isolated):
    # the entry points are not loaded: asking for one of mmgen's families registers its built-in plugin
    assert mmgen.list_components() == []
    model = models.from_config({"model": "pixelcnn", "channels": 1, "levels": 2, "image_size": 8,
                                "hidden": 8, "layers": 2})
    assert isinstance(model, models.PixelCNN) and model.config["model"] == "pixelcnn"
    assert models.get("pixelcnn").plugin == "mmgen"
    with pytest.raises(AttributeError, match="replaced by the plugin registry"):
        models.MODELS


def test_unknown_model_and_metric_names_list_the_registered_ones_with_a_close_match(isolated, tmp_path):
    plugins.register(toy_module(), "toy")
    with pytest.raises(LookupError, match=r"unknown model 'toy.gaus'; did you mean 'toy.gauss'\? \(registered "
                                          r"models: avb, cvae, diffusion, flow, gan, .*, text_to_image_gan, toy.gauss, vae, vqvae\)"):
        models.from_config({"model": "toy.gaus"})
    with pytest.raises(LookupError, match=r"unknown model 'vea'; did you mean 'vae'\?"):
        models.from_config({"model": "vea"})
    with pytest.raises(LookupError, match=r"run config model: unknown model 'toy.gaus'; did you mean 'toy.gauss'"):
        runs.prepare({**run_config(), "model": {"model": "toy.gaus"}}, str(tmp_path / "run"))
    bad_metric = {**run_config(), "eval": {"metrics": ["toy.mean_eror"]}}
    with pytest.raises(LookupError, match=r"run config eval: metrics: unknown metric 'toy.mean_eror'; did you "
                                          r"mean 'toy.mean_error'\? \(registered metric names: mmgen.ais, toy.mean_error\)"):
        runs.prepare(bad_metric, str(tmp_path / "run"))
    bad_option = {**run_config(), "eval": {"metrics": {"toy.mean_error": {"scael": 2}}}}
    with pytest.raises(ValueError, match=r"metric 'toy.mean_error' does not take options \{'scael': 2\}"):
        runs.prepare(bad_option, str(tmp_path / "run"))
    likelihood_option = {**run_config(), "eval": {"k": 10}}
    with pytest.raises(ValueError, match=r"run config eval: option\(s\) \['k'\] belong to mmgen's evaluation, "
                                         r"but a Gauss model has no likelihood"):
        runs.prepare(likelihood_option, str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()  # all checked before anything is written


def test_name_alias_metric_options_and_nothing_to_evaluate(isolated, tmp_path):
    plugins.register(toy_module(), "toy")
    config = run_config()
    config["model"] = {"name": "toy.gauss", "shape": [1, 8, 8]}  # "name" is an alias of "model"
    config["train"]["steps"] = 5
    config["eval"] = {"metrics": {"toy.mean_error": {"scale": 3}}}
    run = tmp_path / "run"
    result = runs.train(config, str(run))
    assert json.loads((run / "model" / "config.json").read_text()) == {"model": "toy.gauss", "shape": [1, 8, 8]}
    assert result["metrics"]["toy.mean_error"]["mean_abs_error"] == pytest.approx(
        expected_error(run / "model", split="val", scale=3), rel=1e-5)
    # the CLI's --metric replaces the list; options of the run config stay, --metric-option adds
    again = runs.evaluate(str(run), "val", metrics=["toy.mean_error"], metric_options={"toy.mean_error": {}})
    def values(r):  # each metric's numbers without its wall time ("seconds", which varies run to run)
        return {name: {k: v for k, v in block.items() if k != "seconds"} for name, block in r["metrics"].items()}
    assert values(again) == values(result)
    assert all(block["seconds"] >= 0 for block in again["metrics"].values())
    with pytest.raises(ValueError, match=r"options for metric 'toy.other', which is not requested"):
        runs.evaluate(str(run), metric_options={"toy.other": {"k": 1}})
    with pytest.raises(runs.NothingToEvaluate, match=r"nothing to evaluate: a Gauss model has no likelihood.*"
                                                     r"registered metrics: toy.mean_error"):
        runs.evaluate(str(run), metrics=[])
    with pytest.raises(ValueError, match="a model config names its family once"):
        models.from_config({"model": "toy.gauss", "name": "toy.gauss"})

    config["eval"] = {}  # at the end of training, nothing to evaluate is a note, not a failure
    result = runs.train(config, str(tmp_path / "bare"))
    assert result["note"].startswith("nothing to evaluate") and "metrics" not in result
    assert json.loads((tmp_path / "bare" / "eval_val.json").read_text())["note"] == result["note"]


def test_save_pretrained_fills_the_registered_name(isolated, tmp_path):
    toy = toy_module()
    model = toy.Gauss()  # built by its class: no config of its own
    with pytest.raises(TypeError, match="Gauss cannot be saved: it has no config dict"):
        model.save_pretrained(str(tmp_path / "a"))
    model.config = {"shape": [1, 8, 8]}
    with pytest.raises(ValueError, match="its config has no 'model' name and it is not a registered model"):
        model.save_pretrained(str(tmp_path / "a"))
    plugins.register(toy, "toy")
    model.save_pretrained(str(tmp_path / "a"))
    assert model.config["model"] == "toy.gauss"
    with torch.no_grad():
        model.mean.fill_(3.0)
    model.save_pretrained(str(tmp_path / "a"))
    loaded = models.GenerativeModel.from_pretrained(str(tmp_path / "a"))
    assert type(loaded) is toy.Gauss and torch.equal(loaded.mean, model.mean)


def test_a_plugin_model_with_log_prob_gets_the_likelihood_evaluation(isolated):
    toy = toy_module()

    class WithLogProb(toy.Gauss):
        def log_prob(self, x):
            return -0.5 * ((x - self.mean) / self.log_std.exp()).square().flatten(1).sum(1)

    from mmgen.eval import evaluate
    data = load("digits", "test")
    metrics = evaluate(WithLogProb(), data)
    assert runs._evaluator(WithLogProb()) is evaluate and runs._evaluator(toy.Gauss()) is None
    assert metrics["nll"] == pytest.approx(0.5 * data.x.square().flatten(1).sum(1).mean().item(), rel=1e-5)
    assert "bits_per_dim" in metrics
