"""Import of gitleaks-format TOML rule files (`[secrets] gitleaks = ["PATH", ...]` in the policy).

gitleaks writes Go (RE2) regexes. Most are valid Python; the rest differ in a few known ways that
`translate` rewrites: a flag group in the middle of a pattern (`\\b(p8e-(?i)[a-z0-9]{32})`, which
Python refuses), POSIX classes (`[[:alnum:]]`), `\\z`, `\\Q…\\E` and `(?<name>…)`. A rule that still
does not compile, or uses what Python's `re` cannot express (`\\p{…}`, the ungreedy flag), is
reported by id and skipped; the rest of the file loads.

Rules from users are compiled with the `regex` module (same syntax as `re` for these patterns) so
that every search can be given a time limit: a catastrophic pattern such as `(a+)+$` is stopped
and named, never left to run for hours (see rules.Limits).
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING

import tomllib

from stowaway.ingest.model import ScanError

from .rules import Allow, SecretRule

if TYPE_CHECKING:
    import regex

_POSIX = {
    "alnum": "a-zA-Z0-9", "alpha": "a-zA-Z", "ascii": "\\x00-\\x7f", "blank": " \\t", "cntrl": "\\x00-\\x1f\\x7f",
    "digit": "0-9", "graph": "!-~", "lower": "a-z", "print": " -~", "punct": "!-/:-@\\[-`{-~",
    "space": " \\t\\n\\r\\f\\v", "upper": "A-Z", "word": "\\w", "xdigit": "0-9A-Fa-f",
}


class Untranslatable(ValueError):
    pass


def translate(go: str) -> str:
    """An RE2 pattern as an equivalent Python pattern (raises Untranslatable when there is none)."""
    out: list[str] = []
    # one frame per open group: the inline flags opened inside it, re-opened after each '|'
    frames: list[list[str]] = [[]]
    i, n = 0, len(go)
    while i < n:
        c = go[i]
        if c == "\\":
            if i + 1 >= n:
                raise Untranslatable("trailing backslash")
            nxt = go[i + 1]
            if nxt == "z":
                out.append("\\Z")
            elif nxt in "pP":
                raise Untranslatable("Unicode classes (\\p{...}) are not supported by Python's re")
            elif nxt == "Q":
                end = go.find("\\E", i + 2)
                literal = go[i + 2: end if end >= 0 else n]
                out.append(re.escape(literal))
                i = (end + 2) if end >= 0 else n
                continue
            else:
                out.append(go[i: i + 2])
            i += 2
            continue
        if c == "[":
            j, body = _char_class(go, i)
            out.append(body)
            i = j
            continue
        if c == "(":
            m = re.match(r"\(\?([imsU-]+)\)", go[i:])
            if m:
                flags = m.group(1)
                if "U" in flags:
                    raise Untranslatable("the ungreedy flag (?U) has no Python equivalent")
                at_start = i == 0 and len(frames) == 1
                if at_start and "-" not in flags:
                    out.append(m.group(0))
                else:
                    out.append(f"(?{flags}:")
                    frames[-1].append(flags)
                i += len(m.group(0))
                continue
            if go.startswith("(?<", i) and not go.startswith("(?<=", i) and not go.startswith("(?<!", i):
                out.append("(?P<")
                i += 3
                frames.append([])
                continue
            out.append("(")
            frames.append([])
            i += 1
            continue
        if c == "|":
            opened = frames[-1]
            out.append(")" * len(opened) + "|" + "".join(f"(?{f}:" for f in opened))
            i += 1
            continue
        if c == ")":
            if len(frames) == 1:
                raise Untranslatable("unbalanced parenthesis")
            out.append(")" * len(frames.pop()) + ")")
            i += 1
            continue
        out.append(c)
        i += 1
    out.append(")" * len(frames[-1]))
    if len(frames) != 1:
        raise Untranslatable("unbalanced parenthesis")
    return "".join(out)


def _char_class(go: str, i: int) -> tuple[int, str]:
    """Copies a bracket expression starting at go[i] == '[', rewriting POSIX classes."""
    j = i + 1
    out = ["["]
    if j < len(go) and go[j] == "^":
        out.append("^")
        j += 1
    if j < len(go) and go[j] == "]":
        out.append("\\]")
        j += 1
    while j < len(go):
        c = go[j]
        if c == "\\":
            if go[j + 1: j + 2] in ("p", "P"):
                raise Untranslatable("Unicode classes (\\p{...}) are not supported by Python's re")
            out.append(go[j: j + 2])
            j += 2
            continue
        if c == "[":
            m = re.match(r"\[:(\^?)([a-z]+):\]", go[j:])
            if m:
                if m.group(1) or m.group(2) not in _POSIX:
                    raise Untranslatable(f"POSIX class {m.group(0)} not supported")
                out.append(_POSIX[m.group(2)])
                j += len(m.group(0))
                continue
            out.append("\\[")  # a literal '[' in RE2; Python would warn about nested sets
            j += 1
            continue
        if c == "]":
            out.append("]")
            return j + 1, "".join(out)
        out.append(c)
        j += 1
    raise Untranslatable("unterminated character class")


def compile_go(pattern: str, as_bytes: bool = True) -> regex.Pattern:
    import regex  # only a scan with user rules needs it: not imported at start-up

    py = translate(pattern)
    try:
        re.compile(py.encode() if as_bytes else py)  # what Python's re refuses is refused, as before
        return regex.compile(py.encode() if as_bytes else py)
    except (re.error, regex.error) as exc:
        raise Untranslatable(str(exc)) from None


def _allow(table: dict, where: str) -> Allow:
    target = table.get("regexTarget") or "secret"
    return Allow(regexes=tuple(compile_go(r) for r in table.get("regexes") or ()),
                 stopwords=tuple(w.lower().encode() for w in table.get("stopwords") or ()),
                 paths=tuple(compile_go(p, as_bytes=False) for p in table.get("paths") or ()),
                 target=target, all_of=str(table.get("condition") or "OR").upper() == "AND")


def load(path: str) -> tuple[list[SecretRule], tuple[Allow, ...], list[str]]:
    """(rules, the file's global allowlists, one message per skipped rule)."""
    try:
        with open(path, "rb") as fh:
            doc = tomllib.load(fh)
    except OSError as exc:
        raise ScanError(f"secrets.gitleaks: {path}: cannot read ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ScanError(f"secrets.gitleaks: {path}: invalid TOML ({exc})") from None
    skipped: list[str] = []
    global_allow: list[Allow] = []
    tables = ([doc["allowlist"]] if isinstance(doc.get("allowlist"), dict) else []) + list(doc.get("allowlists") or [])
    for t in tables:
        try:
            global_allow.append(_allow(t, path))
        except Untranslatable as exc:
            skipped.append(f"global allowlist: {exc}")
    rules: list[SecretRule] = []
    for raw in doc.get("rules") or []:
        rid = str(raw.get("id") or f"rule-{len(rules) + len(skipped)}")
        try:
            regex = compile_go(raw["regex"]) if raw.get("regex") else None
            rpath = compile_go(raw["path"], as_bytes=False) if raw.get("path") else None
            if regex is None and rpath is None:
                raise Untranslatable("neither regex nor path")
            allows = []
            old = raw.get("allowlist")
            for t in ([old] if isinstance(old, dict) else []) + list(raw.get("allowlists") or []):
                allows.append(_allow(t, path))
        except Untranslatable as exc:
            skipped.append(f"{rid}: {exc}")
            continue
        except (TypeError, KeyError, AttributeError) as exc:
            skipped.append(f"{rid}: malformed rule ({exc})")
            continue
        rules.append(SecretRule(
            id=rid, title=str(raw.get("description") or rid)[:200], regex=regex,
            keywords=tuple(str(k).lower().encode() for k in raw.get("keywords") or ()),
            severity="high", secret_group=int(raw.get("secretGroup") or 0),
            entropy=float(raw.get("entropy") or 0.0), path=rpath, allow=tuple(allows), origin=path,
            whole_body="private" in rid and "key" in rid))
    # overlapping matches go to the earlier rule: catch-all rules must come after the specific ones
    rules.sort(key=lambda r: r.id.startswith("generic"))
    return rules, tuple(global_allow), skipped
