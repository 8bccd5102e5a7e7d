"""Every distribution of the checkout (the core, the first-party plugins, the example plugin) takes
its version from one place, its package's ``__version__``, ships the Apache-2.0 LICENSE and marks
itself typed (``py.typed``)."""
import importlib
import importlib.metadata
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
DISTRIBUTIONS = {".": "mmgen", "plugins/mmgen-image": "mmgen_image", "plugins/mmgen-text": "mmgen_text",
                 "plugins/mmgen-audio": "mmgen_audio", "examples/mmgen-gumbel": "mmgen_gumbel"}


@pytest.mark.parametrize("folder,package", DISTRIBUTIONS.items())
def test_one_version_a_license_and_py_typed(folder, package):
    root = ROOT / folder
    text = (root / "pyproject.toml").read_text()
    project = text.split("[project]", 1)[1].split("\n[", 1)[0]
    assert not re.search(r"^version\s*=", project, re.M), f"{folder}/pyproject.toml writes the version again"
    assert re.search(r'^dynamic = \["version"\]', project, re.M)
    assert f'version = {{attr = "{package}.__version__"}}' in text
    assert f'"{package}" = ["py.typed"]' in text and (root / package / "py.typed").is_file()
    license_text = (root / "LICENSE").read_text()
    assert license_text.startswith("Apache License") or license_text.lstrip().startswith("Apache License")
    assert "Version 2.0, January 2004" in license_text and "END OF TERMS AND CONDITIONS" in license_text
    assert 'license = { text = "Apache-2.0" }' in project


@pytest.mark.parametrize("folder,package", DISTRIBUTIONS.items())
def test_the_installed_metadata_carries_that_version(folder, package):
    name = pathlib.PurePath(folder).name if folder != "." else "mmgen"
    try:
        installed = importlib.metadata.version(name)
        module = importlib.import_module(package)
    except (importlib.metadata.PackageNotFoundError, ImportError):
        pytest.skip(f"{name} is not installed here (the core-only run installs mmgen alone)")
    assert installed == module.__version__
