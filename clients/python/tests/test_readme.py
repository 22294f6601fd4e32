"""The README's complete example runs as written against a real Moat, so it cannot rot."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from conftest import Server

PACKAGE_ROOT = Path(__file__).resolve().parents[1]


def readme_example() -> str:
    readme = (PACKAGE_ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"<!-- runnable example.*?-->\n```python\n(.*?)```", readme, re.DOTALL)
    assert match, "README.md lost its runnable example"
    return match.group(1)


def test_the_readme_example_runs_and_prints_what_it_promises(server: Server) -> None:
    env = {
        **os.environ,
        "MOAT_URL": server.url,
        "MOAT_TOKEN": server.token,
        "PYTHONPATH": str(PACKAGE_ROOT / "src"),
    }
    done = subprocess.run(
        [sys.executable, "-c", readme_example()], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    for line in ("area of a circle of radius 2", "result: 12.57", "error: IndexError", "deleted: 404"):
        assert line in done.stdout
    assert "values[5]" in done.stdout, "the printed error must carry the traceback"
