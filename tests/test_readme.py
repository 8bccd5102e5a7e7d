"""The README starts with the install-and-run and the install-and-test commands (its Python
examples run in tests/test_docs_code.py)."""
import pathlib

README = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_readme_starts_with_the_two_commands():
    lines = README.split("```bash\n", 1)[1].split("```", 1)[0].strip().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("bash scripts/install.sh data && ")
    assert lines[1].startswith("bash scripts/install.sh test && python -m pytest")
