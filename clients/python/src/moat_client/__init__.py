"""Python clients for Moat: the HTTP API, a smolagents executor and a LangChain tool.

`MoatExecutor` and `MoatPythonTool` are imported on first use, so `import moat_client`
stays fast and never imports smolagents or LangChain for a program that only runs code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .client import DEFAULT_URL, MoatClient, MoatSession
from .errors import (
    AuthenticationError,
    BadRequestError,
    MoatConnectionError,
    MoatError,
    MoatHTTPError,
    MoatServerError,
    PayloadTooLargeError,
    ServiceUnavailableError,
    SessionNotFoundError,
    TooManyRequestsError,
)
from .results import PythonError, RunResult, SessionInfo, decode_images, image_bytes, is_image
from .tools import HostTool, ToolCallEvent
from .transfer import FileEntry, OutputEvent

if TYPE_CHECKING:
    from .langchain_tool import MoatPythonTool
    from .smolagents_executor import MoatExecutor

__all__ = [
    "DEFAULT_URL",
    "AuthenticationError",
    "BadRequestError",
    "FileEntry",
    "HostTool",
    "MoatClient",
    "MoatConnectionError",
    "MoatError",
    "MoatExecutor",
    "MoatHTTPError",
    "MoatPythonTool",
    "MoatServerError",
    "MoatSession",
    "OutputEvent",
    "PayloadTooLargeError",
    "PythonError",
    "RunResult",
    "ServiceUnavailableError",
    "SessionInfo",
    "SessionNotFoundError",
    "ToolCallEvent",
    "TooManyRequestsError",
    "decode_images",
    "image_bytes",
    "is_image",
]


def __getattr__(name: str) -> Any:
    if name == "MoatExecutor":
        from .smolagents_executor import MoatExecutor

        return MoatExecutor
    if name == "MoatPythonTool":
        from .langchain_tool import MoatPythonTool

        return MoatPythonTool
    raise AttributeError(f"module 'moat_client' has no attribute {name!r}")
