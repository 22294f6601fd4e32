"""Starts one real Moat server (`deno task start`) for the run, and says how to launch the stdio
server (`deno task mcp`). Nothing is mocked: the Python `mcp` package's own clients talk to it.
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

REPO_ROOT = Path(__file__).resolve().parents[2]
DENO = ["npx", "--yes", "deno@2.9.6"]
READY_TIMEOUT_S = 120.0

# Short limits so the limit tests are quick; pandas refused, so an install error needs no network.
POLICY = """
limits:
  timeoutMs: 1500
  memoryMb: 256
  sessions: 8
packages:
  deny: ["pandas"]
  preload: []
"""


@dataclass(frozen=True)
class Moat:
    url: str
    token: str
    policy: str

    def stdio_env(self, **extra: str) -> dict[str, str]:
        return {**os.environ, "MOAT_POLICY": self.policy, "MOAT_TOKEN": self.token, **extra}


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def moat() -> Iterator[Moat]:
    port = _free_port()
    token = secrets.token_urlsafe(24)
    with tempfile.TemporaryDirectory(prefix="moat-mcp-py-") as tmp:
        policy = str(Path(tmp) / "policy.yaml")
        Path(policy).write_text(POLICY)
        env = {**os.environ, "MOAT_HOST": "127.0.0.1", "MOAT_PORT": str(port),
               "MOAT_TOKEN": token, "MOAT_POLICY": policy}
        with tempfile.TemporaryFile() as log:
            # A new process group, so the teardown stops npx, deno and every worker it started.
            process = subprocess.Popen(
                [*DENO, "task", "start"], cwd=REPO_ROOT, env=env, stdout=log,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )
            try:
                url = f"http://127.0.0.1:{port}"
                _wait_until_healthy(url, process, log)
                yield Moat(url, token, policy)
            finally:
                try:
                    os.killpg(process.pid, signal.SIGTERM)
                    process.wait(timeout=15)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    os.killpg(process.pid, signal.SIGKILL)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until_healthy(url: str, process: subprocess.Popen, log) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"moat exited with {process.returncode}:\n{log.read().decode()}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=1) as res:
                if res.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("moat did not become healthy")
