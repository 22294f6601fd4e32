"""MoatClient against a real Moat: every call, its answers and its errors."""

from __future__ import annotations

import json
import threading
import time

import pytest

from moat_client import (
    AuthenticationError,
    BadRequestError,
    MoatClient,
    MoatConnectionError,
    MoatHTTPError,
    MoatServerError,
    PayloadTooLargeError,
    PythonError,
    RunResult,
    ServiceUnavailableError,
    SessionNotFoundError,
    TooManyRequestsError,
    decode_images,
    image_bytes,
    is_image,
)
from moat_client.errors import error_for_status

from conftest import SWATCH_CODE, Server

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_health_answers_without_a_token(server: Server) -> None:
    assert isinstance(MoatClient(server.url, token="").health(), dict)


def test_the_default_session_runs_code_and_keeps_state(client: MoatClient) -> None:
    first = client.run("default_session_value = 41\nprint('set')")
    assert first == RunResult(result=None, stdout="set\n", stderr="", error=None, duration_ms=first.duration_ms)
    assert first.ok
    assert client.run("default_session_value + 1").result == 42


def test_a_run_reports_its_duration(client: MoatClient) -> None:
    answer = client.run("1")
    assert isinstance(answer.duration_ms, (int, float)) and answer.duration_ms >= 0
    assert {"result", "stdout", "error"} <= answer.raw.keys()


def test_a_persistent_session_keeps_variables_imports_and_functions(client: MoatClient) -> None:
    with client.session("persistent") as s:
        s.run("import math\ndef area(r):\n    return math.pi * r * r\nradius = 2")
        assert s.run("round(area(radius), 4)").result == 12.5664


def test_an_ephemeral_session_starts_clean_on_every_call(client: MoatClient) -> None:
    with client.session("ephemeral") as s:
        assert s.info.mode in (None, "ephemeral")
        assert s.run("x = 1\nx").result == 1
        second = s.run("x")
        assert second.error is not None and second.error.exception_type == "NameError"


def test_a_created_session_is_listed_and_described_until_deleted(client: MoatClient) -> None:
    info = client.create_session(mode="persistent")
    try:
        assert info.id
        assert info.id in [s.id for s in client.list_sessions()]
        details = client.get_session(info.id)
        assert details.id == info.id
        assert details.mode in (None, "persistent")
    finally:
        client.delete_session(info.id)
    assert info.id not in [s.id for s in client.list_sessions()]
    with pytest.raises(SessionNotFoundError):
        client.get_session(info.id)


def test_reset_forgets_the_variables_but_keeps_the_session(client: MoatClient) -> None:
    with client.session() as s:
        s.run("kept = 'before reset'")
        s.reset()
        after = s.run("kept")
        assert after.error is not None and after.error.exception_type == "NameError"
        assert s.run("1 + 1").result == 2


def test_a_deleted_session_answers_404_to_every_call(client: MoatClient) -> None:
    info = client.create_session()
    client.delete_session(info.id)
    for call in (
        lambda: client.run("1", session_id=info.id),
        lambda: client.reset_session(info.id),
        lambda: client.delete_session(info.id),
    ):
        with pytest.raises(SessionNotFoundError) as caught:
            call()
        assert caught.value.status == 404 and caught.value.message


def test_a_session_id_cannot_reach_another_route(client: MoatClient) -> None:
    with pytest.raises(SessionNotFoundError):
        client.run("1", session_id="../../health")


def test_a_wrong_or_missing_token_is_refused_with_401(server: Server) -> None:
    for token in ("wrong-token-of-enough-length", ""):
        with pytest.raises(AuthenticationError) as caught:
            MoatClient(server.url, token).run("1")
        assert caught.value.status == 401
        assert caught.value.name and caught.value.message


def test_a_malformed_body_is_refused_with_400_naming_the_field(client: MoatClient) -> None:
    with pytest.raises(BadRequestError) as caught:
        client.run(42)  # type: ignore[arg-type]
    assert "code" in caught.value.message
    with pytest.raises(BadRequestError) as caught:
        client.create_session(mode="forever")
    assert "mode" in caught.value.message


def test_a_body_over_the_policy_limit_is_refused_with_413(client: MoatClient) -> None:
    with pytest.raises(PayloadTooLargeError) as caught:
        client.run("#" * (17 * 1024 * 1024))  # the default policy accepts 16 MiB
    assert caught.value.status == 413


def test_calls_queued_past_the_policy_limit_are_refused_with_429(session) -> None:
    """The default policy lets 16 calls wait in a session (queuedCalls); more are refused."""
    outcomes: list[object] = []

    def call(code: str) -> None:
        try:
            outcomes.append(session.run(code))
        except TooManyRequestsError as e:
            outcomes.append(e)

    blocker = threading.Thread(target=call, args=("import time\ntime.sleep(3)",))
    blocker.start()
    time.sleep(0.5)
    waiting = [threading.Thread(target=call, args=("1",)) for _ in range(24)]
    for t in waiting:
        t.start()
    for t in [blocker, *waiting]:
        t.join()
    refused = [o for o in outcomes if isinstance(o, TooManyRequestsError)]
    assert refused and all(e.status == 429 and e.message for e in refused)
    # 16 or 17 ran, depending on whether the running call counts as waiting.
    assert sum(isinstance(o, RunResult) and o.ok for o in outcomes) in (16, 17)
    assert len(outcomes) == 25


def test_an_unreachable_server_raises_a_connection_error() -> None:
    with pytest.raises(MoatConnectionError):
        MoatClient("http://127.0.0.1:9", "t" * 16, timeout=5).run("1")


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, BadRequestError),
        (401, AuthenticationError),
        (404, SessionNotFoundError),
        (413, PayloadTooLargeError),
        (429, TooManyRequestsError),
        (503, ServiceUnavailableError),
        (500, MoatServerError),
        (502, MoatServerError),
    ],
)
def test_each_http_status_has_its_own_exception(status: int, cls: type[MoatHTTPError]) -> None:
    error = error_for_status(status, "Name", "what happened")
    assert type(error) is cls and isinstance(error, MoatHTTPError)
    assert str(error) == f"HTTP {status} Name: what happened"


def test_a_python_exception_is_an_answer_with_its_traceback(session) -> None:
    answer = session.run("print('before')\ndef f():\n    return 1 / 0\nf()")
    assert not answer.ok
    error = answer.error
    assert isinstance(error, PythonError)
    assert error.name == "PythonError"
    assert error.exception_type == "ZeroDivisionError"
    assert error.exception_value == "division by zero"
    assert error.message.rstrip().endswith("ZeroDivisionError: division by zero")
    assert "return 1 / 0" in error.message
    assert answer.stdout == "before\n"
    text = str(error)
    assert text.startswith("PythonError: ")
    assert "before" in text, "what was printed before the error must reach the model"
    for host_detail in (".ts:", ".js:", "file://", "/work/"):
        assert host_detail not in text


def test_every_exception_type_is_named_not_only_those_ending_in_exception(session) -> None:
    error = session.run("raise KeyError('missing')").error
    assert error is not None and error.exception_type == "KeyError"
    error = session.run("class Stop(BaseException): pass\nraise Stop('now')").error
    assert error is not None and error.exception_type == "Stop" and error.exception_value == "now"


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("'text'", "text"),
        ("2 ** 100", 2**100),
        ("-7", -7),
        ("0.5", 0.5),
        ("True", True),
        ("False", False),
        ("None", None),
        ("[1, 'a', None, [2.5]]", [1, "a", None, [2.5]]),
        ("{'a': {'b': [1, 2]}, 'c': True}", {"a": {"b": [1, 2]}, "c": True}),
    ],
)
def test_the_last_expression_comes_back_as_json(session, expression: str, expected: object) -> None:
    answer = session.run(f"x = 0\n{expression}")
    assert answer.ok and answer.result == expected
    assert type(answer.result) is type(expected)


def test_a_value_json_cannot_hold_comes_back_as_its_repr(session) -> None:
    answer = session.run("class Point:\n    def __repr__(self):\n        return 'Point(1, 2)'\nPoint()")
    assert answer.result == "Point(1, 2)"


def test_a_statement_last_gives_no_result(session) -> None:
    assert session.run("y = 5").result is None


def test_unicode_travels_both_ways_unchanged(session) -> None:
    text = "héllo wörld, 世界, emoji 🐍, rtl שלום, zero-width \u200b, nul-free"
    answer = session.run(f"s = {text!r}\nprint(s)\ns")
    assert answer.stdout == text + "\n"
    assert answer.result == text
    assert session.run("len(s)").result == len(text)


def test_a_megabyte_of_output_arrives_whole(session) -> None:
    answer = session.run("line = 'x' * 1023\nfor _ in range(1024):\n    print(line)\n'y' * (1024 * 1024)")
    assert answer.ok
    assert len(answer.stdout) == 1024 * 1024
    assert answer.result == "y" * (1024 * 1024)


def test_a_megabyte_of_code_runs(session) -> None:
    code = "data = " + json.dumps("z" * (1024 * 1024)) + "\nlen(data)"
    assert session.run(code).result == 1024 * 1024


def test_an_image_comes_back_as_a_png_and_decodes_when_pillow_is_here(session) -> None:
    answer = session.run(SWATCH_CODE + "\n[Swatch(4, 3, (255, 0, 0)), 'caption']")
    assert answer.ok, answer.error
    image, caption = answer.result
    assert is_image(image) and caption == "caption"
    assert image_bytes(image).startswith(PNG_SIGNATURE)
    decoded = decode_images({"plot": answer.result})
    try:
        import PIL.Image
    except ImportError:
        assert decoded == {"plot": answer.result}
    else:
        picture = decoded["plot"][0]
        assert isinstance(picture, PIL.Image.Image)
        assert picture.size == (4, 3) and picture.getpixel((0, 0))[:3] == (255, 0, 0)


def test_a_pil_image_made_in_the_sandbox_comes_back_as_a_png(session, numpy_and_pillow) -> None:
    answer = session.run("from PIL import Image\nImage.new('RGB', (4, 3), (255, 0, 0))", packages=["PIL"])
    assert answer.ok, answer.error
    assert is_image(answer.result) and image_bytes(answer.result).startswith(PNG_SIGNATURE)


def test_standard_library_names_and_wildcards_in_packages_are_accepted(session) -> None:
    answer = session.run("import math, json\nmath.floor(2.5)", packages=["math", "json", "numpy.*", "*"])
    assert answer.ok and answer.result == 2


def test_a_package_that_cannot_be_loaded_says_why(session) -> None:
    name = "no-such-package-for-moat-tests"
    try:
        answer = session.run("1", packages=[name])
    except MoatHTTPError as e:
        assert name in e.message
    else:
        # Where the reason travels is the server's choice: an error, or a note beside the output.
        assert name in str(answer.error) + answer.stderr


def test_a_call_over_its_time_limit_is_interrupted(session) -> None:
    started = time.monotonic()
    answer = session.run("while True:\n    pass", timeout_ms=500)
    assert answer.error is not None
    assert time.monotonic() - started < 20
