"""Helpers for the application-inventory tests: archives built in memory, and real analyzers run over
layers built in code (layer walker, squash, collect in order), without a database."""
from __future__ import annotations

import io
import zipfile

from inventory_harness import Inspected, inspect  # noqa: F401  (the tests import them from here)


def zip_bytes(files: dict, compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as z:
        for name, data in files.items():
            z.writestr(name, data.encode() if isinstance(data, str) else data)
    return buf.getvalue()


def pom(group: str, artifact: str, version: str) -> str:
    return f"#Created by Apache Maven\nversion={version}\ngroupId={group}\nartifactId={artifact}\n"


def manifest(**fields) -> str:
    return "Manifest-Version: 1.0\r\n" + "".join(f"{k.replace('_', '-')}: {v}\r\n" for k, v in fields.items()) + "\r\n"
