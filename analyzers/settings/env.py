"""What checks see of an image: its visible configuration files, accounts, packages and config.

Built once per image from the per-layer records of the `settings-files` analyzer: for each path,
only the copy the final filesystem shows counts (a file a later layer replaced or deleted does not).
"""
from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from functools import cached_property
from typing import Any

# Budgets of one include expansion (sshd Include, PAM @include/include/substack, pwquality.conf.d):
# policy [settings] include_max_files / include_max_bytes
INCLUDE_MAX_FILES = 256
INCLUDE_MAX_BYTES = 4 << 20


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


def include_limits(policy: dict) -> tuple[int, int]:
    """(max files, max bytes) of one include expansion, from policy [settings]."""
    conf = (policy or {}).get("settings") or {}
    files, size = conf.get("include_max_files", INCLUDE_MAX_FILES), conf.get("include_max_bytes", INCLUDE_MAX_BYTES)
    if isinstance(files, bool) or not isinstance(files, int) or files < 1:
        raise ValueError(f"[settings] include_max_files must be a positive integer, got {files!r}")
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"[settings] include_max_bytes must be a positive integer, got {size!r}")
    return files, size


@dataclass
class Expansion:
    """One expansion of a configuration file and what it includes, as one reader (sshd, PAM, pwquality)
    would read it: every file at most once per context (a file included again adds nothing a reader
    that keeps the first value would use, and a loop ends), a total-file and total-byte budget, and
    one warning when the budget cuts it. Without the visited set, files that each include all the
    others expand to every permutation of them."""

    env: "Env"
    what: str  # names the reader in the warning: 'sshd_config', 'PAM /etc/pam.d/common-password'
    max_files: int = INCLUDE_MAX_FILES
    max_bytes: int = INCLUDE_MAX_BYTES
    files: int = 0
    bytes: int = 0
    cut: bool = False
    looped: bool = False
    visited: set = field(default_factory=set)

    @classmethod
    def of(cls, env: "Env", what: str) -> "Expansion":
        files, size = include_limits(env.ctx.policy)
        return cls(env, what, files, size)

    def enter(self, conf: ConfigText, context: str = "") -> bool:
        """Whether `conf` is to be read now (and counts it); False for a file already read in this
        context or past the budget."""
        key = (conf.path, context)
        if key in self.visited:
            return False
        size = len(conf.text.encode("utf-8", "replace"))
        if self.files + 1 > self.max_files or self.bytes + size > self.max_bytes:
            if not self.cut:
                self.cut = True
                self.env.warn(f"{self.what}: include expansion cut at {conf.path}: more than {self.max_files} files"
                              f" or {self.max_bytes} bytes ([settings] include_max_files / include_max_bytes);"
                              " the files past the limit were not read")
            return False
        self.visited.add(key)
        self.files += 1
        self.bytes += size
        return True

    def loop(self, path: str) -> None:
        if not self.looped:
            self.looped = True
            self.env.warn(f"{self.what}: {path} includes itself (directly or through another file); read once")


class Env:
    def __init__(self, ctx, files: dict[str, tuple[str, int]], baseline: str | None):
        self.ctx = ctx
        self.files = files  # real path -> (text, layer of the visible copy)
        self.baseline = baseline
        self.password_files: dict[str, tuple[dict, int]] = {}  # weak-passwords records of the visible copies
        self.memo: dict[object, Any] = {}  # parsed configurations shared by the checks of one image
        self._warned: set[str] = set()

    # --- image --------------------------------------------------------------------------------
    @property
    def fs(self):
        return self.ctx.fs

    @property
    def runtime(self) -> dict:
        return self.ctx.spec.runtime or {}

    def warn(self, message: str) -> None:
        if message not in self._warned:  # the checks that share a parsed file would repeat its warnings
            self._warned.add(message)
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
        out: list[Account] = []
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
                gid = _int(parts[2]) if len(parts) >= 3 and parts[0] else None
                if gid is not None:
                    out.setdefault(parts[0], gid)
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
