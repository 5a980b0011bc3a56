"""The pytest plugin (entry point ``pytest11``): an emulator and a client in one line.

Fixtures:

- ``agora_emulator``: a fresh :class:`Emulator` with the documented quotas, org
  ``test-org``, app ``test-app`` and static token ``test-token``. Override this
  fixture in your ``conftest.py`` to configure it.
- ``agora_client``: an :class:`AgoraChatClient` wired to ``agora_emulator``
  in-process (needs pytest-asyncio; closed after the test).
- ``agora_emulator_server``: ``agora_emulator`` served on a free ``127.0.0.1``
  port (needs uvicorn); ``.url`` is its base URL.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from .._client import AgoraChatClient
from ._emulator import Emulator
from ._server import EmulatorServer


@pytest.fixture
def agora_emulator() -> Emulator:
    """A fresh emulator with the documented quotas (override to configure)."""
    return Emulator()


@pytest.fixture
def agora_emulator_server(agora_emulator: Emulator) -> Iterator[EmulatorServer]:
    """``agora_emulator`` served on a free local port for the duration of the test."""
    with EmulatorServer(agora_emulator) as server:
        yield server


try:
    import pytest_asyncio
except ImportError:  # pragma: no cover - the async fixture needs pytest-asyncio
    pass
else:

    @pytest_asyncio.fixture
    async def agora_client(agora_emulator: Emulator) -> AsyncIterator[AgoraChatClient]:
        """A client wired to ``agora_emulator`` in-process, closed after the test."""
        async with agora_emulator.client() as client:
            yield client
