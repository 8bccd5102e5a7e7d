import importlib
import os

import pytest
import torch

import mmgen

# Tests that need the CUDA device carry the `cuda` marker; use DEVICES to parametrize over devices.
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]

# Tests that need a first-party plugin carry `@pytest.mark.plugins("image", ...)` (or a module's
# `pytestmark`); they are skipped, with the plugin named, where its package cannot be imported (the
# core-only CI run, scripts/core_only_tests.sh). A test module that imports a plugin package at the
# top uses `pytest.importorskip("mmgen_text", reason=plugin_reason(["text"]))` instead.
PLUGIN_PACKAGES = {"image": "mmgen_image", "text": "mmgen_text", "audio": "mmgen_audio", "gumbel": "mmgen_gumbel"}
PLUGIN_DISTRIBUTIONS = {"image": "mmgen-image", "text": "mmgen-text", "audio": "mmgen-audio",
                        "gumbel": "examples/mmgen-gumbel"}
_importable: dict[str, bool] = {}


def plugin_missing(name: str) -> bool:
    """Whether the package of first-party plugin ``name`` ("image", "text", "audio") cannot be imported."""
    if name not in PLUGIN_PACKAGES:
        raise ValueError(f"unknown plugin {name!r}; known: {sorted(PLUGIN_PACKAGES)}")
    if name not in _importable:
        try:
            importlib.import_module(PLUGIN_PACKAGES[name])
            _importable[name] = True
        except ImportError:
            _importable[name] = False
    return not _importable[name]


def plugin_reason(names) -> str:
    """'needs the image plugin (mmgen-image)', 'needs the image and text plugins (mmgen-image, mmgen-text)'."""
    names = list(dict.fromkeys(names))
    said = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    return (f"needs the {said} plugin{'s' if len(names) > 1 else ''} "
            f"({', '.join(PLUGIN_DISTRIBUTIONS[n] for n in names)})")


def pytest_configure(config):
    config.addinivalue_line("markers", "plugins(*names): needs these first-party plugins (image, text, audio); "
                                       "skipped where one is not installed")
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:  # pytest -n: the workers share the cores (OpenMP teams oversubscribed spin and stall)
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


def pytest_sessionstart(session):
    if os.environ.get("MMGEN_REQUIRE_NATIVE") == "1" and not mmgen.ops.has_native():
        raise pytest.UsageError(f"MMGEN_REQUIRE_NATIVE=1 but mmgen._C did not load: "
                                f"{mmgen._extension.load_error()!r}")


def pytest_runtest_setup(item):
    if item.get_closest_marker("cuda") is not None and not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    needed = [name for marker in item.iter_markers("plugins") for name in marker.args]
    missing = [name for name in dict.fromkeys(needed) if plugin_missing(name)]
    if missing:
        pytest.skip(plugin_reason(missing))


def pytest_report_header(config):
    return f"mmgen build: {mmgen.ops.build_info()}"


@pytest.fixture
def isolated(monkeypatch):
    """A fresh plugin manager that loads no entry points; tests register what they need."""
    from mmgen import plugins
    monkeypatch.setenv(plugins.DISABLE_AUTOLOAD_ENV, "1")
    plugins.reset()
    yield
    plugins.reset()


TINY_MFM_ARGS = ["--set", "train.steps=4", "--set", "train.log_every=1", "--set", "train.eval_every=2",
                 "--set", "train.sample_every=2", "--set", "train.num_samples=4", "--set", "eval.judge_steps=2",
                 "--set", "eval.max_examples=8", "--set", "eval.pocketsphinx=false"]


@pytest.fixture(scope="session")
def tiny_mfm_run(tmp_path_factory):
    """``mmgen train --preset mfm-digits`` for 4 steps (samples at steps 2 and 4, an evaluation with
    judges on 8 val examples): ``(run folder, what the command printed)``, shared by the report,
    TensorBoard, demo and browser tests."""
    import contextlib
    import io
    missing = [name for name in ("image", "audio", "text") if plugin_missing(name)]
    if missing:
        pytest.skip(plugin_reason(missing))
    from mmgen import cli
    out = str(tmp_path_factory.mktemp("tiny") / "mfm-digits")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert cli.main(["train", "--preset", "mfm-digits", "--out", out, *TINY_MFM_ARGS]) == 0
    return out, printed.getvalue()
