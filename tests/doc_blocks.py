"""The ```python blocks of README.md and docs/*.md, with the test directive written before each.

A block runs as written, in a fresh namespace, unless the HTML comment on the line right above its
opening fence says otherwise:

    <!-- test: plugins=image,text; needs=sklearn; replace "steps": 2000 -> "steps": 20 -->
    <!-- test: run-by=tests/test_gan.py::test_docs_gan_example_runs; replace ... -->
    <!-- test: skip (why it cannot run in a test) -->

* ``plugins=a,b``: the first-party plugins it needs (skipped, named, where one is missing);
* ``needs=mod,mod``: other Python modules it imports (skipped, named, where one is missing);
* ``replace OLD -> NEW``: shorten it (fewer steps, a smaller k); OLD must occur in the block;
* ``run-by=FILE::TEST``: that test runs it (with its own checks), through :func:`find` and
  :func:`prepared`, so it is not run a second time;
* ``skip (reason)``: it cannot run in a test (a fragment, a C++ build); the reason is required.

tests/test_docs_code.py runs or accounts for every block; the model tests use :func:`find`.
"""
from __future__ import annotations

import dataclasses
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]
DIRECTIVE = re.compile(r"^<!-- test: (?P<body>.*?) -->$")
FENCE = re.compile(r"^```(?P<lang>[\w+-]*)\s*$")


class DirectiveError(ValueError):
    """A test directive that cannot be read, or one that does not stand before a ```python block."""


@dataclasses.dataclass
class Block:
    path: str                      # relative to the repository root, e.g. "docs/gan.md"
    line: int                      # line of the opening fence, 1-based
    heading: str                   # the nearest heading above it, without the #s
    code: str
    plugins: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()
    replacements: tuple[tuple[str, str], ...] = ()
    run_by: str | None = None
    skip: str | None = None

    @property
    def id(self) -> str:
        return f"{self.path}:{self.line}"


def documents() -> list[pathlib.Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def parse_directive(body: str, where: str) -> dict:
    body = body.strip()
    if body.startswith("skip"):
        reason = body[len("skip"):].strip()
        if reason.startswith("(") and reason.endswith(")"):
            reason = reason[1:-1].strip()
        if not reason:
            raise DirectiveError(f"{where}: `skip` needs its reason: <!-- test: skip (why) -->")
        return {"skip": reason}
    out: dict = {"replacements": []}
    for item in (part.strip() for part in body.split("; ")):
        if item.startswith("plugins="):
            out["plugins"] = tuple(n.strip() for n in item[len("plugins="):].split(",") if n.strip())
        elif item.startswith("needs="):
            out["needs"] = tuple(n.strip() for n in item[len("needs="):].split(",") if n.strip())
        elif item.startswith("run-by="):
            out["run_by"] = item[len("run-by="):].strip()
        elif item.startswith("replace ") and " -> " in item:
            old, new = item[len("replace "):].split(" -> ", 1)
            out["replacements"].append((old, new))
        else:
            raise DirectiveError(f"{where}: unknown test directive {item!r} (known: plugins=..., needs=..., "
                                 "replace OLD -> NEW, run-by=FILE::TEST, skip (reason))")
    out["replacements"] = tuple(out["replacements"])
    return out


def python_blocks(path: pathlib.Path) -> list[Block]:
    """The ```python blocks of one markdown file, with their directives."""
    rel = path.relative_to(ROOT).as_posix()
    lines = path.read_text().splitlines()
    blocks, heading, i = [], "", 0
    while i < len(lines):
        line = lines[i]
        fence = FENCE.match(line)
        if fence:
            end = next((j for j in range(i + 1, len(lines)) if lines[j].startswith("```")), None)
            if end is None:
                raise DirectiveError(f"{rel}:{i + 1}: a code block that is never closed")
            directive = DIRECTIVE.match(lines[i - 1]) if i else None
            if fence.group("lang") == "python":
                options = parse_directive(directive.group("body"), f"{rel}:{i}") if directive else {}
                blocks.append(Block(rel, i + 1, heading, "\n".join(lines[i + 1:end]) + "\n", **options))
            elif directive:
                raise DirectiveError(f"{rel}:{i}: a test directive before a ```{fence.group('lang')} block "
                                     "(only ```python blocks run)")
            i = end + 1
            continue
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        elif DIRECTIVE.match(line) and not (i + 1 < len(lines) and FENCE.match(lines[i + 1])):
            raise DirectiveError(f"{rel}:{i + 1}: a test directive must stand right above a ```python block")
        i += 1
    return blocks


def all_blocks() -> list[Block]:
    return [block for path in documents() for block in python_blocks(path)]


def find(path: str, heading: str, index: int = 0) -> Block:
    """The ``index``-th ```python block under the heading ``heading`` of ``path`` (e.g. "docs/gan.md")."""
    under = [b for b in python_blocks(ROOT / path) if b.heading == heading]
    if len(under) <= index:
        raise LookupError(f"{path} has {len(under)} python block(s) under the heading {heading!r}")
    return under[index]


def prepared(block: Block) -> str:
    """The block's code with its replacements made (each must occur, so the text cannot drift)."""
    code = block.code
    for old, new in block.replacements:
        if old not in code:
            raise AssertionError(f"{block.id}: the test directive replaces {old!r}, which the block no "
                                 "longer contains: update the directive")
        code = code.replace(old, new)
    return code


def run(block: Block) -> dict:
    """Execute the prepared block in a fresh namespace (in the current directory); its namespace."""
    namespace: dict = {"__name__": "doc_block"}
    exec(compile(prepared(block), f"{block.id} ({block.heading})", "exec"), namespace)
    return namespace
