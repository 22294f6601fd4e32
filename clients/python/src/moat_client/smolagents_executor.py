"""`MoatExecutor`: a smolagents code executor that runs the agent's code in Moat.

    agent = CodeAgent(tools=[...], model=model, executor=MoatExecutor(url, token))

When smolagents is installed the executor subclasses its `RemotePythonExecutor`, so tools,
variables and the final answer travel exactly as smolagents sends and decodes them for its
other remote executors; this module only says how to run code and read the answer. Without
smolagents a small stand-in base keeps the executor usable on its own (and testable).
"""

from __future__ import annotations

import base64
import json
import logging
import pickle
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .client import DEFAULT_URL, MoatClient
from .errors import MoatError, SessionNotFoundError
from .results import RunResult, decode_images

_log = logging.getLogger("moat_client")

try:
    from smolagents.local_python_executor import CodeOutput
    from smolagents.monitoring import AgentLogger, LogLevel
    from smolagents.remote_executors import RemotePythonExecutor
    from smolagents.utils import AgentError

    SMOLAGENTS_AVAILABLE = True
except ImportError:
    SMOLAGENTS_AVAILABLE = False

    @dataclass
    class CodeOutput:  # type: ignore[no-redef]
        """The shape of smolagents' `CodeOutput`."""

        output: Any
        logs: str
        is_final_answer: bool

    class AgentError(Exception):  # type: ignore[no-redef]
        """Stands in for smolagents' `AgentError(message, logger)`."""

        def __init__(self, message: str, logger: Any = None) -> None:
            super().__init__(message)
            self.message = message
            if logger is not None:
                logger.log_error(message)

    class LogLevel:  # type: ignore[no-redef]
        ERROR = 0
        INFO = 1

    class AgentLogger:  # type: ignore[no-redef]
        """Stands in for smolagents' logger, writing to the `logging` module instead."""

        def __init__(self, level: int = LogLevel.INFO) -> None:
            self.level = level

        def log(self, *args: Any, level: int = LogLevel.INFO, **kwargs: Any) -> None:
            _log.info(" ".join(str(a) for a in args))

        def log_error(self, message: str) -> None:
            _log.error(message)

    class RemotePythonExecutor:  # type: ignore[no-redef]
        """The parts of smolagents' base that make sense without smolagents' tools."""

        FINAL_ANSWER_EXCEPTION = "FinalAnswerException"

        def __init__(self, additional_imports: list[str], logger: Any, allow_pickle: bool = False):
            self.additional_imports = additional_imports
            self.logger = logger
            self.allow_pickle = allow_pickle
            self.installed_packages: list[str] = []

        def __call__(self, code_action: str) -> CodeOutput:
            return self.run_code_raise_errors(code_action)

        def run_code_raise_errors(self, code: str) -> CodeOutput:
            raise NotImplementedError

        def send_tools(self, tools: dict[str, Any]) -> None:
            if tools:
                raise TypeError("Sending tools needs smolagents: pip install smolagents")

        def send_variables(self, variables: dict[str, Any]) -> None:
            """JSON-safe variables only: without smolagents there is no SafeSerializer."""
            if variables:
                payload = json.dumps(variables)
                self.run_code_raise_errors(f"import json\nlocals().update(json.loads({payload!r}))")

        @staticmethod
        def _deserialize_final_answer(encoded_value: str, allow_pickle: bool = False) -> Any:
            """Decodes smolagents' `safe:`/`pickle:` answer strings (JSON types, tuples, sets...)."""
            if encoded_value.startswith("safe:"):
                return _from_json_safe(json.loads(encoded_value[5:]))
            if encoded_value.startswith("pickle:"):
                if not allow_pickle:
                    raise ValueError("Pickle data rejected: allow_pickle=False")
                return pickle.loads(base64.b64decode(encoded_value[7:]))
            raise ValueError("Unknown final answer format: expected 'safe:' or 'pickle:' prefix")

    def _from_json_safe(obj: Any) -> Any:
        """The common cases of smolagents' `SafeSerializer.from_json_safe`."""
        if isinstance(obj, list):
            return [_from_json_safe(x) for x in obj]
        if not isinstance(obj, dict):
            return obj
        kind = obj.get("__type__")
        if kind == "tuple":
            return tuple(_from_json_safe(x) for x in obj["data"])
        if kind == "set":
            return {_from_json_safe(x) for x in obj["data"]}
        if kind == "frozenset":
            return frozenset(_from_json_safe(x) for x in obj["data"])
        if kind == "bytes":
            return base64.b64decode(obj["data"])
        if kind == "complex":
            return complex(obj["real"], obj["imag"])
        if kind == "dict_with_complex_keys":
            return {_from_json_safe(k): _from_json_safe(v) for k, v in obj["data"]}
        return {k: _from_json_safe(v) for k, v in obj.items()}


class MoatExecutor(RemotePythonExecutor):
    """Runs a smolagents agent's code in its own Moat session.

    Args:
        url: Moat's base URL.
        token: the bearer token (default: the MOAT_TOKEN environment variable).
        additional_imports: packages the server loads for every call. `CodeAgent` does not
            pass its `additional_authorized_imports` to an executor it is given, so pass the
            same list here when the agent's code imports more than the standard library.
        logger: a smolagents `AgentLogger`; a new one at INFO level by default.
        allow_pickle: as in smolagents: accept `pickle:` final answers (trusted servers only).
        mode: "persistent" (the default: the agent's variables live across steps) or
            "ephemeral".
        timeout_ms: a per-call limit to ask the server for; the server's policy caps it.
        client: a `MoatClient` to reuse instead of building one from url and token.
        stream_output: show what the code prints while it runs (through the logger, at INFO
            level) instead of only with the answer; off by default.
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        token: str | None = None,
        additional_imports: Iterable[str] | None = None,
        logger: Any = None,
        allow_pickle: bool = False,
        *,
        mode: str = "persistent",
        timeout_ms: int | None = None,
        client: MoatClient | None = None,
        stream_output: bool = False,
    ) -> None:
        super().__init__(list(additional_imports or []), logger or AgentLogger(), allow_pickle)
        self.client = client or MoatClient(url, token)
        self.timeout_ms = timeout_ms
        self.stream_output = stream_output
        self.session_id = self.client.create_session(mode).id
        # Deletes the session even when cleanup() is never called (garbage collection or
        # interpreter exit), without keeping `self` alive.
        self._finalizer = weakref.finalize(self, _delete_quietly, self.client, self.session_id)
        self.installed_packages = self.install_packages(self.additional_imports)
        self.logger.log(f"Moat session {self.session_id} is ready", level=LogLevel.INFO)

    def install_packages(self, additional_imports: list[str]) -> list[str]:
        """Records packages instead of running `!pip install`.

        Moat loads what each call's `packages` lists (once per session), so the names only
        need to be sent; smolagents' base keeps the returned list in `installed_packages`.
        """
        new = [p for p in dict.fromkeys(additional_imports) if p not in self.installed_packages]
        if new:
            self.logger.log(f"Packages Moat loads for this agent: {', '.join(new)}", level=LogLevel.INFO)
        return new

    def run_code_raise_errors(self, code: str) -> CodeOutput:
        """Runs one code action; a Python exception becomes `AgentError` with its traceback,
        and smolagents' `FinalAnswerException` becomes the decoded final answer."""
        try:
            answer = self._run(code)
        except MoatError as e:
            raise AgentError(f"Moat could not run the code: {e}", self.logger) from e
        error = answer.error
        if error is None:
            return CodeOutput(output=decode_images(answer.result), logs=answer.stdout, is_final_answer=False)
        if error.exception_type == self.FINAL_ANSWER_EXCEPTION and error.exception_value is not None:
            value = self._deserialize_final_answer(error.exception_value, self.allow_pickle)
            return CodeOutput(output=value, logs=answer.stdout, is_final_answer=True)
        raise AgentError(str(error), self.logger)

    def _run(self, code: str) -> RunResult:
        """One call; with `stream_output`, each printed batch is logged as it arrives."""
        args = (code, self.installed_packages)
        if not self.stream_output:
            return self.client.run(*args, session_id=self.session_id, timeout_ms=self.timeout_ms)
        for event in self.client.run_stream(*args, session_id=self.session_id, timeout_ms=self.timeout_ms):
            if isinstance(event, RunResult):
                return event
            self.logger.log(event.text.rstrip("\n"), level=LogLevel.INFO)
        raise AssertionError("unreachable: run_stream ends with the result")

    def cleanup(self) -> None:
        """Deletes this executor's session; called by `CodeAgent.cleanup()`; idempotent."""
        if self._finalizer.alive:
            self._finalizer()
            self.logger.log(f"Moat session {self.session_id} deleted", level=LogLevel.INFO)

    def delete(self) -> None:
        """The name smolagents' other remote executors give to cleanup."""
        self.cleanup()

    def __enter__(self) -> MoatExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


def _delete_quietly(client: MoatClient, session_id: str) -> None:
    """Best-effort deletion: cleanup must not raise over an agent's real result or error."""
    try:
        client.delete_session(session_id)
    except SessionNotFoundError:
        pass  # already evicted or deleted: the goal is reached
    except MoatError as e:
        _log.warning("Could not delete Moat session %s: %s", session_id, e)
