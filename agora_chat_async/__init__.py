"""agora-chat-async: an asyncio client for the Agora Chat server REST API for messages.

Layout: every implementation module is private (``_client.py``, ``_limits.py``,
...); this module re-exports the public API with ``from ._x import Y as Y``
into one sorted ``__all__`` and stamps each object's ``__module__`` so that
tracebacks and docs show ``agora_chat_async.RateLimitedError``, never the
private path. ``tests/test_exports.py`` pins the surface.
"""

from ._auth import AgoraAppToken as AgoraAppToken
from ._auth import Auth as Auth
from ._auth import ClientCredentials as ClientCredentials
from ._auth import StaticToken as StaticToken
from ._client import DEFAULT_TIMEOUT as DEFAULT_TIMEOUT
from ._client import AgoraChatClient as AgoraChatClient
from ._clock import Clock as Clock
from ._clock import SystemClock as SystemClock
from ._durable import DurableFanOut as DurableFanOut
from ._events import BatchSplit as BatchSplit
from ._events import Event as Event
from ._events import EventHook as EventHook
from ._events import LimiterWait as LimiterWait
from ._events import RateLimited as RateLimited
from ._events import RecipientsSettled as RecipientsSettled
from ._events import RequestSent as RequestSent
from ._events import Retrying as Retrying
from ._exceptions import AgoraChatError as AgoraChatError
from ._exceptions import APIError as APIError
from ._exceptions import AuthenticationError as AuthenticationError
from ._exceptions import BadRequestError as BadRequestError
from ._exceptions import ClientClosedError as ClientClosedError
from ._exceptions import ConflictError as ConflictError
from ._exceptions import ConnectError as ConnectError
from ._exceptions import EditLimitError as EditLimitError
from ._exceptions import FeatureNotEnabledError as FeatureNotEnabledError
from ._exceptions import ForbiddenError as ForbiddenError
from ._exceptions import JobLeaseError as JobLeaseError
from ._exceptions import LimiterStoreError as LimiterStoreError
from ._exceptions import LimiterUnavailableError as LimiterUnavailableError
from ._exceptions import LimitReachedError as LimitReachedError
from ._exceptions import NotFoundError as NotFoundError
from ._exceptions import OutcomeUnknownError as OutcomeUnknownError
from ._exceptions import PayloadTooLargeError as PayloadTooLargeError
from ._exceptions import QuotaExhaustedError as QuotaExhaustedError
from ._exceptions import RateLimitedError as RateLimitedError
from ._exceptions import SendFailedError as SendFailedError
from ._exceptions import ServerError as ServerError
from ._exceptions import TransportError as TransportError
from ._exceptions import UnexpectedResponseError as UnexpectedResponseError
from ._exceptions import ValidationError as ValidationError
from ._fanout import FanOut as FanOut
from ._fanout import MessageOptions as MessageOptions
from ._files import MAX_UPLOAD_BYTES as MAX_UPLOAD_BYTES
from ._flight import InFlight as InFlight
from ._history import HistoryStream as HistoryStream
from ._limits import Limiter as Limiter
from ._limits import SlidingWindowLimiter as SlidingWindowLimiter
from ._models import AudioBody as AudioBody
from ._models import BatchRecallResult as BatchRecallResult
from ._models import Body as Body
from ._models import Broadcast as Broadcast
from ._models import ChatType as ChatType
from ._models import CmdBody as CmdBody
from ._models import CustomBody as CustomBody
from ._models import EditableType as EditableType
from ._models import FileBody as FileBody
from ._models import HistoryFile as HistoryFile
from ._models import HistoryRecord as HistoryRecord
from ._models import ImageBody as ImageBody
from ._models import ImageSize as ImageSize
from ._models import ImportedMessage as ImportedMessage
from ._models import LocationBody as LocationBody
from ._models import OfflineStatus as OfflineStatus
from ._models import Recall as Recall
from ._models import RecallResult as RecallResult
from ._models import RoomMessageLevel as RoomMessageLevel
from ._models import SendResult as SendResult
from ._models import TextBody as TextBody
from ._models import UnknownBody as UnknownBody
from ._models import UploadedFile as UploadedFile
from ._models import VideoBody as VideoBody
from ._permit import Permit as Permit
from ._permit import ServerTiming as ServerTiming
from ._pool import pooled_transport as pooled_transport
from ._progress import FileProgressStore as FileProgressStore
from ._progress import JobProgress as JobProgress
from ._progress import ProgressStore as ProgressStore
from ._rates import DEFAULT_RATE_LIMITS as DEFAULT_RATE_LIMITS
from ._rates import BroadcastKind as BroadcastKind
from ._rates import BroadcastLimits as BroadcastLimits
from ._rates import Claim as Claim
from ._rates import DailyLimit as DailyLimit
from ._rates import LimitName as LimitName
from ._rates import Priority as Priority
from ._rates import Rate as Rate
from ._rates import RateLimits as RateLimits
from ._redis_limiter import RedisLimiter as RedisLimiter
from ._redis_progress import RedisProgressStore as RedisProgressStore
from ._retry import DEFAULT_RETRY_POLICY as DEFAULT_RETRY_POLICY
from ._retry import RetryPolicy as RetryPolicy
from ._version import __version__ as __version__

__all__ = [
    "DEFAULT_RATE_LIMITS",
    "DEFAULT_RETRY_POLICY",
    "DEFAULT_TIMEOUT",
    "MAX_UPLOAD_BYTES",
    "APIError",
    "AgoraAppToken",
    "AgoraChatClient",
    "AgoraChatError",
    "AudioBody",
    "Auth",
    "AuthenticationError",
    "BadRequestError",
    "BatchRecallResult",
    "BatchSplit",
    "Body",
    "Broadcast",
    "BroadcastKind",
    "BroadcastLimits",
    "ChatType",
    "Claim",
    "ClientClosedError",
    "ClientCredentials",
    "Clock",
    "CmdBody",
    "ConflictError",
    "ConnectError",
    "CustomBody",
    "DailyLimit",
    "DurableFanOut",
    "EditLimitError",
    "EditableType",
    "Event",
    "EventHook",
    "FanOut",
    "FeatureNotEnabledError",
    "FileBody",
    "FileProgressStore",
    "ForbiddenError",
    "HistoryFile",
    "HistoryRecord",
    "HistoryStream",
    "ImageBody",
    "ImageSize",
    "ImportedMessage",
    "InFlight",
    "JobLeaseError",
    "JobProgress",
    "LimitName",
    "LimitReachedError",
    "Limiter",
    "LimiterStoreError",
    "LimiterUnavailableError",
    "LimiterWait",
    "LocationBody",
    "MessageOptions",
    "NotFoundError",
    "OfflineStatus",
    "OutcomeUnknownError",
    "PayloadTooLargeError",
    "Permit",
    "Priority",
    "ProgressStore",
    "QuotaExhaustedError",
    "Rate",
    "RateLimited",
    "RateLimitedError",
    "RateLimits",
    "Recall",
    "RecallResult",
    "RecipientsSettled",
    "RedisLimiter",
    "RedisProgressStore",
    "RequestSent",
    "RetryPolicy",
    "Retrying",
    "RoomMessageLevel",
    "SendFailedError",
    "SendResult",
    "ServerError",
    "ServerTiming",
    "SlidingWindowLimiter",
    "StaticToken",
    "SystemClock",
    "TextBody",
    "TransportError",
    "UnexpectedResponseError",
    "UnknownBody",
    "UploadedFile",
    "ValidationError",
    "VideoBody",
    "__version__",
    "pooled_transport",
]


def _fixup_module_metadata() -> None:
    for name in __all__:
        obj = globals()[name]
        if isinstance(obj, type) and obj.__module__.startswith("agora_chat_async._"):
            obj.__module__ = "agora_chat_async"


_fixup_module_metadata()
del _fixup_module_metadata
