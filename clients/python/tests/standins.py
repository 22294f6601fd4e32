"""Stand-in `numpy` and `pillow` wheels, and a Pyodide-style mirror of them for the test server.

Their real wheels come from Pyodide's CDN, which these machines cannot reach, and smolagents'
final_answer tool (as patched for remote executors) imports both in the sandbox. These small
pure-Python packages give it what it touches: `numpy.ndarray`, `numpy.integer`,
`numpy.floating`, and a `PIL.Image.Image` that `Image.new` makes and `save(..., "PNG")` writes,
so the tests drive the real agent path instead of skipping.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

NUMPY = {
    "numpy/__init__.py": '''"""Moat's test stand-in for numpy: the names smolagents' final_answer checks."""
STANDIN = "numpy stand-in"
__version__ = "0.0"


class ndarray:
    pass


class integer:
    pass


class floating:
    pass
''',
}

PILLOW = {
    "PIL/__init__.py": '"""Moat\'s test stand-in for Pillow."""\nSTANDIN = "pillow stand-in"\n__version__ = "0.0"\n',
    "PIL/Image.py": '''"""Solid-colour RGB images that save as PNG: what the tests' agents draw."""
import struct
import zlib

COLORS = {"black": (0, 0, 0), "white": (255, 255, 255), "red": (255, 0, 0),
          "green": (0, 128, 0), "blue": (0, 0, 255)}


class Image:
    def __init__(self, size, rgb):
        self.size, self.width, self.height, self.rgb = size, size[0], size[1], bytes(rgb)
        self.mode = "RGB"

    def _png(self):
        def chunk(kind, data):
            return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        rows = b"".join(b"\\x00" + self.rgb * self.width for _ in range(self.height))
        header = struct.pack(">IIBBBBB", self.width, self.height, 8, 2, 0, 0, 0)
        return (b"\\x89PNG\\r\\n\\x1a\\n" + chunk(b"IHDR", header)
                + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))

    def save(self, fp, format=None):
        fp.write(self._png())

    def _repr_png_(self):
        return self._png()


def new(mode, size, color=0):
    rgb = COLORS[color] if isinstance(color, str) else (color if isinstance(color, tuple) else (0, 0, 0))
    return Image(tuple(size), rgb)
''',
}


def _wheel(directory: Path, name: str, files: dict[str, str]) -> dict:
    """Writes one pure-Python wheel; returns its entry for pyodide-lock.json."""
    info = f"{name}-1.0.dist-info"
    contents = dict(files)
    contents[f"{info}/METADATA"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n"
    contents[f"{info}/WHEEL"] = "Wheel-Version: 1.0\nGenerator: moat-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    contents[f"{info}/RECORD"] = "".join(f"{f},,\n" for f in contents) + f"{info}/RECORD,,\n"
    file_name = f"{name}-1.0-py3-none-any.whl"
    with zipfile.ZipFile(directory / file_name, "w") as archive:
        for path, text in contents.items():
            archive.writestr(path, text)
    data = (directory / file_name).read_bytes()
    return {
        "name": name,
        "version": "1.0",
        "file_name": file_name,
        "install_dir": "site",
        "sha256": hashlib.sha256(data).hexdigest(),
        "package_type": "package",
        "imports": sorted({p.split("/")[0] for p in files}),
        "depends": [],
    }


def write_mirror(directory: Path, repo_root: Path) -> Path:
    """The stand-ins and a pyodide-lock.json (with this Pyodide's `info`) in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    pyodide_lock = json.loads((repo_root / "node_modules/pyodide/pyodide-lock.json").read_text())
    packages = {"numpy": _wheel(directory, "numpy", NUMPY), "pillow": _wheel(directory, "pillow", PILLOW)}
    lock = {"info": pyodide_lock["info"], "packages": packages}
    (directory / "pyodide-lock.json").write_text(json.dumps(lock, indent=2))
    return directory


def write_policy(path: Path, mirror: Path, preload: list[str] | None = None) -> Path:
    """The default policy, with packages from the mirror and numpy and Pillow preloaded."""
    path.write_text(
        "packages:\n"
        '  allow: ["*"]\n'
        f"  preload: {json.dumps(['numpy', 'pillow'] if preload is None else preload)}\n"
        f"  index: {json.dumps(str(mirror))}\n"
    )
    return path

