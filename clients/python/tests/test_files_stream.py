"""Files in a session's working directory, and live output, through the client."""

from __future__ import annotations

import pytest

from conftest import Server
from moat_client import (
    BadRequestError,
    FileEntry,
    MoatClient,
    MoatSession,
    OutputEvent,
    RunResult,
    SessionNotFoundError,
)
from moat_client.smolagents_executor import MoatExecutor


def test_an_uploaded_file_is_readable_by_the_code_and_comes_back(session: MoatSession) -> None:
    entry = session.upload("data/in.csv", "a,b\n1,2\n")
    assert entry == FileEntry("data/in.csv", 8, entry.modified)
    assert session.run("open('data/in.csv').read()").result == "a,b\n1,2\n"
    session.run("open('out.bin', 'wb').write(bytes(range(256)))")
    assert session.download("out.bin") == bytes(range(256))
    assert [(f.path, f.size) for f in session.files()] == [("data/in.csv", 8), ("out.bin", 256)]
    session.delete_file("out.bin")
    assert [f.path for f in session.files()] == ["data/in.csv"]


def test_names_that_leave_the_working_directory_are_refused(session: MoatSession) -> None:
    with pytest.raises(ValueError, match="'..'"):
        session.download("../etc/passwd")
    with pytest.raises(ValueError, match="absolute"):
        session.upload("/etc/x", b"x")
    with pytest.raises(BadRequestError, match="NUL"):
        session.upload("a\0b", b"x")


def test_files_of_a_missing_session_are_not_found(client: MoatClient) -> None:
    with pytest.raises(SessionNotFoundError):
        client.files(session_id="no-such-session")


def test_a_streamed_run_yields_output_then_the_result(session: MoatSession) -> None:
    code = "import sys, time\nprint('a', flush=True)\ntime.sleep(0.2)\nprint('b', file=sys.stderr)\n7"
    events = list(session.run_stream(code))
    assert isinstance(events[-1], RunResult) and events[-1].result == 7
    output = [e for e in events if isinstance(e, OutputEvent)]
    assert output == [OutputEvent("stdout", "a\n"), OutputEvent("stderr", "b\n")]
    assert events[-1].stdout == "a\n"


class _Recorder:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def log(self, *args: object, level: int = 0, **kwargs: object) -> None:
        self.lines.append(" ".join(str(a) for a in args))

    def log_error(self, message: str) -> None:
        self.lines.append(message)


def test_the_executor_can_show_output_as_it_comes(server: Server) -> None:
    logger = _Recorder()
    with MoatExecutor(server.url, server.token, logger=logger, stream_output=True) as executor:
        out = executor("print('step one')\n41 + 1")
    assert out.output == 42 and out.logs == "step one\n"
    assert "step one" in logger.lines
