"""The core without its plugins: mmgen imports, builds, trains and saves models made of the user's
own modules when no plugin package (mmgen-image, mmgen-text, mmgen-audio) is installed.

These tests need no plugin, so they run in the normal suite and in the core-only CI run
(scripts/core_only_tests.sh, a venv with mmgen alone); the subprocess test makes the plugin
packages unimportable itself, so the normal run proves it too.
"""
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

import mmgen
from mmgen.data import Dataset
from mmgen.models import VAE, GenerativeModel
from mmgen.train import Trainer

PLUGIN_PACKAGES = ("mmgen_image", "mmgen_text", "mmgen_audio")
FEATURES, LATENT = 6, 2


class Encoder(nn.Module):
    def __init__(self, out_features: int = 16):
        super().__init__()
        self.out_features = out_features
        self.net = nn.Sequential(nn.Linear(FEATURES, out_features), nn.Tanh())

    def forward(self, x):
        return self.net(x)


class Decoder(nn.Module):
    def __init__(self, in_features: int = LATENT):
        super().__init__()
        self.in_features = in_features
        self.net = nn.Sequential(nn.Linear(in_features, 16), nn.Tanh(), nn.Linear(16, FEATURES))

    def forward(self, h):
        return self.net(h)


def tiny_data(n: int = 64, split: str = "train") -> Dataset:
    g = torch.Generator().manual_seed(0 if split == "train" else 1)
    return Dataset("tiny", split, torch.randn(n, FEATURES, generator=g).mul(0.3).add(0.5).clamp(0, 1))


def test_vae_of_user_modules_trains_saves_and_reloads_without_plugins(tmp_path):
    torch.manual_seed(0)
    model = VAE(Encoder(), Decoder(), latent_dim=LATENT, likelihood="gaussian")
    before = [p.detach().clone() for p in model.parameters()]
    config = {"steps": 6, "batch_size": 16, "lr": 1e-2, "log_every": 2, "eval_every": 3,
              "sample_every": 1000, "checkpoint_every": 3, "seed": 0}
    Trainer(model, tiny_data(), val_data=tiny_data(32, "val"), run_dir=str(tmp_path / "run"),
            config=config).fit()
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters())), "training changed nothing"

    model.save_pretrained(str(tmp_path / "model"))
    again = VAE.from_pretrained(str(tmp_path / "model"), encoder=Encoder(), decoder=Decoder())
    assert type(again) is VAE
    for (name, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), name
    x = tiny_data(8, "val").x
    model.eval(), again.eval()
    torch.manual_seed(3)
    expected = model.elbo(x)
    torch.manual_seed(3)
    assert torch.equal(again.elbo(x), expected)
    assert isinstance(GenerativeModel.from_pretrained(str(tmp_path / "model"), encoder=Encoder(),
                                                      decoder=Decoder()), VAE)


def test_ops_and_layers_work_without_plugins():
    mu, logvar = torch.randn(4, 3, requires_grad=True), torch.zeros(4, 3, requires_grad=True)
    z, kl = mmgen.ops.reparameterize(mu, logvar, return_kl=True)
    (z.sum() + kl.sum()).backward()
    assert mu.grad is not None and torch.allclose(mmgen.ops.gaussian_kl(mu, logvar), kl)
    quantizer = mmgen.nn.VectorQuantizer(8, 4)
    out = quantizer(torch.randn(5, 4))
    assert out[0].shape == (5, 4)


def test_no_core_module_names_a_plugin_package():
    """Nothing under mmgen/ (code, docstrings, comments) mentions the first-party plugin packages."""
    root = os.path.dirname(mmgen.__file__)
    found = []
    for folder, _, files in os.walk(root):
        for name in files:
            if name.endswith((".py", ".pyi", ".md", ".json", ".toml", ".txt")):
                path = os.path.join(folder, name)
                with open(path, encoding="utf-8", errors="replace") as f:
                    for number, line in enumerate(f, 1):
                        if any(package in line for package in PLUGIN_PACKAGES):
                            found.append(f"{os.path.relpath(path, root)}:{number}: {line.strip()}")
    assert not found, "the core names plugin packages:\n" + "\n".join(found)


BLOCKED_IMPORTS = textwrap.dedent("""
    import importlib, sys

    BLOCKED = {blocked!r}

    class Blocker:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {{name!r}} (blocked by the test)", name=name)
            return None

    sys.meta_path.insert(0, Blocker())
    for module in ("mmgen", "mmgen.ops", "mmgen.nn", "mmgen.models", "mmgen.data", "mmgen.train",
                   "mmgen.eval", "mmgen.runs", "mmgen.cli", "mmgen.modalities", "mmgen.presets"):
        importlib.import_module(module)
    import mmgen
    from mmgen import cli, modalities, plugins
    try:
        cli.main(["--help"])
    except SystemExit as exc:
        assert exc.code in (0, None), exc.code
    assert mmgen.list_components("model"), "the built-in plugin registered no model"
    try:
        modalities.get("image")
    except plugins.UnknownComponentError as exc:
        assert "mmgen-image" in str(exc), str(exc)
    else:
        raise AssertionError("modalities.get('image') worked without the image plugin")
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    assert not loaded, loaded
    print("CORE-ONLY-OK")
""")


def test_core_imports_no_plugin_package(tmp_path):
    """In a fresh interpreter where the plugin packages cannot be imported and only mmgen's built-in
    plugin is loaded, every core package imports and the CLI answers --help."""
    script = tmp_path / "core_only.py"
    script.write_text(BLOCKED_IMPORTS.format(blocked=set(PLUGIN_PACKAGES)))
    env = {**os.environ, "MMGEN_PLUGINS": "mmgen"}
    env.pop("MMGEN_DISABLE_PLUGIN_AUTOLOAD", None)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env,
                          cwd=str(tmp_path), timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "CORE-ONLY-OK" in done.stdout
    assert "usage" in done.stdout.lower()
