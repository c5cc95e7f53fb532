"""Secrets in files (per layer) and in the image config (ENV, labels, history).

Raw values never leave `analyze`/`collect`: a record holds the rule, the line, a masked form and an
HMAC-SHA256 fingerprint. The HMAC key is per user (a random file under the user's data dir, or
`[secrets] fingerprint_key_file`), not in the policy, because the policy is stored with every scan:
with the key outside the database, a leaked database does not let anyone test guesses of a short
password against its fingerprints, and a rescan on the same machine still gets the same fingerprint
for the same secret. The key's id is part of the cache fingerprint, so records made under another
key are never mixed in.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
from dataclasses import replace
from itertools import compress
from operator import itemgetter, methodcaller, not_

from stowaway.ingest.archives import (
    ARCHIVE_SUFFIXES,
    SNIFF,
    ArchiveLimits,
    Member,
    MemberConsumer,
    analyze_alone,
    is_archive,
)
from stowaway.ingest.model import HARDLINK, REG, Finding, ScanError

from .._userdirs import data_dir
from ..base import Analyzer, Fact, register
from . import gitleaks
from .rules import _PLACEHOLDER, BUILTIN, Catalogue, Hit, Limits, SecretRule, _private_key_label, find, mask

DEFAULT_EXCLUDES = (
    "/usr/*", "/lib/*", "/lib32/*", "/bin/*", "/sbin/*", "/var/lib/*", "/var/log/*",
    "AnyPath/node_modules/AnyPath/AnyName.md", "AnyPath/node_modules/AnyPath/test/AnyPath",
    "*/service/iam/examples_test.go", "AnyPath/grafana/public/build/AnyName.js",
)
MAX_USER_EXCLUDES = 20
MAX_FILE_SIZE = 20 << 20
MAX_HITS = 100  # findings per rule and file
BINARY_SNIFF = 8192
_FILE_KINDS = frozenset((REG, HARDLINK))
_KIND, _PATH, _FILES_OF = itemgetter(1), itemgetter(0), itemgetter(2)


def _outside(entries: list, blocks: list[tuple[int, int, int]]) -> list:
    """The entries outside the (first, end) stretches of `blocks` (in order, not overlapping)."""
    out, last = [], 0
    for first, end, _ in blocks:
        out += entries[last:first]
        last = end
    out += entries[last:]
    return out
KEY_FILE = "secret-fingerprint.key"

_TOKENS = re.compile(r"(AnyPath/|AnyPath|AnyName|\*\*/|\*\*|\*|\?)")
_WILD = {"AnyPath/": "(?:.*/)?", "AnyPath": ".*", "AnyName": "[^/]*", "**/": "(?:.*/)?", "**": ".*", "*": ".*",
         "?": "[^/]"}

# ENV names whose value is a credential whatever it looks like (the value may be weak, not random)
SENSITIVE_NAME = re.compile(r"(?i)(?:pass(?:word|wd|phrase)?|pwd|secret|token|api_?key|access_?key|private_?key"
                            r"|credential|auth)(?:$|_)|^(?:.*_)?(?:pass|pwd)$")
ENV_RULE = SecretRule("secret-in-env", "Credential", None, (), "high")


def exclusion_regex(pattern: str) -> str:
    parts = _TOKENS.split(pattern)
    body = "".join(_WILD.get(p, re.escape(p)) if i % 2 else re.escape(p) for i, p in enumerate(parts))
    if not pattern.startswith("/") and not _TOKENS.match(pattern):
        body = "(?:.*/)?" + body
    return body


def _patterns(user: object, key: str) -> list[str]:
    if user is None:
        user = []
    if isinstance(user, str) or not isinstance(user, list) or not all(isinstance(p, str) and p.strip() for p in user):
        raise ScanError(f"secrets.{key}: expected a list of path patterns")
    if len(user) > MAX_USER_EXCLUDES:
        raise ScanError(f"secrets.{key}: {len(user)} patterns given; at most {MAX_USER_EXCLUDES}"
                        f" user-configured {'excluded' if key == 'exclude_paths' else 'included'} paths are allowed")
    return [p.strip() for p in user]


def _compile(patterns: list[str]) -> re.Pattern:
    return re.compile("|".join(f"(?:{exclusion_regex(p)})" for p in patterns) if patterns else r"(?!)")


def exclusions(user: object, defaults: bool = True) -> tuple[list[str], re.Pattern]:
    """The excluded patterns in force (the built-in ones unless `defaults` is false, then the policy's)."""
    patterns = (list(DEFAULT_EXCLUDES) if defaults else []) + _patterns(user, "exclude_paths")
    return patterns, _compile(patterns)


def inclusions(user: object) -> tuple[list[str], re.Pattern | None]:
    """Paths searched even under an exclusion (`/usr/src/app/*`: official images put the application there)."""
    patterns = _patterns(user, "include_paths")
    return patterns, (_compile(patterns) if patterns else None)


def _fingerprint_key(conf: dict) -> tuple[bytes, str]:
    """(key, warning). A missing key file is created once, readable by its owner only."""
    path = conf.get("fingerprint_key_file") or os.environ.get("STOWAWAY_SECRET_KEY_FILE") or str(data_dir() / KEY_FILE)
    try:
        with open(path, "rb") as fh:
            key = fh.read()
        if len(key) >= 16:
            return key, ""
    except FileNotFoundError:
        pass
    except OSError as exc:
        return os.urandom(32), f"secrets: cannot read fingerprint key {path} ({exc.strerror}); fingerprints of this run are not comparable"
    try:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        key = os.urandom(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(key)
        return key, ""
    except FileExistsError:  # another process made it first
        with open(path, "rb") as fh:
            return fh.read(), ""
    except OSError as exc:
        return os.urandom(32), f"secrets: cannot create fingerprint key {path} ({exc.strerror}); fingerprints of this run are not comparable"


_CATALOGUES: dict[tuple, tuple[Catalogue, list[str], dict]] = {}


def catalogue_for(conf: dict) -> tuple[Catalogue, list[str], dict]:
    """(catalogue, load warnings, description) for a `[secrets]` section; built once per process per content."""
    files = conf.get("gitleaks") or []
    if isinstance(files, str):
        files = [files]
    builtin = conf.get("builtin", True) is not False
    generic_entropy = float(conf.get("generic_entropy", 3.0))
    digests = []
    for f in files:
        try:
            with open(f, "rb") as fh:
                digests.append(hashlib.sha256(fh.read()).hexdigest())
        except OSError as exc:
            raise ScanError(f"secrets.gitleaks: {f}: cannot read ({exc.strerror})") from None
    key = (tuple(files), tuple(digests), builtin, generic_entropy)
    if key not in _CATALOGUES:
        rules: list[SecretRule] = []
        if builtin:
            rules += [replace(r, entropy=generic_entropy) if r.id == "generic-secret" else r for r in BUILTIN]
        warnings: list[str] = []
        global_allow = {}
        loaded = {}
        for f in files:
            more, allow, skipped = gitleaks.load(f)
            rules += more
            global_allow[f] = allow
            loaded[f] = len(more)
            if skipped:
                warnings.append(f"secrets: {f}: {len(skipped)} rule(s) skipped: " + "; ".join(skipped)[:2000])
        about = {"builtin_rules": len(BUILTIN) if builtin else 0, "gitleaks": loaded,
                 "gitleaks_sha256": dict(zip(files, digests)), "generic_entropy": generic_entropy}
        _CATALOGUES[key] = (Catalogue(rules, global_allow), warnings, about)
    return _CATALOGUES[key]


class SecretScanner:
    """What both the analyzer and the config redaction need: rules, key, masking and fingerprints."""

    def __init__(self, policy: dict):
        conf = policy.get("secrets") or {}
        if not isinstance(conf, dict):
            raise ScanError("secrets: expected a [secrets] section")
        self.conf = conf
        self.catalogue, warnings, self.about = catalogue_for(conf)
        self.warnings = list(warnings)
        self._key: bytes | None = None

    @property
    def key(self) -> bytes:
        # read (or made) on first use only: masking the config needs no key, so scans without
        # the secrets risk never create one
        if self._key is None:
            self._key, warning = _fingerprint_key(self.conf)
            if warning:
                self.warnings.append(warning)
        return self._key

    @property
    def key_id(self) -> str:
        return hashlib.sha256(b"stowaway-key-id\0" + self.key).hexdigest()[:12]

    def fingerprint_of(self, secret: bytes) -> str:
        return "hmac-sha256:" + hmac.new(self.key, secret, hashlib.sha256).hexdigest()[:40]

    def masked(self, hit: Hit) -> str:
        text = hit.secret.decode("utf-8", "replace")
        label = _private_key_label(hit.secret[:80]) if hit.rule.whole_body else hit.rule.title
        return mask(text, hit.rule.whole_body, label)

    def config_hits(self, spec) -> list[tuple[str, str, int | None, Hit, str]]:
        """(source, name, layer_index, hit, raw value) for secrets in ENV, labels and history."""
        out = []
        runtime = spec.config.get("config") or {}
        for item in runtime.get("Env") or []:
            if not isinstance(item, str):
                continue
            name = item.partition("=")[0]
            out += self._text_hits("config:env", name, None, item.encode(), len(name) + 1)
        for name, value in sorted((runtime.get("Labels") or {}).items()):
            text = f"{name}={value}"
            out += self._text_hits("config:label", name, None, text.encode(), len(name) + 1)
        # `ENV X=…` and `LABEL` instructions repeat the config in the history: the same secret, already reported
        seen = {raw for *_, raw in out}
        layer = 0
        for h in spec.config.get("history") or []:
            empty = bool(h.get("empty_layer"))
            text = str(h.get("created_by") or "")
            out += [x for x in self._text_hits("config:history", text[:60], None if empty else layer, text.encode(), 0)
                    if x[-1] not in seen]
            layer += 0 if empty else 1
        return out

    def _text_hits(self, source, name, layer, data: bytes, value_from: int):
        rules = [r for r in self.catalogue.candidates(data) if r.config and r.path is None and r.regex is not None]
        hits = [h for h in find(rules, data, "", self.catalogue.global_allow) if h.start >= value_from]
        if not hits and source == "config:env" and SENSITIVE_NAME.search(name):
            value = data[value_from:]
            if len(value) >= 4 and not _PLACEHOLDER.match(value):
                hits = [Hit(ENV_RULE, value_from, len(data), value, 1)]
        return [(source, name, layer, h, h.secret.decode("utf-8", "replace")) for h in hits]


@register
class Secrets(MemberConsumer, Analyzer):
    name = "secrets"
    version = 3  # 3: cpio and rpm members; exclusions hold inside archives
    risk = "secrets"
    produces = ("findings", "facts")

    def __init__(self, policy=None):
        super().__init__(policy)
        conf = self.policy.get("secrets") or {}
        conf = conf if isinstance(conf, dict) else {}
        self.default_excludes = conf.get("default_excludes", True) is not False
        self.patterns, self.excluded = exclusions(conf.get("exclude_paths"), self.default_excludes)
        # '/usr/*' and the like are a prefix test (no regex for most of an image's files); '*' does not
        # cross a newline, so neither does the prefix test
        self.excluded_dirs = tuple(p[:-1] for p in self.patterns
                                   if p.startswith("/") and p.endswith("/*") and not _TOKENS.search(p[:-1]))
        self.include_patterns, self.included = inclusions(conf.get("include_paths"))
        # inside archives (OUTER!/INNER!/MEMBER): a pattern that does not start with '/' also matches the
        # member's path read across the archive boundaries ('AnyPath/node_modules/...' in a tarball)
        self.excluded_inside = _compile([p for p in self.patterns if not p.startswith("/")])
        self.included_inside = _compile([p for p in self.include_patterns if not p.startswith("/")])
        try:
            self.max_file_size = int(conf.get("max_file_size", MAX_FILE_SIZE))
        except (TypeError, ValueError):
            raise ScanError("secrets.max_file_size: expected a number of bytes") from None
        try:
            timeout = float(conf.get("rule_timeout", 2.0))
        except (TypeError, ValueError):
            raise ScanError("secrets.rule_timeout: expected a number of seconds") from None
        if not timeout > 0:
            raise ScanError("secrets.rule_timeout: expected a number of seconds above 0")
        self.rule_limits = Limits(rule_timeout=timeout)
        self.scanner = SecretScanner(self.policy)
        try:
            self.limits = ArchiveLimits.from_policy(self.policy)
        except ValueError as exc:
            raise ScanError(str(exc)) from None
        self.member_limits = self.limits
        # a user (gitleaks) rule that runs out of time is not run again in the same scan: that is state
        # later files rely on, so those scans walk their layers in one process
        self.forkable = not conf.get("gitleaks")

    def fingerprint(self):
        settings = {"excludes": self.patterns, "includes": self.include_patterns, "max": self.max_file_size,
                    "key": self.scanner.key_id,
                    "rules": self.scanner.about, "archives": self.limits.key(),
                    "rule_timeout": self.rule_limits.rule_timeout}
        return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]

    def is_excluded(self, path: str) -> bool:
        if "!/" in path:
            return self._member_excluded(path)
        excluded = (path.startswith(self.excluded_dirs) and "\n" not in path) or self.excluded.fullmatch(path) is not None
        return excluded and not (self.included and self.included.fullmatch(path))

    def _member_excluded(self, path: str) -> bool:
        flat = path.replace("!/", "/")
        if self.included and (self.included.fullmatch(path) or self.included_inside.fullmatch(flat)):
            return False
        return bool(self.excluded.fullmatch(path) or self.excluded_inside.fullmatch(flat))

    def skipped_prefixes(self):
        # an included path may lie under an excluded directory: then every path is asked about
        return self.excluded_dirs if self.included is None else ()

    def required(self, path, info):
        if self.is_excluded(path):
            return False
        # an archive larger than the file limit is still opened: the limit applies to each member
        return info.size <= self.max_file_size or (path.lower().endswith(ARCHIVE_SUFFIXES)
                                                   and info.size <= self.limits.max_total_bytes)

    def analyze(self, file):
        return analyze_alone(self, file)

    def analyze_outer(self, file):
        if is_archive(file.path, bytes(file.view[:SNIFF])):
            return []  # its members are searched (analyze_member), not its compressed bytes
        if file.size > self.max_file_size:  # named like an archive (required() let it in), but not one
            return [{"path": file.path, "skipped": "too large"}]
        return self._search(file.data, file.path)

    def analyze_member(self, member: Member) -> list[dict]:
        if self.is_excluded(member.path):
            return [{"path": member.path, "skipped": "excluded"}]
        if member.size > self.max_file_size:
            return [{"path": member.path, "skipped": "too large"}]
        content = member.read()
        if content is None:
            return []
        if len(content) > self.max_file_size:
            return [{"path": member.path, "skipped": "too large"}]
        return self._search(content, member.path)

    def archive_warnings(self, outer, warnings):
        return [{"path": outer, "skipped": "archive", "warning": w} for w in warnings]

    def _search(self, data: bytes, path: str) -> list[dict]:
        if b"\0" in data[:BINARY_SNIFF]:
            return [{"path": path, "skipped": "binary"}]
        stopped, capped = len(self.rule_limits.timed_out), len(self.rule_limits.capped)
        records = [{"path": path, "rule": h.rule.id, "title": h.rule.title, "severity": h.rule.severity,
                    "line": h.line, "masked": self.scanner.masked(h), "fingerprint": self.scanner.fingerprint_of(h.secret)}
                   for h in self.scanner.catalogue.scan(data, path, self.rule_limits, MAX_HITS)]
        records += [{"path": path, "skipped": "rule-timeout", "rule": rule, "seconds": self.rule_limits.rule_timeout}
                    for rule, _ in self.rule_limits.timed_out[stopped:]]
        records += [{"path": path, "skipped": "hit-cap", "rule": rule, "max": MAX_HITS}
                    for rule, _ in dict.fromkeys(self.rule_limits.capped[capped:])]
        return records

    def collect(self, ctx, layers):
        for w in self.scanner.warnings:
            ctx.warn(w)
        binary = excluded_members = 0
        for index, records in enumerate(layers):
            for r in records:
                if r.get("skipped") == "rule-timeout":
                    ctx.warn(f"secrets: rule {r['rule']} exceeded its time limit of {r['seconds']} s on {r['path']}"
                             f" (layer {index}); it was stopped there and not run on the later files of that scan"
                             " (policy key secrets.rule_timeout)")
                    continue
                if r.get("skipped") == "hit-cap":
                    ctx.warn(f"secrets: rule {r['rule']} matched more than {r['max']} times in {r['path']} (layer {index});"
                             " only the first are reported")
                    continue
                if r.get("skipped"):
                    if r.get("warning"):
                        ctx.warn(f"secrets: {r['warning']}")
                    else:
                        binary += r["skipped"] == "binary"
                        excluded_members += r["skipped"] == "excluded"
                    continue
                outer = r["path"].split("!/", 1)[0]  # an archive member is visible when its archive is
                yield Finding("secret", r["title"], r["severity"], r["path"], index, ctx.fs.visible(outer, index),
                              r["rule"], detail={"rule_id": r["rule"], "line": r["line"], "masked": r["masked"],
                                                 "fingerprint": r["fingerprint"], "source": "file"})
        for source, name, layer, hit, _raw in self.scanner.config_hits(ctx.spec):
            where = {"config:env": "ENV", "config:label": "label", "config:history": "history"}[source]
            title = f"{hit.rule.title} in {where} {name}" if source != "config:history" else f"{hit.rule.title} in image history"
            yield Finding("secret", title, hit.rule.severity, "", layer, True, hit.rule.id,
                          detail={"rule_id": hit.rule.id, "line": None, "masked": self.scanner.masked(hit),
                                  "fingerprint": self.scanner.fingerprint_of(hit.secret), "source": source})
        too_large = excluded = 0
        # the files under an excluded directory are counted by a prefix test, in one pass: the image's
        # other files are asked one by one
        prefixes = self.skipped_prefixes()
        limit = self.max_file_size
        skims = ctx.layer_skims if len(ctx.layer_skims) == len(ctx.layer_entries) else [None] * len(ctx.layer_entries)
        for entries, skimmed in zip(ctx.layer_entries, skims):
            if prefixes and skimmed is not None and self.name in skimmed[0] and skimmed[1]:
                # what the walker's skim indexed (its regular files all lie under a prefix this analyzer passes
                # over, none with a newline) is counted as it stands; the rest is asked below
                excluded += sum(map(_FILES_OF, skimmed[1]))
                entries = _outside(entries, skimmed[1])
            # each test runs in C over the layer's entries (map, compress): a layer of 120,000 files was
            # 0.03 s of per-entry Python here
            files = list(compress(entries, map(_FILE_KINDS.__contains__, map(_KIND, entries))))
            if prefixes:
                under = list(map(methodcaller("startswith", prefixes), map(_PATH, files)))
                if any(map(methodcaller("__contains__", "\n"), map(_PATH, compress(files, under)))):
                    rest = [e for e in files if not e[0].startswith(prefixes) or "\n" in e[0]]
                else:  # '*' does not cross a newline: only then may a prefix test stand for the pattern
                    rest = list(compress(files, map(not_, under)))
                excluded += len(files) - len(rest)
                files = rest
            for e in files:
                if self.is_excluded(e[0]):
                    excluded += 1
                elif e[2] > limit:
                    too_large += 1
        yield Fact("secrets_skipped", {"binary": binary, "too_large": too_large, "excluded": excluded + excluded_members,
                                       "excluded_archive_members": excluded_members,
                                       "max_file_size": self.max_file_size})
        yield Fact("secrets_policy", {"exclude_paths": self.patterns, "include_paths": self.include_patterns,
                                      "default_excludes": self.default_excludes, "max_file_size": self.max_file_size,
                                      "fingerprint_key_id": self.scanner.key_id, **self.scanner.about})
