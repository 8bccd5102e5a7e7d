"""Every ```python block of README.md and docs/*.md runs in the tests, so the documentation never rots.

A block runs as written (shortened by its test directive, tests/doc_blocks.py), in a fresh
namespace in a temporary folder; a block another test runs with its own checks names that test,
which must exist and read the block's page; a block that cannot run says why and is reported as
skipped with that reason (`pytest -rs` lists them)."""
import ast

import pytest

import doc_blocks
from conftest import PLUGIN_PACKAGES

BLOCKS = doc_blocks.all_blocks()


def _param(block: doc_blocks.Block):
    marks = [pytest.mark.plugins(*block.plugins)] if block.plugins else []
    if block.skip:
        marks.append(pytest.mark.skip(reason=f"{block.id} ({block.heading}): {block.skip}"))
    return pytest.param(block, marks=marks, id=block.id)


def test_the_docs_have_python_blocks_and_each_is_accounted_for():
    assert {b.path for b in BLOCKS} >= {"README.md", "docs/training.md", "docs/ops.md"}
    for block in BLOCKS:
        assert sum(x is not None for x in (block.run_by, block.skip)) <= 1, f"{block.id}: run-by and skip"
        assert not (block.skip and block.replacements), f"{block.id}: a skipped block replaces nothing"


@pytest.mark.parametrize("block", [_param(b) for b in BLOCKS])
def test_block(block, tmp_path, monkeypatch):
    if block.run_by:
        _check_run_by(block)
        return
    for module in block.needs:
        pytest.importorskip(module, reason=f"{block.id} needs {module}")
    monkeypatch.chdir(tmp_path)
    doc_blocks.run(block)


def _check_run_by(block: doc_blocks.Block) -> None:
    """The named test exists and reads this block's page (it runs the block with doc_blocks.find)."""
    file, sep, name = block.run_by.partition("::")
    path = doc_blocks.ROOT / file
    assert sep and path.exists(), f"{block.id}: run-by={block.run_by}: no such test file"
    source = path.read_text()
    tests = {node.name for node in ast.walk(ast.parse(source)) if isinstance(node, ast.FunctionDef)}
    assert name in tests, f"{block.id}: run-by={block.run_by}: {file} has no test {name}"
    assert block.path in source, f"{block.id}: run-by={block.run_by}: {file} never mentions {block.path}"
    doc_blocks.prepared(block)  # its replacements still apply


def test_a_directive_must_stand_before_a_python_block_and_be_known(tmp_path, monkeypatch):
    monkeypatch.setattr(doc_blocks, "ROOT", tmp_path)
    page = tmp_path / "page.md"
    page.write_text("# A\n\n<!-- test: skip (a fragment) -->\n```python\nx = 1\n```\n\n"
                    "<!-- test: plugins=image; replace 1 -> 2 -->\n```python\nx = 1\n```\n")
    first, second = doc_blocks.python_blocks(page)
    assert first.skip == "a fragment" and first.heading == "A" and first.line == 4
    assert second.plugins == ("image",) and doc_blocks.prepared(second) == "x = 2\n"
    for bad, message in [("<!-- test: skip -->\n```python\nx\n```\n", "needs its reason"),
                         ("<!-- test: fast -->\n```python\nx\n```\n", "unknown test directive 'fast'"),
                         ("<!-- test: skip (no) -->\n\n```python\nx\n```\n", "right above"),
                         ("<!-- test: skip (no) -->\n```bash\nls\n```\n", "before a ```bash block")]:
        page.write_text(bad)
        with pytest.raises(doc_blocks.DirectiveError, match=message):
            doc_blocks.python_blocks(page)
    page.write_text("<!-- test: replace 3 -> 4 -->\n```python\nx = 1\n```\n")
    with pytest.raises(AssertionError, match="no longer contains"):
        doc_blocks.prepared(doc_blocks.python_blocks(page)[0])


def test_plugin_names_are_known():
    unknown = {(b.id, p) for b in BLOCKS for p in b.plugins if p not in PLUGIN_PACKAGES}
    assert not unknown, f"unknown plugins in test directives: {sorted(unknown)}"
