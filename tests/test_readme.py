"""The README's Python examples run as written (so the README never rots)."""
import pathlib
import re

import pytest

README = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text()


def python_block(section: str) -> str:
    body = README.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", body, re.S).group(1)


def test_ops_example_runs():
    exec(compile(python_block("Ops"), "README.md (Ops)", "exec"), {})


@pytest.mark.plugins("image")
def test_models_example_runs(tmp_path, monkeypatch):
    pytest.importorskip("sklearn")
    monkeypatch.chdir(tmp_path)
    code = python_block("Models, training, sampling, evaluation").replace('"steps": 2000', '"steps": 20')
    code = code.replace("k=1000", "k=4")
    exec(compile(code, "README.md (Models)", "exec"), {})
    assert (tmp_path / "runs" / "mine" / "export" / "model.safetensors").exists()


def test_readme_starts_with_the_two_commands():
    lines = README.split("```bash\n", 1)[1].split("```", 1)[0].strip().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("bash scripts/install.sh data && ")
    assert lines[1].startswith("bash scripts/install.sh test && python -m pytest")
