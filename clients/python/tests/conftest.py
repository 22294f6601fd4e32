"""Starts a real Moat server for the whole test run, and gives each test a client.

Nothing is mocked: the clients are only worth what they do against the server they ship with.
Its policy loads numpy and Pillow from a mirror of stand-in wheels built here (standins.py), as
Pyodide's CDN is out of reach. Set MOAT_TEST_URL (and MOAT_TEST_TOKEN) to run against a server
you started yourself.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from moat_client import MoatClient, MoatSession
from standins import write_mirror, write_policy

REPO_ROOT = Path(__file__).resolve().parents[3]
START_COMMAND = ["npx", "--yes", "deno@2.9.6", "task", "start"]
READY_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Server:
    url: str
    token: str


@pytest.fixture(scope="session")
def server() -> Iterator[Server]:
    if os.environ.get("MOAT_TEST_URL"):
        yield Server(os.environ["MOAT_TEST_URL"], os.environ.get("MOAT_TEST_TOKEN", ""))
        return
    with tempfile.TemporaryDirectory(prefix="moat-py-tests-") as tmp:
        mirror = write_mirror(Path(tmp) / "mirror", REPO_ROOT)
        yield from _moat(write_policy(Path(tmp) / "policy.yaml", mirror))


@pytest.fixture(scope="session")
def offline_server() -> Iterator[Server]:
    """A Moat that cannot load numpy or Pillow, as on a machine cut off from Pyodide's CDN: its
    mirror lists them but lacks their wheels, so every attempt fails as a download does offline."""
    with tempfile.TemporaryDirectory(prefix="moat-py-tests-offline-") as tmp:
        mirror = write_mirror(Path(tmp) / "mirror", REPO_ROOT)
        for wheel in mirror.glob("*.whl"):
            wheel.unlink()
        # Memory store: the sessions of the other server (the checkout's store) are not its own.
        policy = write_policy(Path(tmp) / "policy.yaml", mirror, preload=[])
        yield from _moat(policy, {"MOAT_STORE": "memory"})


def _moat(policy: Path, extra_env: dict[str, str] | None = None) -> Iterator[Server]:
    """Starts Moat with `policy` as `deno task start` does, and stops it after the tests."""
    port = _free_port()
    token = secrets.token_urlsafe(24)
    with tempfile.TemporaryFile() as log:
        env = {
            **os.environ, "MOAT_HOST": "127.0.0.1", "MOAT_PORT": str(port), "MOAT_TOKEN": token,
            "MOAT_POLICY": str(policy), **(extra_env or {}),
        }
        # A new process group, so the teardown stops npx, deno and every worker it started.
        process = subprocess.Popen(
            START_COMMAND, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            _wait_until_healthy(url, process, log)
            yield Server(url, token)
        finally:
            _stop(process)


@pytest.fixture(scope="session")
def numpy_and_pillow(server: Server) -> None:
    """Skips the test when this Moat cannot import numpy and Pillow in the sandbox.

    smolagents' final_answer tool imports both. The server these tests start has them (the
    stand-ins); one given by MOAT_TEST_URL may not.
    """
    with MoatClient(server.url, server.token).session("ephemeral") as s:
        answer = s.run("import numpy, PIL.Image", packages=["numpy", "pillow"])
    if answer.error is not None:
        pytest.skip(f"this Moat cannot load numpy and Pillow: {answer.error.exception_value}")


@pytest.fixture
def client(server: Server) -> MoatClient:
    return MoatClient(server.url, server.token)


@pytest.fixture
def session(client: MoatClient) -> Iterator[MoatSession]:
    """A fresh persistent session, deleted after the test even when it failed."""
    with client.session() as s:
        yield s


SWATCH_CODE = r'''
import struct, zlib

class Swatch:
    """A solid-colour picture that displays itself as PNG, as PIL and matplotlib objects do."""

    def __init__(self, width, height, rgb):
        self.width, self.height, self.rgb = width, height, bytes(rgb)

    def _repr_png_(self):
        def chunk(kind, data):
            crc = zlib.crc32(kind + data)
            return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)
        rows = b"".join(b"\x00" + self.rgb * self.width for _ in range(self.height))
        header = struct.pack(">IIBBBBB", self.width, self.height, 8, 2, 0, 0, 0)
        return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
'''
"""Python source defining `Swatch(width, height, rgb)`, an image made with the standard library
only, so image results are tested on any Moat, with or without Pillow in the sandbox."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until_healthy(url: str, process: subprocess.Popen[bytes], log) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"Moat exited with {process.returncode} before it was ready:\n{_tail(log)}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    pytest.fail(f"Moat was not healthy after {READY_TIMEOUT_S:.0f} s:\n{_tail(log)}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM first so the server can shut down cleanly, SIGKILL if it does not."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        return
    try:
        os.killpg(process.pid, signal.SIGKILL)  # whatever the server left behind
    except ProcessLookupError:
        pass


def _tail(log, limit: int = 4000) -> str:
    log.flush()
    log.seek(0)
    return log.read().decode("utf-8", "replace")[-limit:]
