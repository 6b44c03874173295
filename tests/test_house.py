"""The house rules a newcomer can rely on, checked on every run (STYLE.md, DESIGN.md):

- every module in src/cnnlab has at most MAX_MODULE_LINES lines and every function at most
  MAX_FUNCTION_LINES (decorators and docstring included: what a reader scrolls through);
- `# fmt: skip` (opting out of the formatter) stays rare across src and tests;
- only `cnnlab.cli` prints: library code returns data or calls a callback.

The import layering itself is checked by import-linter (`make lint`, contracts in pyproject.toml).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src" / "cnnlab"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
MAX_FMT_SKIPS = 5


def modules() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def functions(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            yield node.name, node.end_lineno - start + 1


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_module_and_function_sizes(path):
    text = path.read_text()
    assert len(text.splitlines()) <= MAX_MODULE_LINES, f"{path}: split it by concern"
    long = [(name, n) for name, n in functions(ast.parse(text)) if n > MAX_FUNCTION_LINES]
    assert not long, f"{path}: functions over {MAX_FUNCTION_LINES} lines: {long}"


def test_the_formatter_decides():
    files = [*SRC.rglob("*.py"), *(REPO / "tests").rglob("*.py")]
    marker = re.compile(r"#\s*fmt:\s*skip\s*$", re.MULTILINE)
    skips = sum(len(marker.findall(p.read_text())) for p in files)
    assert skips <= MAX_FMT_SKIPS, f"{skips} '# fmt: skip' markers; let ruff format decide"


def test_only_the_cli_prints():
    printing = []
    for path in modules():
        if "cli" in path.relative_to(SRC).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "print":
                printing.append(f"{path.relative_to(SRC)}:{node.lineno}")
    assert not printing, f"library code prints: {printing}"
