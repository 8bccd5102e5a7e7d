import os

import pytest
import torch

import mmgen

# Tests that need the CUDA device carry the `cuda` marker; use DEVICES to parametrize over devices.
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]


def pytest_sessionstart(session):
    if os.environ.get("MMGEN_REQUIRE_NATIVE") == "1" and not mmgen.ops.has_native():
        raise pytest.UsageError(f"MMGEN_REQUIRE_NATIVE=1 but mmgen._C did not load: "
                                f"{mmgen._extension.load_error()!r}")


def pytest_runtest_setup(item):
    if item.get_closest_marker("cuda") is not None and not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")


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
