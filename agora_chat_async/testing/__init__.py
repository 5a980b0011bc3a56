"""Testing helpers: a strict emulator of the Agora Chat message API, and clocks.

This is public API, but ``import agora_chat_async`` does not load it.

- :class:`Emulator`: the message API as an ASGI application, with the documented
  validation, errors and per-app quotas, an inspection API, seeded faults and a
  :class:`Network` with latency.
  ``emulator.client()`` gives an :class:`~agora_chat_async.AgoraChatClient`
  wired to it in-process.
- :class:`EmulatorServer`: the same on a real local socket (needs uvicorn).
- :class:`MockClock` and :class:`ScaledClock`: virtual time, and sped-up time.
- :class:`RedisServer`: a throwaway ``redis-server`` on a free local port, for
  tests of a :class:`~agora_chat_async.RedisLimiter`.
- A pytest plugin (``agora_emulator``, ``agora_client``, ``agora_emulator_server``
  fixtures) registered through the ``pytest11`` entry point.

A user's test, in full::

    async def test_welcome_message(agora_emulator, agora_client):
        await agora_client.send_user_message("alice", TextBody(msg="welcome"))
        [delivery] = agora_emulator.delivered_to("alice")
        assert delivery.body == {"msg": "welcome"}
"""

from ._clock import MockClock as MockClock
from ._clock import ScaledClock as ScaledClock
from ._emulator import CALL_RATE_REFUSAL as CALL_RATE_REFUSAL
from ._emulator import ENDPOINTS as ENDPOINTS
from ._emulator import PLAN_REFUSAL as PLAN_REFUSAL
from ._emulator import QUOTA_REFUSAL as QUOTA_REFUSAL
from ._emulator import BroadcastRecord as BroadcastRecord
from ._emulator import Delivery as Delivery
from ._emulator import Edit as Edit
from ._emulator import Emulator as Emulator
from ._emulator import Imported as Imported
from ._emulator import Refusal as Refusal
from ._emulator import RoamingDeletion as RoamingDeletion
from ._faults import Faults as Faults
from ._network import Network as Network
from ._quota import Policy as Policy
from ._redis import RedisServer as RedisServer
from ._server import EmulatorServer as EmulatorServer

__all__ = [
    "CALL_RATE_REFUSAL",
    "ENDPOINTS",
    "PLAN_REFUSAL",
    "QUOTA_REFUSAL",
    "BroadcastRecord",
    "Delivery",
    "Edit",
    "Emulator",
    "EmulatorServer",
    "Faults",
    "Imported",
    "MockClock",
    "Network",
    "Policy",
    "RedisServer",
    "Refusal",
    "RoamingDeletion",
    "ScaledClock",
]

for _name in __all__:
    _obj = globals()[_name]
    if isinstance(_obj, type) and _obj.__module__.startswith("agora_chat_async.testing._"):
        _obj.__module__ = "agora_chat_async.testing"
del _name, _obj
