"""The ``agora-chat`` command (``pip install 'agora-chat-async[cli]'``).

Every command but ``demo`` talks to a real service (or to the emulator served with
``python -m agora_chat_async.testing``), configured from flags or environment variables::

    AGORA_CHAT_BASE_URL, AGORA_CHAT_ORG, AGORA_CHAT_APP, and one of
    AGORA_CHAT_TOKEN | AGORA_CHAT_CLIENT_ID + AGORA_CHAT_CLIENT_SECRET
                     | AGORA_CHAT_APP_ID + AGORA_CHAT_APP_CERTIFICATE

Secrets are never printed. A user's mistake (a missing setting, an unreadable file, a
malformed line) is one line on stderr and exit status 2, never a traceback; a service
refusal is one line and exit status 1.

Inside: ``_settings`` (the service settings, declared once with their variables),
``_progress`` (the one progress display), ``_inputs`` (reading files and bodies),
``_commands`` (the commands that talk to a service), ``_demo`` and ``_main`` (the parser
and the dispatch). Nothing here imports back up the chain.
"""

from __future__ import annotations

from ._main import main

__all__ = ["main"]
