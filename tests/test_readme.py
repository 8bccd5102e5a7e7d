"""The README is a short user guide: the two commands first, every docs page linked. Its Python
example, like every Python block of the README and docs/, runs in tests/test_docs_code.py."""
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_readme_starts_with_the_two_commands():
    lines = README.split("```bash\n", 1)[1].split("```", 1)[0].strip().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("bash scripts/install.sh data && ")
    assert lines[1].startswith("bash scripts/install.sh test && .venv/bin/python -m pytest")


def test_readme_is_short_and_links_every_docs_page():
    assert len(README.splitlines()) < 200, "the README is a short guide: details go to docs/"
    linked = set(re.findall(r"\]\((docs/[\w.-]+\.md)", README))
    pages = {p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").glob("*.md")}
    assert pages - linked == set(), f"docs pages the README does not link: {sorted(pages - linked)}"
