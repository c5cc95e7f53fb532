"""The built-in secret catalogue, and the rule shape that gitleaks imports share.

Every rule is a bytes regex with lowercase keywords: a rule's regex runs on a file only when one of
its keywords occurs in it (a single Aho-Corasick pass over the file finds them all, see
`Catalogue`). Rules are ordered specific-first: when two rules match the same bytes, the first wins,
so a GitHub token is a `github-pat` and not a generic assignment.

Whatever rule matched, some values are never reported (`not_a_secret`): the published example
credentials of examples.toml, URLs (unless the rule is about a URL, like a webhook), and
low-diversity fillers of built-in rules (`ghp_xxxx…`; gitleaks rules carry their own entropy). Generic rules (`generic-*`: a keyword, an assignment, a value)
must also pass `_generic_value`: no UUIDs, hashes, file paths or word-like identifiers, and no value
assigned to a name that says it is not the secret itself (`secretName`, `tokenFile`, `TOKEN_URL`).

Large files are searched in overlapping windows (`WINDOW`, `OVERLAP`), so memory does not grow with
a file's size or its line length. Rules from users (gitleaks imports) run under the `regex`
module's time limit: a rule that exceeds it on a file is stopped there, reported by id, and not run
again in that scan (see `Limits`).
"""
from __future__ import annotations

import base64
import math
import pathlib
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

import tomllib

PRIVATE_KEY = "private-key"


@dataclass(frozen=True)
class SecretRule:
    id: str
    title: str
    regex: Any  # bytes pattern (re, or the regex module's for user rules); None for path-only rules
    keywords: tuple[bytes, ...] = ()  # lowercase; empty = runs on every file
    severity: str = "high"
    secret_group: int = 0  # 0: the first non-empty group, or the whole match when there is none
    entropy: float = 0.0  # minimum Shannon entropy (bits per byte) of the secret
    path: Any = None  # str pattern (re or regex): only files whose path matches (searched); None: every file
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
            checks.append(any(search(r, subject) for r in self.regexes))
        if self.stopwords:
            low = secret.lower()
            checks.append(any(w in low for w in self.stopwords))
        if self.paths:
            checks.append(any(search(p, path) for p in self.paths))
        if not checks:
            return False
        return all(checks) if self.all_of else any(checks)


USER_REGEX_TIMEOUT = 1.0  # seconds, for a user's allowlist or path regex on one subject


def search(pattern, subject, timeout: float = USER_REGEX_TIMEOUT):
    """`pattern.search(subject)`, under a time limit when the pattern is a user's (`regex` module):
    raises TimeoutError instead of running for hours on a catastrophic pattern."""
    if isinstance(pattern, re.Pattern):
        return pattern.search(subject)
    return pattern.search(subject, timeout=timeout)


def entropy(value: bytes) -> float:
    if not value:
        return 0.0
    n = len(value)
    return -sum(c / n * math.log2(c / n) for c in Counter(value).values())


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
               # the body may not contain '-----': each BEGIN is followed only up to the next marker, so a
               # file of a million BEGINs without END costs one pass, not a million
               _b(r"-----BEGIN[ A-Z0-9]{0,30}PRIVATE KEY(?: BLOCK)?-----(?:(?!-----)[\s\S]){40,65536}?-----END[ A-Z0-9]{0,30}"
                  r"PRIVATE KEY(?: BLOCK)?-----"),
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
    SecretRule("stripe-secret-key", "Stripe secret key", _b(r"\b((?:sk|rk)_(?:live|prod)_[A-Za-z0-9]{24,99})\b"),
               (b"sk_live_", b"rk_live_", b"sk_prod_", b"rk_prod_"), "critical"),
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
                  r"|credentials?)[\w.-]{0,20}(?:[ \t]+(?:string|str|String))?['\"]?\s*(?:=|:{1,3}=|:|=>|\?=|\.=|,|>)"
                  r"\s*[`'\"]?([^\s'\"`;,<>{}()\[\]$%\\]{8,128})"),
               (b"pass", b"pwd", b"secret", b"token", b"key", b"credential"), "medium", entropy=3.0,
               allow=_NOT_PLACEHOLDER, check=_looks_like_a_value, fold=True),
)


# -- values that are never reported, whatever rule matched them

EXAMPLES_FILE = pathlib.Path(__file__).with_name("examples.toml")


def _load_examples() -> tuple[bytes, ...]:
    with open(EXAMPLES_FILE, "rb") as fh:
        return tuple(e["value"].encode() for e in tomllib.load(fh)["example"])


EXAMPLE_VALUES = _load_examples()
_EXAMPLE = re.compile(b"|".join(re.escape(v) for v in sorted(EXAMPLE_VALUES, key=len, reverse=True)))
_URL = re.compile(rb"(?i)^(?:[a-z][a-z0-9+.-]{1,15}:)?//[^\s/]")
_URL_RULE = re.compile(rb"://|https?|hooks|webhook", re.I)
MIN_ENTROPY = 2.5  # a value of 16 bytes or more with less is a filler ('ghp_xxxx…', 'AIzaaaa…'), not a key

_UUID = re.compile(rb"(?i)^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_HASH = re.compile(rb"(?i)^(?:sha-?(?:1|224|256|384|512)|md5|blake2[bs]?|xxh\d*|crc32|h1|sha)[:=-]")
_PATH = re.compile(rb"^(?:~?/|\.\.?/|[A-Za-z]:\\)[^\s]*$")
_VERSION_MARK = re.compile(rb"(?<![A-Za-z])[vV](?=\d{1,2}(?!\d))")
_SEGMENTS = re.compile(rb"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|[0-9]+|[^A-Za-z0-9]+")
_VOWELS = frozenset(b"aeiouyAEIOUY")
# the name a generic value is assigned to says it is about the secret, not the secret
_NAME_NOT_VALUE = re.compile(
    rb"(?i)(?:name|names|ref|file|path|dir|id|ids|url|uri|endpoint|field|type|header|prefix|suffix|policy|question"
    rb"|hash|hasher|algorithm|algo|length|len|ttl|expiry|expires|timeout|size|count|regex|pattern|format|mode|label"
    rb"|version|provider|class|method|manager|template|placeholder|hint|description|message|param|key_?id)"
    rb"""['"]?\s*(?:=|:=|:|=>)\s*['"]?$""")


def _word_like(value: bytes) -> bool:
    """'PasswordMustBeAtLeast8Characters', 'postgres-credentials', 'csrfmiddlewaretoken', 'argon2id':
    words, short numbers and separators, as identifiers and messages are; random keys are not."""
    if len(value) > 64:
        return False
    letters = digits = 0
    for seg in _SEGMENTS.findall(_VERSION_MARK.sub(b"", value)):
        c = seg[0]
        if 48 <= c <= 57:
            if len(seg) > 2:
                return False
            digits += 1
        elif 65 <= c <= 90 or 97 <= c <= 122:
            vowel = any(ch in _VOWELS for ch in seg)
            if not ((vowel and len(seg) >= 2) or (len(seg) <= 3 and (seg.islower() or seg.isupper()))):
                return False
            letters += 1
        elif seg not in (b"-", b"_", b".", b" ", b"/"):
            return False
    return letters > 0 and (digits == 0 or letters >= 3)


def _generic_value(secret: bytes, before: bytes) -> bool:
    """The extra tests of a generic rule's value (`before`: the matched text up to the value)."""
    if _UUID.match(secret) or _HASH.match(secret) or _PATH.match(secret) or _word_like(secret):
        return False
    return _NAME_NOT_VALUE.search(before[-80:]) is None


def not_a_secret(rule: SecretRule, secret: bytes) -> str:
    """Why a matched value is not reported whatever the rule ('' when it may be a secret)."""
    if _EXAMPLE.search(secret):
        return "documented example"
    if rule.whole_body:
        return ""
    if _URL.match(secret) and not (rule.regex is not None and _URL_RULE.search(
            rule.regex.pattern if isinstance(rule.regex.pattern, bytes) else rule.regex.pattern.encode())):
        return "URL"
    if rule.origin == "builtin" and len(secret) >= 16 and entropy(secret) < MIN_ENTROPY:
        return "low entropy"  # a user's rule has its own entropy setting, as in gitleaks
    return ""


@dataclass
class Hit:
    rule: SecretRule
    start: int
    end: int
    secret: bytes
    line: int


def _secret_of(rule: SecretRule, m) -> tuple[bytes, int, int]:
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


@dataclass
class Limits:
    """Time limits for user rules, shared by all the files of one scan.

    `rule_timeout`: seconds a user rule may spend on one file (its regex, path and allowlist
    regexes); a rule that exceeds it is stopped for that file and not run again in that scan.
    `timed_out` collects (rule id, path) of each stop, for the scan's warnings.
    """

    rule_timeout: float = 2.0
    disabled: set[str] = field(default_factory=set)
    timed_out: list[tuple[str, str]] = field(default_factory=list)
    capped: list[tuple[str, str]] = field(default_factory=list)  # (rule id, path) that reached max_hits


def _user(rule: SecretRule) -> bool:
    return rule.origin != "builtin"


def find(rules: list[SecretRule], data: bytes, path: str, global_allow: dict | None = None,
         max_hits: int = 100, limits: Limits | None = None, line_base: int = 0, spent: dict | None = None,
         counts: dict | None = None) -> list[Hit]:
    """Every secret the given candidate rules find in `data`; overlapping hits go to the earlier rule.

    At most `max_hits` per rule and file (`counts` carries the hits of earlier windows of the same
    file); a rule that reaches it is recorded in `limits.capped`. User rules (not `builtin`) run under
    `limits.rule_timeout` seconds per rule (`spent` carries the seconds used on earlier windows)."""
    limits = limits or Limits()
    spent = {} if spent is None else spent
    counts = {} if counts is None else counts
    hits: list[Hit] = []
    taken: list[tuple[int, int]] = []
    lowered = None
    for rule in rules:
        user = _user(rule)
        if (user and rule.id in limits.disabled) or counts.get(rule.id, 0) >= max_hits:
            continue
        if rule.fold and lowered is None:
            lowered = data.lower()
        t0 = time.monotonic()
        try:
            found = _rule_hits(rule, data, path, global_allow, taken, lowered,
                               limits.rule_timeout - spent.get(rule.id, 0.0) if user else None,
                               max_hits - counts.get(rule.id, 0))
        except TimeoutError:
            limits.disabled.add(rule.id)
            limits.timed_out.append((rule.id, path))
            continue
        finally:
            if user:
                spent[rule.id] = spent.get(rule.id, 0.0) + time.monotonic() - t0
        for h in found:
            h.line += line_base
            hits.append(h)
            taken.append((h.start, h.end))
        counts[rule.id] = counts.get(rule.id, 0) + len(found)
        if counts[rule.id] >= max_hits:
            limits.capped.append((rule.id, path))
    return hits


def _rule_hits(rule: SecretRule, data: bytes, path: str, global_allow: dict | None, taken: list[tuple[int, int]],
               lowered: bytes | None, timeout: float | None, max_hits: int) -> list[Hit]:
    """One rule's hits in `data` (raises TimeoutError when a user rule runs out of time)."""
    if timeout is not None and timeout <= 0:
        raise TimeoutError
    if rule.path is not None and not search(rule.path, path, timeout or USER_REGEX_TIMEOUT):
        return []
    if rule.regex is None:
        return [Hit(rule, 0, len(data), data, 1)]
    allows = rule.allow + ((global_allow or {}).get(rule.origin) or ())
    subject = data
    if rule.fold:
        # bytes.lower() changes ASCII letters only, so offsets stay valid for the original
        subject = data.lower() if lowered is None else lowered
    generic = rule.id.startswith("generic")
    matches = rule.regex.finditer(subject) if timeout is None else rule.regex.finditer(subject, timeout=timeout)
    out: list[Hit] = []
    for m in matches:
        secret, start, end = _secret_of(rule, m)
        if rule.fold:
            secret = data[start:end]
        if not secret or (out and start < out[-1].end) or any(start < e and s < end for s, e in taken):
            continue
        if not_a_secret(rule, secret):
            continue
        if rule.entropy and entropy(secret) < rule.entropy:
            continue
        if rule.check is not None and not rule.check(secret):
            continue
        if generic and not _generic_value(secret, data[m.start():start]):
            continue
        if allows and any(a.allows(secret, data[m.start():m.end()], _line_bounds(data, m.start(), m.end()), path)
                          for a in allows):
            continue
        out.append(Hit(rule, start, end, secret, data.count(b"\n", 0, m.start()) + 1))
        if len(out) >= max_hits:
            break
    return out


WINDOW = 1 << 20  # bytes searched at once
OVERLAP = 64 << 10  # carried into the next window: a secret up to this long is never cut in two


@dataclass
class Catalogue:
    """Rules plus their keyword prefilter, compiled once per run."""

    rules: list[SecretRule]
    global_allow: dict[str, tuple[Allow, ...]] = field(default_factory=dict)
    _always: list[int] = field(default_factory=list)
    _prefilter: Any = None

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

    def scan(self, data: bytes, path: str, limits: Limits | None = None, max_hits: int = 100) -> list[Hit]:
        """Hits in `data`, searched window by window: memory stays bounded by WINDOW whatever the file's
        size or line length, and the keyword prefilter never sees more than one window."""
        limits = limits or Limits()
        if len(data) <= WINDOW + OVERLAP:
            return find(self.candidates(data), data, path, self.global_allow, max_hits, limits)
        hits: list[Hit] = []
        spent: dict[str, float] = {}
        counts: dict[str, int] = {}
        line_base = 0
        for start in range(0, len(data), WINDOW):
            window = data[start: start + WINDOW + OVERLAP]
            last = start + WINDOW >= len(data)
            for h in find(self.candidates(window), window, path, self.global_allow, max_hits, limits,
                          line_base, spent, counts):
                if h.start < WINDOW or last:  # the rest is found again, whole, by the next window
                    hits.append(Hit(h.rule, h.start + start, h.end + start, h.secret, h.line))
                else:
                    counts[h.rule.id] -= 1
            if last:
                break
            line_base += window.count(b"\n", 0, WINDOW)
        return hits


def _yara_escape(keyword: bytes) -> str:
    return "".join(chr(b) if (48 <= b <= 57 or 65 <= b <= 90 or 97 <= b <= 122 or b in b"_-. :/") else f"\\x{b:02x}"
                   for b in keyword)
