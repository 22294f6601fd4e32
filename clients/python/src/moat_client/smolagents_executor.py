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
import re
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .client import DEFAULT_URL, MoatClient
from .errors import MoatError, SessionNotFoundError
from .results import RunResult, decode_images
from .tools import HostTool, ToolCallEvent

_log = logging.getLogger("moat_client")

try:
    from smolagents.local_python_executor import CodeOutput
    from smolagents.monitoring import AgentLogger, LogLevel
    from smolagents.remote_executors import RemotePythonExecutor
    from smolagents.tools import Tool
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
        OFF = -1
        ERROR = 0
        INFO = 1
        DEBUG = 2

    class Tool:  # type: ignore[no-redef]
        """Stands in for smolagents' Tool, so managed agents are recognised without it."""

    class AgentLogger:  # type: ignore[no-redef]
        """Stands in for smolagents' logger, writing to the `logging` module instead."""

        def __init__(self, level: int = LogLevel.INFO) -> None:
            self.level = level

        def log(self, *args: Any, level: int = LogLevel.INFO, **kwargs: Any) -> None:
            if level <= self.level:
                _log.info(" ".join(str(a) for a in args))

        def log_error(self, message: str) -> None:
            self.log(message, level=LogLevel.ERROR)

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

        def _patch_final_answer_with_exception(self, final_answer_tool: Any) -> None:
            pass

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


STDERR_HEADER = "Printed to stderr:"
"""Heads what the code wrote to stderr (warnings, `logging`) in the logs the model reads."""

OPTIONAL_TOOL_IMPORTS = ("numpy", "PIL")
"""Packages smolagents' final_answer tool (as patched for remote executors) uses only when the
answer is an array or an image, inside `try: ... except ImportError`. smolagents hoists every
import of a tool's methods to the top of the tool definitions, where these two would make the
tools fail on a Moat that cannot load them (offline, without a mirror): they stay optional there."""

_HOISTED_IMPORT = re.compile(rf"^import ({'|'.join(OPTIONAL_TOOL_IMPORTS)})$", re.MULTILINE)

MANAGED_AGENTS_UNSUPPORTED = (
    "MoatExecutor cannot ship managed agents ({names}) into the sandbox: a managed agent calls "
    "its own model from your program. Use MoatExecutor(..., host_tools=True): every tool and "
    "managed agent then runs in your program, called from the sandboxed code like a function."
)

_JSON_SCHEMA_TYPES = frozenset({"string", "boolean", "integer", "number", "array", "object", "null"})


def smolagents_host_tool(name: str, tool: Any) -> HostTool:
    """A smolagents tool or managed agent as a host tool: its schema from its `inputs`, called
    in this process (a managed agent runs its own steps, with its own model and executor)."""
    properties: dict[str, Any] = {}
    required: list[str] = []
    for key, spec in (getattr(tool, "inputs", None) or {}).items():
        entry: dict[str, Any] = {"description": str(spec.get("description", ""))}
        kinds = spec.get("type")
        kinds = [kinds] if isinstance(kinds, str) else list(kinds or [])
        if kinds and all(k in _JSON_SCHEMA_TYPES for k in kinds):  # not "any", "image", "audio"
            entry["type"] = kinds[0] if len(kinds) == 1 else kinds
        properties[key] = entry
        if not spec.get("nullable"):
            required.append(key)
    parameters: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        parameters["required"] = required

    def call(**arguments: Any) -> Any:
        if isinstance(tool, Tool):
            return tool(**arguments, sanitize_inputs_outputs=True)
        return tool(**arguments)  # a managed agent: task, additional_args

    return HostTool(name, call, str(getattr(tool, "description", "") or ""), parameters)


class MoatExecutor(RemotePythonExecutor):
    """Runs a smolagents agent's code in its own Moat session.

    Args:
        url: Moat's base URL.
        token: the bearer token (default: the MOAT_TOKEN environment variable).
        additional_imports: packages the server loads for every call, with no import rule.
        logger: a smolagents `AgentLogger` for the executor's own messages. By default they
            go to the `moat_client` logger of Python's `logging` and nothing is printed: the
            agent prints what its `verbosity_level` asks for, errors included, once.
        allow_pickle: as in smolagents: accept `pickle:` final answers (trusted servers only).
        additional_authorized_imports: the agent's `additional_authorized_imports`, which
            `CodeAgent` does not pass to an executor it is given: Moat then refuses, inside the
            sandbox, any import of the model's code outside this list and smolagents' standard
            modules, with the local executor's message (`"*"` in the list: no rule), and loads
            the listed packages. Tools and variables, sent by smolagents, are not checked.
        mode: "persistent" (the default: the agent's variables live across steps) or
            "ephemeral".
        timeout_ms: a per-call limit to ask the server for; one above the policy's
            `limits.maxTimeoutMs` is refused (HTTP 400, raised as `BadRequestError`).
        client: a `MoatClient` to reuse instead of building one from url and token.
        stream_output: show what the code prints while it runs (through the logger, at INFO
            level) instead of only with the answer; off by default.
        host_tools: run every tool and managed agent of the agent here, in this program, called
            from the sandboxed code like plain functions (Moat's host tools): a tool's API keys
            never enter the sandbox, and managed agents work. `final_answer` stays in the
            sandbox. Off by default: tools are then shipped into the sandbox as source, as
            smolagents' other remote executors do, and managed agents are refused.
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        token: str | None = None,
        additional_imports: Iterable[str] | None = None,
        logger: Any = None,
        allow_pickle: bool = False,
        *,
        additional_authorized_imports: Iterable[str] | None = None,
        mode: str = "persistent",
        timeout_ms: int | None = None,
        client: MoatClient | None = None,
        stream_output: bool = False,
        host_tools: bool = False,
    ) -> None:
        authorized = None if additional_authorized_imports is None else list(additional_authorized_imports)
        packages = list(additional_imports or []) + (authorized or [])
        super().__init__(packages, logger or AgentLogger(level=LogLevel.OFF), allow_pickle)
        self.client = client or MoatClient(url, token)
        self.timeout_ms = timeout_ms
        self.stream_output = stream_output
        self.host_tools = host_tools
        self._host_tools: dict[str, HostTool] = {}  # with host_tools: what the code may call
        self.authorized_imports = None if authorized is None or "*" in authorized else authorized
        """The import rule the model's code runs under; None when nothing is enforced."""
        self._trusted = False  # set while smolagents sends tools or variables
        self._shipping_tools = False  # set while smolagents sends the tool definitions
        self._unavailable: dict[str, str] = {}  # packages the server could not load: why
        self._patched: Any = None  # the final_answer patch to undo once the tools are sent
        self.session_id = self.client.create_session(mode, authorized_imports=self.authorized_imports).id
        # Deletes the session even when cleanup() is never called (garbage collection or
        # interpreter exit), without keeping `self` alive.
        self._finalizer = weakref.finalize(self, _delete_quietly, self.client, self.session_id)
        self.installed_packages = self.install_packages(self.additional_imports)
        self._say(f"Moat session {self.session_id} is ready")

    def _say(self, message: str) -> None:
        """The executor's own news: to `logging`, and to a logger passed in at DEBUG level."""
        _log.info(message)
        self.logger.log(message, level=LogLevel.DEBUG)

    def install_packages(self, additional_imports: list[str]) -> list[str]:
        """Records packages instead of running `!pip install`.

        Moat loads what each call's `packages` lists (once per session), so the names only
        need to be sent; smolagents' base keeps the returned list in `installed_packages`.
        """
        new = [p for p in dict.fromkeys(additional_imports) if p not in self.installed_packages]
        if new:
            self._say(f"Packages Moat loads for this agent: {', '.join(new)}")
        return new

    def send_tools(self, tools: dict[str, Any]) -> None:
        """smolagents' tool shipping. With `host_tools`, only `final_answer` is shipped and the
        rest stay here as host tools; without it, managed agents are refused, saying why."""
        if self.host_tools:
            self._host_tools = {
                name: smolagents_host_tool(name, tool)
                for name, tool in tools.items() if name != "final_answer"
            }
            tools = {name: tool for name, tool in tools.items() if name == "final_answer"}
        agents = [n for n, t in tools.items() if not isinstance(t, Tool)] if SMOLAGENTS_AVAILABLE else []
        if agents:
            raise ValueError(MANAGED_AGENTS_UNSUPPORTED.format(names=", ".join(agents)))
        self._trusted = self._shipping_tools = True
        self._unavailable = {}
        try:
            super().send_tools(tools)
        finally:
            self._trusted = self._shipping_tools = False
            self._unpatch_final_answer()
        self._drop_unavailable()

    def _drop_unavailable(self) -> None:
        """Stops listing, in every later call, the tools' packages the server could not load.

        smolagents lists the tools' requirements (numpy and pillow, for final_answer) in every
        call. Where they cannot be had, each call would try again and print why to stderr, into
        the logs the model reads; the session already makes an `import` of them raise with the
        reason. Packages the program asked for in `additional_imports` stay listed.
        """
        dropped = [p for p in self.installed_packages if p in self._unavailable
                   and p not in self.additional_imports]
        if not dropped:
            return
        self.installed_packages = [p for p in self.installed_packages if p not in dropped]
        reasons = "; ".join(f"{p}: {self._unavailable[p]}" for p in dropped)
        self._say(f"This Moat cannot load {', '.join(dropped)} ({reasons}); the agent runs without them")

    def send_variables(self, variables: dict[str, Any]) -> None:
        self._trusted = True
        try:
            super().send_variables(variables)
        finally:
            self._trusted = False

    def _patch_final_answer_with_exception(self, final_answer_tool: Any) -> None:
        """Patches smolagents' final_answer tool for the code sent to Moat, and only for that.

        smolagents patches the agent's own tool object, again on each `agent.run()`, wrapping
        the previous patch, and that second patch's source refers to a closure variable
        (`allow_pickle_setting`), so it fails in any remote interpreter. It also renames the
        source of `FinalAnswerTool.forward` itself, which breaks `to_dict()` and `save()` of
        every agent afterwards. So any earlier patch is undone first, and this one is undone
        (class and source) as soon as the tools are sent (`_unpatch_final_answer`).
        """
        while type(final_answer_tool).__name__ == "_FinalAnswerTool" and "_forward" in vars(
            type(final_answer_tool)
        ):
            final_answer_tool.__class__ = type(final_answer_tool).__bases__[0]
        original_class = type(final_answer_tool)
        forward = original_class.forward
        source = vars(forward).get("__source__", _NO_SOURCE)
        super()._patch_final_answer_with_exception(final_answer_tool)
        self._patched = (final_answer_tool, original_class, forward, source)

    def _unpatch_final_answer(self) -> None:
        patched, self._patched = self._patched, None
        if patched is None:
            return
        tool, original_class, forward, source = patched
        tool.__class__ = original_class
        if source is _NO_SOURCE:
            vars(forward).pop("__source__", None)
        else:
            forward.__source__ = source

    def run_code_raise_errors(self, code: str) -> CodeOutput:
        """Runs one code action; a Python exception becomes `AgentError` with its traceback,
        and smolagents' `FinalAnswerException` becomes the decoded final answer."""
        # Tools and variables come from the program, not the model: no import rule for them.
        rule = ["*"] if self._trusted and self.authorized_imports is not None else None
        if self._shipping_tools:
            code = optional_tool_imports(code)
        try:
            answer = self._run(code, rule)
        except MoatError as e:
            raise AgentError(f"Moat could not run the code: {e}", _SILENT) from e
        if self._shipping_tools:
            failed = (answer.raw.get("packages") or {}).get("failed") or []
            self._unavailable.update({f["name"]: f["reason"] for f in failed if "name" in f})
        error = answer.error
        if error is None:
            logs = _with_stderr(answer.stdout, answer.stderr)
            return CodeOutput(output=decode_images(answer.result), logs=logs, is_final_answer=False)
        if error.exception_type == self.FINAL_ANSWER_EXCEPTION and error.exception_value is not None:
            value = self._deserialize_final_answer(error.exception_value, self.allow_pickle)
            logs = _with_stderr(answer.stdout, answer.stderr)
            return CodeOutput(output=value, logs=logs, is_final_answer=True)
        # Not logged here: the agent logs the error it makes of this one, at its own verbosity.
        raise AgentError(_with_stderr(str(error), answer.stderr), _SILENT)

    def _run(self, code: str, rule: list[str] | None) -> RunResult:
        """One call; with `stream_output`, each printed batch is logged as it arrives."""
        args = (code, self.installed_packages)
        options: dict[str, Any] = {
            "session_id": self.session_id, "timeout_ms": self.timeout_ms, "authorized_imports": rule,
        }
        if self._host_tools and not self._trusted:
            options["tools"] = self._host_tools
        elif not self.stream_output:
            return self.client.run(*args, **options)
        for event in self.client.run_stream(*args, **options):
            if isinstance(event, RunResult):
                return event
            if isinstance(event, ToolCallEvent):
                failed = f" failed: {event.error}" if event.error else ""
                self._say(f"Host tool {event.name}({event.arguments}){failed}")
            elif self.stream_output:
                self.logger.log(event.text.rstrip("\n"), level=LogLevel.INFO)
        raise AssertionError("unreachable: run_stream ends with the result")

    def cleanup(self) -> None:
        """Deletes this executor's session; called by `CodeAgent.cleanup()`; idempotent."""
        if self._finalizer.alive:
            self._finalizer()
            self._say(f"Moat session {self.session_id} deleted")

    def delete(self) -> None:
        """The name smolagents' other remote executors give to cleanup."""
        self.cleanup()

    def __enter__(self) -> MoatExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


_NO_SOURCE = object()
_SILENT = AgentLogger(level=LogLevel.OFF)
"""The logger errors are raised with: the agent logs them itself, so each is shown once."""


def optional_tool_imports(code: str) -> str:
    """The tool definitions smolagents sends, with its hoisted `import numpy` and `import PIL`
    made optional (`try: ... except ImportError: pass`). A tool method that uses them imports
    them itself, so where they are missing it still fails there, with the reason."""
    return _HOISTED_IMPORT.sub(lambda m: f"try:\n    import {m[1]}\nexcept ImportError:\n    pass", code)


def _with_stderr(text: str, stderr: str) -> str:
    """`text`, then what the code wrote to stderr under a short header, as the model reads it."""
    if not stderr:
        return text
    if text and not text.endswith("\n"):
        text += "\n"
    return f"{text}{STDERR_HEADER}\n{stderr}"


def _delete_quietly(client: MoatClient, session_id: str) -> None:
    """Best-effort deletion: cleanup must not raise over an agent's real result or error."""
    try:
        client.delete_session(session_id)
    except SessionNotFoundError:
        pass  # already evicted or deleted: the goal is reached
    except MoatError as e:
        _log.warning("Could not delete Moat session %s: %s", session_id, e)
