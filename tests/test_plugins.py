"""The plugin manager, registry, config composition and the `mmgen plugins` CLI."""
import json
import os
import subprocess
import sys
import textwrap
import types
from importlib import metadata
from pathlib import Path

import pytest
import torch

import mmgen
from mmgen import likelihoods, plugins
from mmgen.cli import main as cli_main

REPO = Path(__file__).resolve().parents[1]
FIRST_PARTY = {"image", "text", "audio"}
# Every installed plugin (scripts/install.sh test also installs the example plugin "gumbel").
INSTALLED = sorted({ep.name for ep in metadata.entry_points(group="mmgen")})


def run_mmgen(*args, extra_path=(), **env):
    """`python -m mmgen ARGS` in a fresh interpreter with the given environment additions."""
    full_env = {k: v for k, v in os.environ.items()
                if k not in (plugins.DISABLE_AUTOLOAD_ENV, plugins.ALLOW_LIST_ENV)}
    full_env["PYTHONPATH"] = os.pathsep.join([*map(str, extra_path), str(REPO),
                                              os.environ.get("PYTHONPATH", "")])
    full_env.update(env)
    return subprocess.run([sys.executable, "-m", "mmgen", *args], cwd=REPO, env=full_env,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def installed(monkeypatch):
    """A fresh manager that loads the installed entry points."""
    monkeypatch.delenv(plugins.DISABLE_AUTOLOAD_ENV, raising=False)
    monkeypatch.delenv(plugins.ALLOW_LIST_ENV, raising=False)
    plugins.reset()
    yield
    plugins.reset()


def make_plugin(name, **components):
    """A plugin module registering `components` as {kind: {name: obj}}."""
    module = types.ModuleType(name)

    @mmgen.hookimpl
    def mmgen_register(registry):
        for kind, named in components.items():
            for component_name, obj in named.items():
                registry.add(kind, component_name, obj, description=f"{component_name} test component")

    module.mmgen_register = mmgen_register
    return module


class Scale(torch.nn.Module):
    def __init__(self, features: int = 4, factor: float = 2.0):
        super().__init__()
        self.out_features = self.in_features = features
        self.factor = factor

    def forward(self, x):
        return x * self.factor


class Chain(torch.nn.Module):
    def __init__(self, first: torch.nn.Module, second: torch.nn.Module):
        super().__init__()
        self.first, self.second = first, second

    def forward(self, x):
        return self.second(self.first(x))


# ---- registry and manager (in process) ----

def test_register_build_and_list(isolated):
    assert mmgen.list_components() == []
    name = plugins.register(make_plugin("toy", encoder={"toy.scale": Scale}))
    module = mmgen.build("encoder", "toy.scale", features=3, factor=0.5)
    assert isinstance(module, Scale) and module.factor == 0.5 and module.out_features == 3
    [component] = mmgen.list_components("encoder")
    assert (component.name, component.plugin, component.meta["description"]) == \
        ("toy.scale", name, "toy.scale test component")
    assert mmgen.list_components("decoder") == []
    assert plugins.get_plugin_manager().get_plugin(name) is not None


def test_duplicate_name_names_the_first_plugin(isolated):
    plugins.register(make_plugin("first", encoder={"toy.scale": Scale}))
    with pytest.raises(plugins.DuplicateComponentError, match=r"already registered by plugin 'first'"):
        plugins.register(make_plugin("second", encoder={"toy.other": Chain, "toy.scale": Scale}))
    # the failed plugin's other components are rolled back too
    assert [c.name for c in mmgen.list_components()] == ["toy.scale"]
    assert [p.name for p in plugins.list_plugins()] == ["first"]


def test_same_name_in_another_kind_is_allowed(isolated):
    plugins.register(make_plugin("both", encoder={"toy.scale": Scale}, decoder={"toy.scale": Scale}))
    assert {c.kind for c in mmgen.list_components()} == {"encoder", "decoder"}


def test_unknown_name_lists_names_and_suggests(isolated):
    plugins.register(make_plugin("toy", encoder={"toy.scale": Scale, "toy.chain": Chain}))
    with pytest.raises(plugins.UnknownComponentError) as info:
        mmgen.build("encoder", "toy.scael")
    message = str(info.value)
    assert "did you mean 'toy.scale'" in message and "toy.chain, toy.scale" in message
    with pytest.raises(LookupError, match=r"registered decoder names: none"):
        mmgen.build("decoder", "toy.scale")


def test_bad_kind_and_bad_name_are_rejected(isolated):
    with pytest.raises(ValueError, match=r"unknown component kind 'encodr'; did you mean 'encoder'"):
        mmgen.build("encodr", "toy.scale")
    with pytest.raises(ValueError, match=r"accepted kinds: encoder, decoder, generator"):
        mmgen.list_components("vocoder")
    for bad in ("scale", "Toy.Scale", "toy.", ".scale", "toy scale"):
        with pytest.raises(plugins.PluginError, match=r"is not a namespaced lowercase name"):
            plugins.register(make_plugin(f"bad{abs(hash(bad))}", encoder={bad: Scale}))
    with pytest.raises(plugins.PluginError, match=r"unknown component kind 'vocoder'"):
        plugins.register(make_plugin("badkind", vocoder={"audio.vocoder": Scale}))
    with pytest.raises(plugins.PluginError, match=r"expected a class or factory"):
        plugins.register(make_plugin("notcallable", encoder={"toy.thing": 3}))
    assert mmgen.list_components() == []


def test_build_checks_arguments(isolated):
    plugins.register(make_plugin("toy", encoder={"toy.scale": Scale}))
    with pytest.raises(TypeError, match=r"encoder 'toy.scale' \(plugin 'toy'\).*features"):
        mmgen.build("encoder", "toy.scale", featurs=3)


def test_misspelled_hook_and_bad_signature_are_rejected(isolated):
    typo = types.ModuleType("typo")
    typo.mmgen_regster = mmgen.hookimpl(lambda registry: None)
    with pytest.raises(plugins.PluginError, match=r"unknown hook.*'mmgen_regster'"):
        plugins.register(typo)
    extra_arg = types.ModuleType("extra_arg")
    extra_arg.mmgen_register = mmgen.hookimpl(lambda registry, device: None)
    with pytest.raises(plugins.PluginError, match=r"bad hook.*device"):
        plugins.register(extra_arg)
    # neither stays registered with pluggy, so a later plugin still registers cleanly
    plugins.register(make_plugin("fine", encoder={"toy.scale": Scale}))
    assert plugins.get_plugin_manager().get_plugin("typo") is None


def test_unregister_removes_components(isolated):
    plugins.register(make_plugin("toy", encoder={"toy.scale": Scale}))
    plugins.unregister("toy")
    assert mmgen.list_components() == []
    with pytest.raises(plugins.PluginError, match=r"no plugin named 'toy'"):
        plugins.unregister("toy")


def test_build_from_config_nested(isolated):
    plugins.register(make_plugin("toy", encoder={"toy.scale": Scale, "toy.chain": Chain}))
    config = {"model": {"kind": "encoder", "name": "toy.chain",
                        "first": {"kind": "encoder", "name": "toy.scale", "factor": 3.0},
                        "second": {"kind": "encoder", "name": "toy.scale", "factor": 0.5}},
              "extras": [{"kind": "encoder", "name": "toy.scale"}, 7],
              "latent_dim": 16}
    built = plugins.build_from_config(config)
    assert built["latent_dim"] == 16 and built["extras"][1] == 7
    assert isinstance(built["extras"][0], Scale)
    assert torch.equal(built["model"](torch.ones(2)), torch.full((2,), 1.5))


@pytest.mark.parametrize("config, message", [
    ({"enc": {"kind": "encodr", "name": "toy.scale"}}, r"config\.enc\.kind: unknown component kind 'encodr'"),
    ({"enc": {"kind": "encoder", "name": "toy.scael"}}, r"config\.enc\.name: unknown encoder 'toy.scael'"),
    ({"enc": {"kind": "encoder"}}, r"config\.enc: an entry with 'kind' needs a 'name'"),
    ({"enc": {"kind": "encoder", "name": "toy.chain", "first": {"kind": "encoder", "name": "toy.nope"},
              "second": 1}}, r"config\.enc\.first\.name: unknown encoder 'toy.nope'"),
    ({"enc": [{"kind": "encoder", "name": "toy.scale", "factr": 2}]}, r"config\.enc\[0\]: .*factr"),
])
def test_build_from_config_errors_name_the_key(isolated, config, message):
    plugins.register(make_plugin("toy", encoder={"toy.scale": Scale, "toy.chain": Chain}))
    with pytest.raises(plugins.ConfigError, match=message):
        plugins.build_from_config(config)


# ---- installed first-party plugins through their entry points ----

@pytest.mark.plugins("image", "text", "audio")
def test_first_party_plugins_load_through_entry_points(installed):
    infos = {info.name: info for info in plugins.list_plugins()}
    assert FIRST_PARTY <= set(infos)
    for name in FIRST_PARTY:
        assert infos[name].status == "ok" and infos[name].distribution == f"mmgen-{name}"
        assert infos[name].origin == f"entry point {name} = mmgen_{name}"
    by_name = {(c.kind, c.name): c.plugin for c in mmgen.list_components()}
    assert by_name[("encoder", "image.conv")] == "image"
    assert by_name[("text_encoder", "text.minilm")] == "text"
    assert by_name[("decoder", "audio.mel")] == "audio"


@pytest.mark.plugins("image", "text", "audio")
def test_allow_list_limits_entry_points(installed, monkeypatch):
    monkeypatch.setenv(plugins.ALLOW_LIST_ENV, "image, text")
    plugins.reset()
    assert {p.name for p in plugins.list_plugins()} == {"image", "text"}
    assert "audio" in plugins.skipped()
    with pytest.raises(LookupError, match=r"unknown encoder 'audio.mel'"):
        mmgen.build("encoder", "audio.mel")


@pytest.mark.plugins("image", "text")
def test_compose_image_encoder_decoder_and_text_encoder(installed):
    enc = mmgen.build("encoder", "image.conv", in_channels=1, size=28, out_features=64)
    dec = mmgen.build("decoder", "image.conv", in_features=64, out_channels=1, size=28)
    text = mmgen.build("text_encoder", "text.gru", vocab_size=50, out_features=32)
    images = torch.rand(5, 1, 28, 28).bernoulli()
    captions = torch.randint(3, 50, (5, 9))
    joint = torch.cat([enc(images), text(captions)], dim=1)
    assert joint.shape == (5, 64 + 32)
    logits = dec(joint[:, :64])
    assert logits.shape == images.shape
    nll = -likelihoods.get("bernoulli").log_prob(logits, images)
    assert nll.shape == (5,) and torch.all(nll > 0)


@pytest.mark.plugins("image", "text")
def test_compose_from_config_with_real_components(installed):
    built = plugins.build_from_config({
        "encoder": {"kind": "encoder", "name": "image.conv", "in_channels": 3, "size": 32, "out_features": 16},
        "decoder": {"kind": "decoder", "name": "image.conv", "in_features": 16, "out_channels": 3,
                    "size": 32, "params_per_channel": 4}})
    out = built["decoder"](built["encoder"](torch.randn(2, 3, 32, 32)))
    assert out.shape == (2, 12, 32, 32)
    with pytest.raises(plugins.ConfigError, match=r"config\.encoder: .*image size must be an int >= 4 .*got 3"):
        plugins.build_from_config({"encoder": {"kind": "encoder", "name": "image.conv", "size": 3}})


# ---- CLI ----

@pytest.mark.plugins("image", "text", "audio")
def test_cli_list_and_doctor_in_process(installed, capsys):
    assert cli_main(["plugins", "list"]) == 0
    out = capsys.readouterr().out
    assert "image 0.1.0  ok" in out and "image.conv" in out and "text_encoder   text.minilm" in out
    assert cli_main(["plugins", "list", "--json"]) == 0
    listing = {p["plugin"]: p for p in json.loads(capsys.readouterr().out)}
    assert listing["audio"]["components"] == {"encoder": ["audio.mel"], "decoder": ["audio.mel"], "modality": ["audio"]}
    assert cli_main(["plugins", "doctor"]) == 0
    assert f"all {len(INSTALLED)} plugins loaded" in capsys.readouterr().out


def test_cli_requires_a_subcommand(capsys):
    with pytest.raises(SystemExit) as info:
        cli_main([])
    assert info.value.code == 2


def write_third_party_plugins(root: Path) -> None:
    """A fake installed distribution `thirdparty` whose entry points are broken in different ways."""
    modules = {
        "tp_broken": "raise RuntimeError('boom while importing')\n",
        "tp_needs_dep": "import tp_no_such_dependency\n",
        "tp_typo": "from mmgen import hookimpl\n\n@hookimpl\ndef mmgen_regster(registry):\n    pass\n",
        "tp_dup": ("from mmgen import hookimpl\nfrom mmgen_image import ConvEncoder\n\n@hookimpl\n"
                   "def mmgen_register(registry):\n    registry.add('encoder', 'image.conv', ConvEncoder)\n"),
        "tp_good": ("import torch\nfrom mmgen import hookimpl\n\n@hookimpl\ndef mmgen_register(registry):\n"
                    "    registry.add('encoder', 'extra.identity', torch.nn.Identity, description='identity')\n"),
    }
    for module, source in modules.items():
        (root / f"{module}.py").write_text(source)
    dist = root / "thirdparty-0.3.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: thirdparty\nVersion: 0.3.0\n")
    (dist / "entry_points.txt").write_text(textwrap.dedent("""\
        [mmgen]
        broken = tp_broken
        needsdep = tp_needs_dep
        typo = tp_typo
        zz_dup = tp_dup
        good = tp_good
        """))


@pytest.mark.plugins("image")
def test_doctor_reports_broken_third_party_plugins(tmp_path):
    write_third_party_plugins(tmp_path)
    doctor = run_mmgen("plugins", "doctor", extra_path=[tmp_path])
    assert doctor.returncode == 1, doctor.stdout + doctor.stderr
    out = doctor.stdout
    assert "FAILED  broken (entry point broken = tp_broken): import error" in out
    assert "RuntimeError: boom while importing" in out
    assert "FAILED  needsdep (entry point needsdep = tp_needs_dep): missing dependency" in out
    assert "No module named 'tp_no_such_dependency'" in out
    assert "hint: install the package that provides 'tp_no_such_dependency'" in out
    assert "FAILED  typo (entry point typo = tp_typo): unknown hook" in out and "'mmgen_regster'" in out
    assert "FAILED  zz_dup (entry point zz_dup = tp_dup): register error" in out
    assert "encoder 'image.conv' is already registered by plugin 'image'" in out
    assert "ok      good (thirdparty 0.3.0, entry point good = tp_good): 1 component\n" in out
    for name in FIRST_PARTY:
        assert f"ok      {name} (mmgen-{name} 0.1.0" in out
    assert f"4 of {len(INSTALLED) + 5} plugins failed" in out

    listing = run_mmgen("plugins", "list", extra_path=[tmp_path])
    assert listing.returncode == 0
    assert "broken -  failed: import error: RuntimeError: boom while importing" in listing.stdout
    assert "extra.identity" in listing.stdout and "image.conv" in listing.stdout


@pytest.mark.plugins("image")
def test_build_warns_about_failed_plugins_and_still_works(tmp_path):
    write_third_party_plugins(tmp_path)
    code = ("import warnings, mmgen\n"
            "with warnings.catch_warnings(record=True) as caught:\n"
            "    warnings.simplefilter('always')\n"
            "    enc = mmgen.build('encoder', 'image.conv', in_channels=1, size=8, out_features=4)\n"
            "print(enc.out_features)\n"
            "for w in caught: print('WARN', w.message)\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), str(REPO)]))
    env.pop(plugins.DISABLE_AUTOLOAD_ENV, None)
    env.pop(plugins.ALLOW_LIST_ENV, None)
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "4"
    assert sum(line.startswith("WARN mmgen plugin") for line in lines) == 4
    assert any("'broken' (entry point broken = tp_broken): import error" in line for line in lines)


@pytest.mark.plugins("image", "text")
def test_cli_env_switches():
    disabled = run_mmgen("plugins", "doctor", MMGEN_DISABLE_PLUGIN_AUTOLOAD="1")
    assert disabled.returncode == 0
    assert "entry-point autoload: off (MMGEN_DISABLE_PLUGIN_AUTOLOAD is set)" in disabled.stdout
    assert "all 0 plugins loaded" in disabled.stdout
    allowed = run_mmgen("plugins", "doctor", MMGEN_PLUGINS="image,imag")
    assert allowed.returncode == 1
    left_out = ", ".join(n for n in INSTALLED if n != "image")
    assert f"MMGEN_PLUGINS=imag,image (left out: {left_out})" in allowed.stdout
    assert "ok      image" in allowed.stdout
    assert "FAILED  imag (MMGEN_PLUGINS=image,imag): not installed" in allowed.stdout
    assert f"installed plugins: {', '.join(INSTALLED)}" in allowed.stdout


@pytest.mark.plugins("image", "text")
def test_docs_plugins_example_runs(installed):
    import doc_blocks
    namespace = doc_blocks.run(doc_blocks.find("docs/plugins.md", "First-party components"))
    assert namespace["h"].shape == (5, 96) and namespace["nll"].shape == (5,)
