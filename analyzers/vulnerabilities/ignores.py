"""Ignore rules, as users of `.trivyignore` expect them.

Two forms:

* plain text, one id a line, '#' comments, an optional `exp:YYYY-MM-DD` after the id
  (`CVE-2021-44228 exp:2026-01-31`), exactly Trivy's format;
* YAML or TOML, a list under `vulnerabilities` (Trivy's .trivyignore.yaml) or `ignore`:
  `id` (required), `packages`/`package` (name, name@version or purl), `images`/`image` (reference,
  glob allowed), `paths`/`path` (glob), `reason`/`statement`, `expires`/`expired_at` (a date).

A rule matches when its id equals the finding's id or any alias and every scope it names matches.
An expired rule no longer applies and is counted as a warning so the user sees it lapse.
Ignored findings stay in the database, marked `ignored` with the reason.
"""
from __future__ import annotations

import datetime as dt
import fnmatch
import os
import re
from dataclasses import dataclass

from stowaway.ingest.model import ScanError


@dataclass(frozen=True)
class IgnoreRule:
    id: str
    packages: tuple[str, ...] = ()
    images: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    reason: str = ""
    expires: dt.date | None = None
    line: str = ""


def _date(value, where: str) -> dt.date | None:
    if value in (None, ""):
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value)[:10])
    except ValueError:
        raise ScanError(f"{where}: expiry {value!r} is not a date (YYYY-MM-DD)") from None


def _many(entry: dict, *keys) -> tuple[str, ...]:
    out: list[str] = []
    for k in keys:
        v = entry.get(k)
        if isinstance(v, str):
            out.append(v)
        elif isinstance(v, list):
            out.extend(str(x) for x in v if x not in (None, ""))
    return tuple(out)


class IgnoreRules:
    def __init__(self, rules: list[IgnoreRule], source: str = "", today: dt.date | None = None):
        self.source = source
        self.today = today or dt.date.today()
        self.active = [r for r in rules if r.expires is None or r.expires >= self.today]
        self.expired = [r for r in rules if r not in self.active]
        self._by_id: dict[str, list[IgnoreRule]] = {}
        for r in self.active:
            self._by_id.setdefault(r.id, []).append(r)

    def __len__(self):
        return len(self.active)

    def warnings(self) -> list[str]:
        return [f"ignore rule for {r.id} in {self.source} expired on {r.expires}" for r in self.expired]

    def match(self, ids, package_name: str = "", package_version: str = "", purl: str = "",
              image: str = "", path: str = "") -> str | None:
        """The reason of the first active rule that covers this finding, or None."""
        for ident in ids:
            for r in self._by_id.get(ident, ()):
                if r.packages and not any(p in (package_name, f"{package_name}@{package_version}", purl)
                                          or (purl and p.startswith("pkg:") and purl.split("?")[0] == p)
                                          for p in r.packages):
                    continue
                if r.images and not any(fnmatch.fnmatchcase(image, g) for g in r.images):
                    continue
                if r.paths and not any(fnmatch.fnmatchcase(path, g) or fnmatch.fnmatchcase(path, "/" + g.lstrip("/"))
                                       for g in r.paths):
                    continue
                return r.reason or f"ignored by {self.source or 'ignore file'}"
        return None


def parse_plain(text: str, source: str) -> list[IgnoreRule]:
    rules = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        expires = None
        for extra in parts[1:]:
            if extra.startswith("exp:"):
                expires = _date(extra[4:], f"{source}:{n}")
        comment = raw.split("#", 1)[1].strip() if "#" in raw else ""
        rules.append(IgnoreRule(parts[0], reason=comment, expires=expires, line=f"{source}:{n}"))
    return rules


def parse_structured(doc, source: str) -> list[IgnoreRule]:
    if not isinstance(doc, dict):
        raise ScanError(f"{source}: expected a mapping with a 'vulnerabilities' (or 'ignore') list")
    entries = doc.get("vulnerabilities", doc.get("ignore", []))
    if not isinstance(entries, list):
        raise ScanError(f"{source}: 'vulnerabilities' must be a list")
    rules = []
    for n, e in enumerate(entries, 1):
        if isinstance(e, str):
            e = {"id": e}
        if not isinstance(e, dict) or not isinstance(e.get("id"), str) or not e["id"].strip():
            raise ScanError(f"{source}: entry {n} has no id")
        rules.append(IgnoreRule(
            e["id"].strip(), _many(e, "packages", "package", "purls", "purl"), _many(e, "images", "image"),
            _many(e, "paths", "path"), str(e.get("reason") or e.get("statement") or ""),
            _date(e.get("expires", e.get("expired_at")), f"{source}: entry {n}"), f"{source}: entry {n}"))
    return rules


def load(path: str | None, today: dt.date | None = None) -> IgnoreRules:
    if not path:
        return IgnoreRules([], today=today)
    try:
        with open(path, "rb") as fh:
            data = fh.read(4 << 20)
    except OSError as exc:
        raise ScanError(f"{path}: cannot read ignore file ({exc.strerror})") from None
    text = data.decode("utf-8", "replace")
    ext = os.path.splitext(path)[1].lower()
    if not ext:
        # a file without an extension (.stowawayignore) may hold the structured form: say so by its shape
        if re.search(r"(?m)^\[\[(?:vulnerabilities|ignore)\]\]", text):
            ext = ".toml"
        elif re.search(r"(?m)^(?:vulnerabilities|ignore)\s*:", text):
            ext = ".yaml"
    if ext in (".yaml", ".yml"):
        import yaml

        try:
            rules = parse_structured(yaml.safe_load(text) or {}, path)
        except yaml.YAMLError as exc:
            raise ScanError(f"{path}: invalid YAML ({exc.__class__.__name__})") from None
    elif ext == ".toml":
        import tomllib

        try:
            rules = parse_structured(tomllib.loads(text), path)
        except tomllib.TOMLDecodeError as exc:
            raise ScanError(f"{path}: invalid TOML ({exc})") from None
    else:
        rules = parse_plain(text, path)
    return IgnoreRules(rules, path, today)
