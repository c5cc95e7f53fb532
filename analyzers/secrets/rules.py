"""The built-in secret catalogue, and the rule shape that gitleaks imports share.

Every rule is a bytes regex with lowercase keywords: a rule's regex runs on a file only when one of
its keywords occurs in it (a single Aho-Corasick pass over the file finds them all, see
`Catalogue`). Rules are ordered specific-first: when two rules match the same bytes, the first wins,
so a GitHub token is a `github-pat` and not a generic assignment.
"""
from __future__ import annotations

import base64
import math
import re
from dataclasses import dataclass, field
from typing import Callable

PRIVATE_KEY = "private-key"


@dataclass(frozen=True)
class SecretRule:
    id: str
    title: str
    regex: re.Pattern | None  # bytes pattern; None for path-only rules (the file itself is the secret)
    keywords: tuple[bytes, ...] = ()  # lowercase; empty = runs on every file
    severity: str = "high"
    secret_group: int = 0  # 0: the first non-empty group, or the whole match when there is none
    entropy: float = 0.0  # minimum Shannon entropy (bits per byte) of the secret
    path: re.Pattern | None = None  # str pattern: only files whose path matches (searched)
    allow: tuple["Allow", ...] = ()
    check: Callable[[bytes], bool] | None = None  # a last structural test of the secret
    whole_body: bool = False  # private keys: nothing of the value is shown
    origin: str = "builtin"  # 'builtin' or the gitleaks file it came from
    config: bool = True  # also applied to image config strings (ENV, labels, history)
    fold: bool = False  # case-insensitive by running a lowercase regex over lowercased bytes (far faster than (?i))


@dataclass(frozen=True)
class Allow:
    """A gitleaks-style allowlist: a secret is dropped when it matches (any criterion, or all with AND)."""

    regexes: tuple[re.Pattern, ...] = ()  # bytes patterns
    stopwords: tuple[bytes, ...] = ()  # lowercase
    paths: tuple[re.Pattern, ...] = ()  # str patterns
    target: str = "secret"  # secret | match | line
    all_of: bool = False  # condition AND

    def allows(self, secret: bytes, match: bytes, line: bytes, path: str) -> bool:
        checks = []
        if self.regexes:
            subject = {"match": match, "line": line}.get(self.target, secret)
            checks.append(any(r.search(subject) for r in self.regexes))
        if self.stopwords:
            low = secret.lower()
            checks.append(any(w in low for w in self.stopwords))
        if self.paths:
            checks.append(any(p.search(path) for p in self.paths))
        if not checks:
            return False
        return all(checks) if self.all_of else any(checks)


def entropy(value: bytes) -> float:
    if not value:
        return 0.0
    n = len(value)
    counts: dict[int, int] = {}
    for b in value:
        counts[b] = counts.get(b, 0) + 1
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def mask(value: str, whole_body: bool = False, label: str = "") -> str:
    """At most 4 characters each end, never enough to use: 'ghp_…uXov' for a 40-character token."""
    if whole_body:
        return f"[{label or 'secret'}: body masked]"
    n = len(value)
    if n < 8:
        return "…"
    head, tail = min(4, n // 5), min(4, n // 8)
    return f"{value[:head]}…{value[n - tail:]}"


def _b(pattern: str, flags: int = 0) -> re.Pattern:
    return re.compile(pattern.encode(), flags)


# values that are obviously not secrets: templates, references, placeholders
_PLACEHOLDER = _b(r"(?i)^(?:\$\{?[\w.:-]+\}?|\{\{.*\}\}|%\(?\w+\)?s?|<[^>]*>|\*+|x+|\.+|-+|"
                  r"(?:your|my|some|the|example|sample|dummy|fake|test)[_-]?\w*|"
                  r"pass(?:word|wd)?|secret|changeit|null|none|true|false|undefined|"
                  r"(?:process\.env|os\.environ|env)\b.*|[a-z_]+\(.*)$")
_NOT_PLACEHOLDER = (Allow(regexes=(_PLACEHOLDER,)),)


def _docker_auth(secret: bytes) -> bool:
    try:
        return b":" in base64.b64decode(secret + b"=" * (-len(secret) % 4), validate=True)
    except ValueError:
        return False


def _private_key_label(match: bytes) -> str:
    m = re.match(rb"-----BEGIN ([A-Z0-9 ]*?)PRIVATE KEY", match)
    kind = (m.group(1).decode().strip() if m else "") or "PKCS8"
    return f"{kind} private key"


_ASSIGN = r"""['"]?\s*(?:=|:=|:|=>|,)\s*['"]?"""
_CODE = re.compile(rb"^[A-Za-z_$][\w$]*(?:\.[\w$]+)+$|^[A-Za-z_$][\w$]*\(")


def _looks_like_a_value(secret: bytes) -> bool:
    """Generic assignments: code (`tokens.length`, `Sizzle.tokenize`) is not a secret; a value with
    letters and digits, or a long one, might be."""
    if _CODE.match(secret):
        return False
    has_digit = any(48 <= b <= 57 for b in secret)
    has_alpha = any(65 <= b <= 90 or 97 <= b <= 122 for b in secret)
    return has_alpha and (has_digit or len(secret) >= 16)


BUILTIN: tuple[SecretRule, ...] = (
    SecretRule(PRIVATE_KEY, "Private key",
               _b(r"-----BEGIN[ A-Z0-9]{0,30}PRIVATE KEY(?: BLOCK)?-----[\s\S]{40,}?-----END[ A-Z0-9]{0,30}PRIVATE KEY"
                  r"(?: BLOCK)?-----"),
               (b"private key",), "high", whole_body=True),
    # the look-behind comes after the leading 'A' so that the regex engine can skip to each 'A'
    SecretRule("aws-access-key-id", "AWS access key ID",
               _b(r"(A(?<![A-Z0-9]A)(?:KIA|SIA|BIA|CCA|3T[A-Z0-9])[A-Z0-9]{16})(?![A-Z0-9])"),
               (b"akia", b"asia", b"abia", b"acca", b"a3t"), "critical",
               allow=(Allow(regexes=(_b(r"EXAMPLE$"),)),)),
    SecretRule("aws-secret-access-key", "AWS secret access key",
               _b(r"aws[\w.-]{0,20}?(?:secret|sk)[\w.-]{0,20}" + _ASSIGN + r"([a-z0-9/+=]{40})(?![a-z0-9/+=])"),
               (b"aws",), "critical", entropy=3.5, allow=(Allow(regexes=(_b(r"EXAMPLEKEY$"),)),), fold=True),
    SecretRule("github-pat", "GitHub personal access token", _b(r"\b(ghp_[A-Za-z0-9]{36})\b"), (b"ghp_",), "critical"),
    SecretRule("github-fine-grained-pat", "GitHub fine-grained personal access token",
               _b(r"\b(github_pat_[A-Za-z0-9_]{82})\b"), (b"github_pat_",), "critical"),
    SecretRule("github-oauth", "GitHub OAuth access token", _b(r"\b(gho_[A-Za-z0-9]{36})\b"), (b"gho_",), "critical"),
    SecretRule("github-app-token", "GitHub app token", _b(r"\b((?:ghu|ghs)_[A-Za-z0-9]{36})\b"), (b"ghu_", b"ghs_"),
               "critical"),
    SecretRule("github-refresh-token", "GitHub refresh token", _b(r"\b(ghr_[A-Za-z0-9]{36})\b"), (b"ghr_",), "critical"),
    SecretRule("gitlab-pat", "GitLab personal access token", _b(r"\b(glpat-[A-Za-z0-9_-]{20})(?![A-Za-z0-9_-])"),
               (b"glpat-",), "critical"),
    SecretRule("gitlab-pipeline-trigger-token", "GitLab pipeline trigger token", _b(r"\b(glptt-[0-9a-f]{40})\b"),
               (b"glptt-",), "high"),
    SecretRule("gitlab-runner-token", "GitLab runner registration token",
               _b(r"\b((?:GR1348941|glrt-)[A-Za-z0-9_-]{20})(?![A-Za-z0-9_-])"), (b"gr1348941", b"glrt-"), "high"),
    SecretRule("gitlab-deploy-token", "GitLab deploy token", _b(r"\b(gldt-[A-Za-z0-9_-]{20})(?![A-Za-z0-9_-])"),
               (b"gldt-",), "high"),
    SecretRule("slack-bot-token", "Slack bot token", _b(r"\b(xoxb-[0-9]{10,13}-[0-9]{10,13}-[A-Za-z0-9]{24,34})\b"),
               (b"xoxb-",), "high"),
    SecretRule("slack-user-token", "Slack user token", _b(r"\b(xox[pe](?:-[0-9]{10,13}){3}-[A-Za-z0-9]{28,34})\b"),
               (b"xoxp-", b"xoxe-"), "high"),
    SecretRule("slack-app-token", "Slack app-level token", _b(r"(?i)\b(xapp-\d-[A-Z0-9]+-\d+-[a-z0-9]+)\b"), (b"xapp-",),
               "high"),
    SecretRule("slack-webhook-url", "Slack incoming webhook",
               _b(r"(https://hooks\.slack\.com/(?:services|workflows)/[A-Za-z0-9+/]{43,56})"), (b"hooks.slack.com",),
               "medium"),
    SecretRule("stripe-secret-key", "Stripe secret key", _b(r"\b((?:sk|rk)_live_[A-Za-z0-9]{24,99})\b"),
               (b"sk_live_", b"rk_live_"), "critical"),
    SecretRule("stripe-test-key", "Stripe test secret key", _b(r"\b((?:sk|rk)_test_[A-Za-z0-9]{24,99})\b"),
               (b"sk_test_", b"rk_test_"), "low"),
    SecretRule("google-api-key", "Google API key", _b(r"\b(AIza[0-9A-Za-z_-]{35})(?![0-9A-Za-z_-])"), (b"aiza",), "high"),
    SecretRule("azure-storage-account-key", "Azure storage account key",
               _b(r"(?i)AccountKey\s*=\s*([A-Za-z0-9+/]{86}==)"), (b"accountkey",), "critical"),
    SecretRule("azure-sas-token", "Azure shared access signature",
               _b(r"(?i)[?&]sig=([A-Za-z0-9%+/]{43,64}(?:%3D|=))"), (b"sig=",), "high", entropy=3.5),
    SecretRule("npm-access-token", "npm access token", _b(r"\b(npm_[A-Za-z0-9]{36})\b"), (b"npm_",), "critical"),
    SecretRule("pypi-upload-token", "PyPI upload token", _b(r"\b(pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_-]{50,})"),
               (b"pypi-ageichlwas5vcmc",), "critical"),
    SecretRule("jwt", "JSON Web Token",
               _b(r"\b(ey[A-Za-z0-9_-]{10,}\.ey[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,})(?![A-Za-z0-9_.-])"), (b"eyj",),
               "medium"),
    SecretRule("docker-config-auth", "Docker registry credentials (config.json auths)",
               _b(r'"auth"\s*:\s*"([A-Za-z0-9+/]{6,}={0,2})"'), (b'"auth"',), "high", check=_docker_auth),
    SecretRule("npmrc-auth", "npm registry credentials (.npmrc)",
               _b(r"(?m)(?:_authToken|_auth|_password)\s*=\s*['\"]?([^\s'\"]{6,})"), (b"_auth", b"_password"), "high",
               path=re.compile(r"(?:^|/)\.?npmrc$"), allow=_NOT_PLACEHOLDER, config=False),
    SecretRule("pypirc-password", "Python package index credentials (.pypirc)",
               _b(r"(?mi)^[ \t]*password[ \t]*[:=][ \t]*(\S+)"), (b"password",), "high",
               path=re.compile(r"(?:^|/)\.pypirc$"), allow=_NOT_PLACEHOLDER, config=False),
    SecretRule("password-in-url", "Password in URL",
               _b(r"://[^:/?#\s@'\"<>]{1,64}:([^@/?#\s'\"<>]{3,128})@[A-Za-z0-9.\[\]_-]+"),
               (b"://",), "high", allow=_NOT_PLACEHOLDER),
    SecretRule("generic-secret", "Secret assigned in configuration",
               _b(r"(?:password|passwd|pwd|secret|token|api[_.-]?key|access[_.-]?key|auth[_.-]?key|client[_.-]?secret"
                  r"|credentials?)[\w.-]{0,20}['\"]?\s*(?:=|:=|:|=>)\s*['\"]?([^\s'\"`;,<>{}()\[\]$%\\]{8,128})"),
               (b"pass", b"pwd", b"secret", b"token", b"key", b"credential"), "medium", entropy=3.0,
               allow=_NOT_PLACEHOLDER, check=_looks_like_a_value, fold=True),
)


@dataclass
class Hit:
    rule: SecretRule
    start: int
    end: int
    secret: bytes
    line: int


def _secret_of(rule: SecretRule, m: re.Match) -> tuple[bytes, int, int]:
    if rule.secret_group and rule.secret_group <= (m.re.groups or 0):
        g = rule.secret_group
        if m.group(g) is not None:
            return m.group(g), m.start(g), m.end(g)
    for g in range(1, (m.re.groups or 0) + 1):
        if m.group(g):
            return m.group(g), m.start(g), m.end(g)
    return m.group(0), m.start(0), m.end(0)


def _line_bounds(data: bytes, start: int, end: int) -> bytes:
    a = data.rfind(b"\n", 0, start) + 1
    b = data.find(b"\n", end)
    return data[a: b if b >= 0 else len(data)]


def find(rules: list[SecretRule], data: bytes, path: str, global_allow: dict | None = None,
         max_hits: int = 100) -> list[Hit]:
    """Every secret the given candidate rules find in `data`; overlapping hits go to the earlier rule."""
    hits: list[Hit] = []
    taken: list[tuple[int, int]] = []
    lowered = None
    for rule in rules:
        if rule.path is not None and not rule.path.search(path):
            continue
        if rule.regex is None:
            hits.append(Hit(rule, 0, len(data), data, 1))
            continue
        allows = rule.allow + ((global_allow or {}).get(rule.origin) or ())
        subject = data
        if rule.fold:
            # bytes.lower() changes ASCII letters only, so offsets stay valid for the original
            subject = lowered = data.lower() if lowered is None else lowered
        for m in rule.regex.finditer(subject):
            secret, start, end = _secret_of(rule, m)
            if rule.fold:
                secret = data[start:end]
            if not secret or any(start < e and s < end for s, e in taken):
                continue
            if rule.entropy and entropy(secret) < rule.entropy:
                continue
            if rule.check is not None and not rule.check(secret):
                continue
            if allows and any(a.allows(secret, data[m.start():m.end()], _line_bounds(data, m.start(), m.end()), path)
                              for a in allows):
                continue
            line = data.count(b"\n", 0, m.start()) + 1
            hits.append(Hit(rule, start, end, secret, line))
            taken.append((start, end))
            if len(hits) >= max_hits:
                return hits
    return hits


@dataclass
class Catalogue:
    """Rules plus their keyword prefilter, compiled once per run."""

    rules: list[SecretRule]
    global_allow: dict[str, tuple[Allow, ...]] = field(default_factory=dict)
    _always: list[int] = field(default_factory=list)
    _prefilter: object = None

    def __post_init__(self):
        import yara

        parts = []
        for i, rule in enumerate(self.rules):
            if not rule.keywords:
                self._always.append(i)
                continue
            strings = " ".join(f'$k{j} = "{_yara_escape(k)}" nocase' for j, k in enumerate(rule.keywords))
            parts.append(f"rule r{i} {{ strings: {strings} condition: any of them }}")
        self._prefilter = yara.compile(source="\n".join(parts)) if parts else None

    def candidates(self, data: bytes) -> list[SecretRule]:
        chosen = set(self._always)
        if self._prefilter is not None:
            for m in self._prefilter.match(data=data, fast=True):
                chosen.add(int(m.rule[1:]))
        return [self.rules[i] for i in sorted(chosen)]

    def scan(self, data: bytes, path: str) -> list[Hit]:
        return find(self.candidates(data), data, path, self.global_allow)


def _yara_escape(keyword: bytes) -> str:
    return "".join(chr(b) if (48 <= b <= 57 or 65 <= b <= 90 or 97 <= b <= 122 or b in b"_-. :/") else f"\\x{b:02x}"
                   for b in keyword)
