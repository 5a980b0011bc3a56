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


# -- every example runs, or says why not -------------------------------------------------

NOT_RUN = "<!-- not run by the tests:"


def blocks_with_marks() -> list[tuple[str, str, bool]]:
    """Every Python example: where, its code, and whether the docs say it is not run."""
    found = []
    for doc in DOCS:
        parts = doc.read_text("utf-8").split("```python\n")
        for index, part in enumerate(parts[1:]):
            marked = parts[index].rstrip().endswith("-->") and NOT_RUN in parts[index][-200:]
            found.append((f"{doc.name}#{index}", part.split("```", 1)[0], marked))
    return found


#: The scripts of these pages run as they are (``anyio.run(main)``), unless marked not run.
SCRIPTED = ("endpoints.md", "observability.md")
RUNNABLE = [
    (where, code)
    for where, code, marked in blocks_with_marks()
    if where.split("#")[0] in SCRIPTED and "anyio.run(main)" in code and not marked
]


@pytest.mark.parametrize(("where", "code"), RUNNABLE, ids=[w for w, _ in RUNNABLE])
def test_endpoint_examples_run_against_the_emulator(where, code, capsys):
    exec(compile(code, where, "exec"), {"__name__": "__main__"})  # noqa: S102 - our own docs


def test_every_endpoint_example_is_run():
    assert len(RUNNABLE) == 14


def _exec(where: str, code: str) -> dict[str, object]:
    namespace: dict[str, object] = {"__name__": "docs_example"}
    exec(compile(code, where, "exec"), namespace)  # noqa: S102 - our own docs
    return namespace


async def _call_tests(namespace: dict[str, object], agora_emulator, agora_client) -> int:
    """Call the example's test functions as pytest would, with the plugin's fixtures."""
    import inspect

    fixtures = {"agora_emulator": agora_emulator, "agora_client": agora_client}
    called = 0
    for name, function in namespace.items():
        if name.startswith("test_") and inspect.iscoroutinefunction(function):
            wanted = inspect.signature(function).parameters
            await function(**{key: fixtures[key] for key in wanted})
            called += 1
    return called


def _web_env(monkeypatch, server) -> None:
    monkeypatch.setenv("AGORA_BASE_URL", server.url)
    monkeypatch.setenv("AGORA_ORG", "test-org")
    monkeypatch.setenv("AGORA_APP", "test-app")
    monkeypatch.setenv("AGORA_CLIENT_ID", "docs-client")
    monkeypatch.setenv("AGORA_CLIENT_SECRET", "docs-secret")


def code_of(where: str) -> str:
    return next(code for name, code, _ in blocks_with_marks() if name == where)


RUN = {
    "README.md#0": "the Starlette app",
    "README.md#3": "a test",
    "errors.md#0": "a function called with a client",
    "testing.md#0": "a test",
    "testing.md#1": "the FastAPI app, with testing.md#2",
    "testing.md#2": "the FastAPI app's test",
    "testing.md#3": "a fixture",
    "testing.md#4": "a script",
    "testing.md#5": "a script",
    "testing.md#6": "a test",
    **{where: "a script" for where, _ in RUNNABLE},
}


def test_every_example_is_run_or_says_why_not():
    for where, _, marked in blocks_with_marks():
        assert marked != (where in RUN), f"{where}: run it here, or mark it {NOT_RUN} ... -->"


def test_the_readme_web_example_runs_on_starlette(monkeypatch):
    from starlette.testclient import TestClient

    from agora_chat_async.testing import Emulator, EmulatorServer

    emulator = Emulator(clients={"docs-client": "docs-secret"})
    with EmulatorServer(emulator) as server:
        _web_env(monkeypatch, server)
        namespace = _exec("README.md#0", code_of("README.md#0"))  # nothing built at import
        with TestClient(namespace["app"]) as http:  # type: ignore[arg-type]
            answer = http.post("/notify", json={"users": ["ann", "bob"], "text": "hi"})
    assert answer.status_code == 200
    assert sorted(answer.json()["delivered"]) == ["ann", "bob"]
    assert [d.body for d in emulator.delivered_to("ann")] == [{"msg": "hi"}]


async def test_the_fastapi_example_and_its_test_run(agora_emulator, agora_client):
    namespace = _exec("testing.md#1", code_of("testing.md#1"))  # nothing built at import
    exec(compile(code_of("testing.md#2"), "testing.md#2", "exec"), namespace)  # noqa: S102
    assert await _call_tests(namespace, agora_emulator, agora_client) == 1


@pytest.mark.parametrize("where", ["README.md#3", "testing.md#0", "testing.md#6"])
async def test_the_test_examples_pass(where, agora_emulator, agora_client):
    if "RedisServer" in code_of(where):
        pytest.importorskip("redis")
    namespace = _exec(where, code_of(where))
    assert await _call_tests(namespace, agora_emulator, agora_client) >= 1


async def test_the_error_example_runs(agora_emulator, agora_client, capsys):
    namespace = _exec("errors.md#0", code_of("errors.md#0"))
    await namespace["notify"](agora_client, ["ann"])  # type: ignore[operator]
    assert capsys.readouterr().out == ""  # delivered: nothing to report
    assert len(agora_emulator.delivered_to("ann")) == 1


@pytest.mark.parametrize("where", ["testing.md#3", "testing.md#4", "testing.md#5"])
def test_the_scripts_and_fixtures_run(where):
    code = code_of(where)
    namespace = {"__name__": "__main__"}
    exec(compile(code, where, "exec"), namespace)  # noqa: S102 - our own docs
