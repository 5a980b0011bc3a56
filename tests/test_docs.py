"""Every Python example in the docs at least compiles, and names only what the package exports."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import agora_chat_async
from agora_chat_async import testing

ROOT = Path(__file__).parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)


def examples() -> list[tuple[str, str]]:
    found = []
    for doc in DOCS:
        for index, block in enumerate(BLOCK.findall(doc.read_text("utf-8"))):
            found.append((f"{doc.name}#{index}", block))
    return found


@pytest.mark.parametrize(("where", "code"), examples(), ids=[w for w, _ in examples()])
def test_examples_compile_and_import_what_exists(where, code):
    tree = ast.parse(code, filename=where)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module in (
            "agora_chat_async",
            "agora_chat_async.testing",
        ):
            module = agora_chat_async if node.module == "agora_chat_async" else testing
            for alias in node.names:
                assert hasattr(module, alias.name), f"{where}: {node.module}.{alias.name}"


def test_there_are_examples():
    assert len(examples()) >= 8


RUNNABLE = [
    (f"endpoints.md#{index}", block)
    for index, block in enumerate(
        BLOCK.findall((ROOT / "docs" / "endpoints.md").read_text("utf-8"))
    )
    if "anyio.run(main)" in block
]


@pytest.mark.parametrize(("where", "code"), RUNNABLE, ids=[w for w, _ in RUNNABLE])
def test_endpoint_examples_run_against_the_emulator(where, code, capsys):
    exec(compile(code, where, "exec"), {"__name__": "__main__"})  # noqa: S102 - our own docs


def test_every_endpoint_example_is_run():
    assert len(RUNNABLE) == 7
