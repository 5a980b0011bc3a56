"""The package's module graph: no runtime import cycle, and at most one long module."""

from __future__ import annotations

import ast
from pathlib import Path

import agora_chat_async

PACKAGE = Path(agora_chat_async.__file__).parent


def module_name(path: Path, package: Path = PACKAGE) -> str:
    parts = ["agora_chat_async", *path.relative_to(package).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def runtime_imports(path: Path, package: Path = PACKAGE) -> set[str]:
    """The package's modules that *path* imports when it runs (not under TYPE_CHECKING)."""
    tree = ast.parse(path.read_text("utf-8"))
    here = module_name(path, package).split(".")
    if path.name != "__init__.py":
        here = here[:-1]  # the package the module is in
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("agora_chat_async"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(here[: len(here) - node.level + 1])
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            if target.startswith("agora_chat_async"):
                found.add(target)
                found.update(f"{target}.{a.name}" for a in node.names)  # `from . import x`
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def graph() -> dict[str, set[str]]:
    """Each module's runtime imports of the package's modules. A module's own ancestors are
    left out: Python has imported a package before any module in it runs."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {
        name: {
            m
            for m in runtime_imports(path)
            if m in modules and m != name and not name.startswith(m + ".")
        }
        for name, path in modules.items()
    }


def test_no_module_imports_itself_back_at_run_time():
    edges = graph()
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def walk(name: str) -> None:
        state[name] = 1
        path.append(name)
        for target in sorted(edges[name]):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                walk(target)
        path.pop()
        state[name] = 2

    for name in sorted(edges):
        if name not in state:
            walk(name)
    assert cycles == []


def test_the_walk_sees_a_cycle_when_there_is_one(tmp_path):
    (tmp_path / "a.py").write_text("from .b import x\n")
    (tmp_path / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import y\n"
        "def f():\n    from . import a\n"
    )
    assert "agora_chat_async.b" in runtime_imports(tmp_path / "a.py", tmp_path)
    assert "agora_chat_async.a" in runtime_imports(tmp_path / "b.py", tmp_path)  # the lazy one
    assert runtime_imports(tmp_path / "b.py", tmp_path) == {
        "agora_chat_async",
        "agora_chat_async.a",
    }


def test_at_most_one_module_is_over_600_lines_and_it_says_why():
    long = {
        module_name(p): p
        for p in PACKAGE.rglob("*.py")
        if len(p.read_text("utf-8").splitlines()) > 600
    }
    assert len(long) <= 1, sorted(long)
    for path in long.values():
        assert "over 600 lines" in path.read_text("utf-8")[:2000]
