"""Typed views of Moat's JSON answers.

Each type keeps the decoded body in `raw`, so a field the server adds later is reachable
before this client learns its name.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class PythonError:
    """A Python exception raised by the code that ran (HTTP 200, `error` set)."""

    name: str
    """Always "PythonError" for an exception from the user's code."""
    message: str
    """The traceback of the user's code, ending with `ExceptionType: message`."""
    stack: str | None = None
    """Extra context for the model, e.g. what the code printed before it failed."""
    exception_type: str | None = None
    """The exception's class name (`pythonExceptionType`), e.g. "ZeroDivisionError"."""
    exception_value: str | None = None
    """`str()` of the exception (`pythonExceptionValue`)."""
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PythonError:
        return cls(
            name=str(data.get("name", "Error")),
            message=str(data.get("message", "")),
            stack=data.get("stack"),
            exception_type=data.get("pythonExceptionType"),
            exception_value=data.get("pythonExceptionValue"),
            raw=data,
        )

    def __str__(self) -> str:
        """The text a language model should see, built the way smolagents' Moat client did."""
        text = f"{self.name}: {self.message}"
        if self.stack:
            text += "\n" + self.stack
        return text


@dataclass(frozen=True)
class RunResult:
    """The answer to one run of code: a success or a Python exception."""

    result: Any
    """The value of the last expression statement, as JSON (images as `{"type": "image", ...}`)."""
    stdout: str
    stderr: str
    error: PythonError | None
    duration_ms: float | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunResult:
        error = data.get("error")
        return cls(
            result=data.get("result"),
            stdout=data.get("stdout") or "",
            stderr=data.get("stderr") or "",
            error=PythonError.from_json(error) if isinstance(error, dict) else None,
            duration_ms=data.get("durationMs"),
            raw=data,
        )

    @property
    def ok(self) -> bool:
        """True when the code ran to its end without raising."""
        return self.error is None


@dataclass(frozen=True)
class SessionInfo:
    """A session as the server describes it; `details` holds every field it sent."""

    id: str
    mode: str | None = None
    details: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any] | str) -> SessionInfo:
        if isinstance(data, str):
            return cls(id=data, details={"id": data})
        return cls(id=str(data["id"]), mode=data.get("mode"), details=data)


def is_image(value: Any) -> bool:
    """True for the protocol's image value `{"type": "image", "data": <base64 PNG>}`."""
    return (
        isinstance(value, dict)
        and value.get("type") == "image"
        and isinstance(value.get("data"), str)
    )


def image_bytes(value: dict[str, Any]) -> bytes:
    """The PNG bytes of an image value; no imaging library needed."""
    return base64.b64decode(value["data"])


def decode_images(value: Any) -> Any:
    """Turns image values into PIL images, also inside lists and dicts.

    Without Pillow installed, values are returned unchanged: the caller still has the PNG.
    """
    try:
        import PIL.Image
    except ImportError:
        return value

    def decode(item: Any) -> Any:
        if is_image(item):
            image = PIL.Image.open(io.BytesIO(image_bytes(item)))
            image.load()  # read now, so the buffer can be freed
            return image
        if isinstance(item, list):
            return [decode(x) for x in item]
        if isinstance(item, dict):
            return {k: decode(v) for k, v in item.items()}
        return item

    return decode(value)
