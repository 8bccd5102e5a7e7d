"""Turn the output of a failed native build into the failing files and their error lines."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

__all__ = ["CompilerError", "compiler_errors", "build_failure_summary"]

# gcc / clang:  path/file.cpp:12:5: error: message      (also "fatal error:")
_GCC = re.compile(r"^(?P<file>[^\s:][^:]*\.[A-Za-z+]+):(?P<line>\d+):(?:\d+:)?\s*(?:fatal )?error:\s*(?P<msg>.*)$")
# nvcc / EDG:   path/file.cu(12): error: message         (also "error #20:", "catastrophic error:")
_NVCC = re.compile(r"^(?P<file>[^\s(][^(]*\.[A-Za-z+]+)\((?P<line>\d+)\):\s*(?:catastrophic )?error(?: #[\w-]+)?:\s*(?P<msg>.*)$")
_LINKER = re.compile(r"undefined reference to|undefined symbol|ld(?:\.\w+)?: .*error|collect2: error")
_EXCEPTION = re.compile(r"^(?:[\w.]+\.)?\w*(?:Error|Exception): .+")
_FAILED = re.compile(r"^FAILED: (?P<target>\S+)")


@dataclass
class CompilerError:
    file: str  # relative to the built project when inside it
    line: int
    message: str
    context: list = field(default_factory=list)  # the source line and caret the compiler printed

    def __str__(self):
        return f"{self.file}:{self.line}: error: {self.message}"


def _relative(path: str, root: str) -> str:
    full = os.path.realpath(os.path.join(root, path))
    base = os.path.realpath(root)
    return os.path.relpath(full, base) if full.startswith(base + os.sep) else path


def compiler_errors(output: str, root: str) -> list[CompilerError]:
    """Every ``error`` line of gcc/clang or nvcc in ``output``, with the context lines after it."""
    errors: list[CompilerError] = []
    lines = output.splitlines()
    for i, line in enumerate(lines):
        match = _GCC.match(line.strip()) or _NVCC.match(line.strip())
        if not match:
            continue
        context = []
        for follow in lines[i + 1:i + 3]:  # nvcc and gcc print the offending source line and a caret
            if follow.strip() and not (_GCC.match(follow.strip()) or _NVCC.match(follow.strip())) \
                    and not follow.startswith(("[", "ninja", "FAILED")) and len(follow) < 300:
                context.append(follow.rstrip())
        errors.append(CompilerError(_relative(match["file"], root), int(match["line"]), match["msg"].strip(), context))
    return errors


def build_failure_summary(output: str, root: str, max_errors: int = 10) -> str:
    """A short explanation of a failed build: failing files and errors, else the cause found."""
    errors = compiler_errors(output, root)
    lines = []
    if errors:
        files = list(dict.fromkeys(e.file for e in errors))
        lines.append(f"compiler errors in {len(files)} file{'s' * (len(files) != 1)}: {', '.join(files)}")
        for error in errors[:max_errors]:
            lines.append(f"  {error}")
            lines += [f"      {c.strip()}" for c in error.context]
        if len(errors) > max_errors:
            lines.append(f"  ... and {len(errors) - max_errors} more errors")
        return "\n".join(lines)
    failed = [m["target"] for m in map(_FAILED.match, output.splitlines()) if m]
    if failed:
        lines.append("failed to build " + ", ".join(_relative(t, root) for t in failed))
    linker = [line.strip() for line in output.splitlines() if _LINKER.search(line)]
    if linker:
        lines.append("linker errors:")
        lines += [f"  {line}" for line in linker[:max_errors]]
    exceptions = [line.strip() for line in output.splitlines() if _EXCEPTION.match(line.strip())]
    if exceptions:
        lines.append(exceptions[-1])
    if not lines:
        lines.append("no compiler error recognized; last lines of the output:")
        lines += [f"  {line}" for line in output.splitlines()[-20:]]
    return "\n".join(lines)
