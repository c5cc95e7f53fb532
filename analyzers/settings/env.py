"""What checks see of an image: its visible configuration files, accounts, packages and config.

Built once per image from the per-layer records of the `settings-files` analyzer: for each path,
only the copy the final filesystem shows counts (a file a later layer replaced or deleted does not).
"""
from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from fnmatch import fnmatchcase
from functools import cached_property


def visible_records(ctx, layers: list[list[dict]]) -> dict[str, tuple[dict, int]]:
    """path -> (record, layer) of the per-layer records whose file is the copy the final image shows."""
    out = {}
    for index, records in enumerate(layers):
        for r in records:
            if ctx.fs.visible(r["path"], index):
                out[r["path"]] = (r, index)
    return out


@dataclass(frozen=True)
class ConfigText:
    path: str
    text: str
    layer: int

    def lines(self):
        """(line number, stripped line) for every line that is not blank or a comment."""
        for n, line in enumerate(self.text.splitlines(), 1):
            line = line.strip()
            if line and not line.startswith("#"):
                yield n, line


@dataclass(frozen=True)
class Account:
    name: str
    uid: int | None
    gid: int | None
    home: str
    shell: str
    line: int


class Env:
    def __init__(self, ctx, files: dict[str, tuple[str, int]], baseline: str | None):
        self.ctx = ctx
        self.files = files  # real path -> (text, layer of the visible copy)
        self.baseline = baseline
        self.password_files: dict[str, tuple[dict, int]] = {}  # weak-passwords records of the visible copies
        self.memo: dict[str, object] = {}  # parsed configurations shared by the checks of one image

    # --- image --------------------------------------------------------------------------------
    @property
    def fs(self):
        return self.ctx.fs

    @property
    def runtime(self) -> dict:
        return self.ctx.spec.runtime or {}

    def warn(self, message: str) -> None:
        self.ctx.warn(message)

    def package_version(self, *names: str) -> str | None:
        for p in self.ctx.packages:
            if p.name in names and p.ecosystem in ("deb", "rpm", "apk"):
                return p.version
        return None

    # --- files --------------------------------------------------------------------------------
    def read(self, path: str) -> ConfigText | None:
        """The visible text of `path`, following symlinks inside the image."""
        real = self.fs.read_target(path)
        if real is None or real not in self.files:
            return None
        text, layer = self.files[real]
        return ConfigText(real, text, layer)

    def glob(self, pattern: str) -> list[ConfigText]:
        """Visible files matching a shell pattern whose '*' stays within one directory, in name order."""
        directory = posixpath.dirname(pattern)
        real_dir = self.fs.resolve(directory) or directory
        name_pattern = posixpath.basename(pattern)
        out = []
        for path in sorted(self.files):
            if posixpath.dirname(path) == real_dir and fnmatchcase(posixpath.basename(path), name_pattern):
                out.append(self.read(path))
        return [c for c in out if c is not None]

    def layer_of(self, path: str) -> int | None:
        real = self.fs.resolve(path)
        return self.fs.layer_of(real) if real else None

    # --- accounts -----------------------------------------------------------------------------
    @cached_property
    def accounts(self) -> list[Account]:
        conf = self.read("/etc/passwd")
        out = []
        if conf is None:
            return out
        for n, line in enumerate(conf.text.splitlines(), 1):
            parts = line.split(":")
            if len(parts) < 7 or not parts[0] or line.startswith("#"):
                continue
            out.append(Account(parts[0], _int(parts[2]), _int(parts[3]), parts[5], parts[6], n))
        return out

    @cached_property
    def groups(self) -> dict[str, int]:
        conf = self.read("/etc/group")
        out: dict[str, int] = {}
        if conf is not None:
            for line in conf.text.splitlines():
                parts = line.split(":")
                if len(parts) >= 3 and parts[0] and _int(parts[2]) is not None:
                    out.setdefault(parts[0], _int(parts[2]))
        return out

    def uid_names(self) -> dict[int, str]:
        return {a.uid: a.name for a in self.accounts if a.uid is not None}


def _int(text: str) -> int | None:
    return int(text) if re.fullmatch(r"\d{1,10}", text.strip()) else None


def keyword_values(conf: ConfigText, separator: str | None = None):
    """(line, KEY, value) of a 'KEY value' or 'KEY = value' file such as login.defs or pwquality.conf."""
    for n, line in conf.lines():
        if separator and separator in line:
            key, _, value = line.partition(separator)
        else:
            parts = line.split(None, 1)
            key, value = parts[0], parts[1] if len(parts) > 1 else ""
        yield n, key.strip(), value.strip().strip('"')
