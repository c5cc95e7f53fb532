#!/usr/bin/env python3
"""Extracts the true- and false-positive examples that gitleaks's rule generators list, as test data.

    python tests/bench/extract_gitleaks_examples.py GITLEAKS_GIT_DIR > tests/data/secrets/gitleaks_examples.json

gitleaks (https://github.com/gitleaks/gitleaks, MIT licence, Copyright (c) 2019 Zachary Rice) defines
each rule in `cmd/generate/config/rules/*.go` with `tps` (text the rule must find) and `fps` (text it
must not). Many examples are built at generation time: `utils.GenerateSampleSecrets(id, secret)`
wraps a secret in about 25 file formats (ini, json, yaml, go, java, make...) and
`secrets.NewSecret(regex)` draws a random string from a regex. This script evaluates the small subset
of Go that those lines use (string literals, `+`, `[]string{...}`, `append`, `fmt.Sprintf` with `%s`,
the `utils.*` pattern helpers) with a seeded generator, so the output is reproducible; an example
using anything else (a local variable, a loop) is left out and counted. Only the examples are data
taken from gitleaks; this code is the project's own.
"""
from __future__ import annotations

import json
import random
import re
import re._constants as C  # noqa: N812
import re._parser as P  # noqa: N812
import subprocess
import sys

# the file formats of utils.GenerateSampleSecrets (cmd/generate/config/utils/generate.go)
SAMPLE_FORMATS = [
    '{i}Token="{s}"', '{i}Token = "{s}"', "{i}Token={s}", "{i}Token = {s}",
    '{\n    "{i}_token": "{s}"\n}', '{"config.ini": "{I}_TOKEN={s}\\nBACKUP_ENABLED=true"}',
    "<{i}Token>\n    {s}\n</{i}Token>",
    "{i}_token: {s}", "{i}_token: '{s}'", '{i}_token: "{s}"',
    'string {i}Token = "{s}";', 'var {i}Token string = "{s}"', '{i}Token := "{s}"', "{i}Token := `{s}`",
    'String {i}Token = "{s}";', 'var {i}Token = "{s}"', '${i}Token .= "{s}"', "{i}Token = '{s}'",
    '{i}Token = "{s}"', 'System.setProperty("{I}_TOKEN", "{s}")', '  "{i}Token" => "{s}"',
    '{i}_TOKEN = "{s}"', '{i}_TOKEN := "{s}"', '{i}_TOKEN ::= "{s}"', '{i}_TOKEN :::= "{s}"', '{i}_TOKEN ?= "{s}"',
]
HELPERS = {
    "Numeric": "[0-9]{%s}", "Hex": "[a-f0-9]{%s}", "AlphaNumeric": "[a-z0-9]{%s}",
    "AlphaNumericExtendedShort": "[a-z0-9_-]{%s}", "AlphaNumericExtended": "[a-z0-9=_\\-]{%s}",
    "AlphaNumericExtendedLong": "[a-z0-9\\/=_\\+\\-]{%s}",
}
HEX_UUID = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


class Unsupported(Exception):
    pass


def sample_regex(pattern: str, rnd: random.Random) -> str:
    """A random string the (Go, mostly Python-compatible) regex matches."""
    pattern = pattern.replace("\\z", "\\Z")
    try:
        tree = P.parse(pattern)
    except Exception as exc:  # noqa: BLE001 - any parse failure means: leave the example out
        raise Unsupported(f"regex {pattern!r}: {exc}") from None
    return _gen(tree, rnd)


_CATS = {C.CATEGORY_DIGIT: "0123456789", C.CATEGORY_WORD: "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_",
         C.CATEGORY_SPACE: " "}


def _gen(tree, rnd: random.Random) -> str:
    out = []
    for op, av in tree:
        if op is C.LITERAL:
            out.append(chr(av))
        elif op is C.IN:
            chars: list[str] = []
            negate = False
            for o, a in av:
                if o is C.NEGATE:
                    negate = True
                elif o is C.LITERAL:
                    chars.append(chr(a))
                elif o is C.RANGE:
                    chars += [chr(c) for c in range(a[0], a[1] + 1)]
                elif o is C.CATEGORY and a in _CATS:
                    chars += list(_CATS[a])
                else:
                    raise Unsupported(f"class item {o}")
            if negate:
                chars = [c for c in "abcdefghijklmnopqrstuvwxyz0123456789" if c not in chars]
            out.append(rnd.choice(chars))
        elif op in (C.MAX_REPEAT, C.MIN_REPEAT, C.POSSESSIVE_REPEAT):
            lo, hi, sub = av
            hi = lo + 8 if hi is C.MAXREPEAT else hi
            out += [_gen(sub, rnd) for _ in range(rnd.randint(lo, hi))]
        elif op is C.SUBPATTERN:
            out.append(_gen(av[-1], rnd))
        elif op is C.BRANCH:
            out.append(_gen(rnd.choice(av[1]), rnd))
        elif op is C.CATEGORY and av in _CATS:
            out.append(rnd.choice(_CATS[av]))
        elif op is C.ANY:
            out.append(rnd.choice("abcdefghijklmnopqrstuvwxyz"))
        elif op in (C.AT, C.ASSERT, C.ASSERT_NOT):
            continue
        else:
            raise Unsupported(f"regex op {op}")
    return "".join(out)


_TOKEN = re.compile(r'\s*(?:(?P<str>"(?:[^"\\\n]|\\.)*")|(?P<raw>`[^`]*`)|(?P<name>[A-Za-z_][\w.]*)|(?P<op>\.\.\.|[(){}\[\],+]))',
                    re.S)


class Evaluator:
    """Just enough Go to evaluate the examples' expressions."""

    def __init__(self, text: str, rnd: random.Random, env: dict[str, object]):
        self.toks: list[tuple[str, str]] = []
        pos = 0
        text = re.sub(r"//[^\n]*", "", text)
        while pos < len(text):
            if text[pos:].strip() == "":
                break
            m = _TOKEN.match(text, pos)
            if not m:
                raise Unsupported(f"token at {text[pos:pos + 20]!r}")
            kind = m.lastgroup or ""
            self.toks.append((kind, m.group(kind)))
            pos = m.end()
        self.i = 0
        self.rnd = rnd
        self.env = env

    def peek(self) -> tuple[str, str]:
        return self.toks[self.i] if self.i < len(self.toks) else ("eof", "")

    def take(self, value: str | None = None) -> tuple[str, str]:
        tok = self.peek()
        if value is not None and tok[1] != value:
            raise Unsupported(f"expected {value!r}, got {tok[1]!r}")
        self.i += 1
        return tok

    def expr(self):
        value = self.term()
        while self.peek()[1] == "+":
            self.take()
            right = self.term()
            if not isinstance(value, str) or not isinstance(right, str):
                raise Unsupported("+ on a list")
            value += right
        return value

    def args(self) -> list:
        self.take("(")
        out = []
        while self.peek()[1] != ")":
            out.append(self.expr())
            if self.peek()[1] == "...":
                self.take()
                out[-1] = ("spread", out[-1])
            if self.peek()[1] == ",":
                self.take()
        self.take(")")
        return out

    def term(self):
        kind, value = self.take()
        if kind == "str":
            return json.loads(value.replace("\\'", "'")) if "\\x" not in value else _go_unquote(value)
        if kind == "raw":
            return value[1:-1]
        if kind == "op" and value == "[":
            self.take("]")
            if self.take()[1] != "string":
                raise Unsupported("not a []string")
            self.take("{")
            items = []
            while self.peek()[1] != "}":
                items.append(self.expr())
                if self.peek()[1] == ",":
                    self.take()
            self.take("}")
            return items
        if kind == "name":
            short = value.rsplit(".", 1)[-1]
            if value in self.env:
                return self.env[value]
            if self.peek()[1] != "(":
                raise Unsupported(f"variable {value}")
            args = self.args()
            if short == "append":
                base = args[0]
                for a in args[1:]:
                    base = base + (a[1] if isinstance(a, tuple) else [a])
                return base
            if short == "NewSecret":
                return sample_regex(args[0], self.rnd)
            if short in HELPERS:
                return HELPERS[short] % args[0]
            if short == "Hex8_4_4_4_12":
                return HEX_UUID
            if short == "GenerateSampleSecrets":
                ident, secret = args
                return [f.replace("{i}", ident).replace("{I}", ident.upper()).replace("{s}", secret)
                        for f in SAMPLE_FORMATS]
            if short == "GenerateSampleSecret":
                return f'{args[0]}_api_token = "{args[1]}"'
            if short == "Sprintf":
                fmt, rest = args[0], args[1:]
                if re.search(r"%[^s%]", fmt):
                    raise Unsupported("Sprintf verb")
                return fmt.replace("%%", "\0") % tuple(rest) if rest else fmt
            raise Unsupported(f"call {value}")
        raise Unsupported(f"term {value!r}")


def _go_unquote(literal: str) -> str:
    return literal[1:-1].encode().decode("unicode_escape")


_ASSIGN = re.compile(r"^\s*(tps|fps)\s*(:?=)\s*", re.M)


def statements(body: str) -> list[tuple[str, str]]:
    """(variable, expression text) of each `tps := ...`, `fps = append(fps, ...)` statement."""
    out = []
    for m in _ASSIGN.finditer(body):
        start = m.end()
        depth, j, in_str = 0, start, ""
        while j < len(body):
            c = body[j]
            if in_str:
                if c == "\\" and in_str == '"':
                    j += 2
                    continue
                if c == in_str:
                    in_str = ""
            elif c in "\"`":
                in_str = c
            elif c in "([{":
                depth += 1
            elif c in ")]}":
                depth -= 1
            elif c == "\n" and depth == 0:
                break
            j += 1
        out.append((m.group(1), body[start:j]))
    return out


def extract(checkout: str, seed: int = 18) -> dict:
    files = subprocess.run(["git", "-C", checkout, "ls-tree", "--name-only", "HEAD", "cmd/generate/config/rules/"],
                           check=True, capture_output=True, text=True).stdout.split()
    commit = subprocess.run(["git", "-C", checkout, "rev-parse", "HEAD"], check=True, capture_output=True,
                            text=True).stdout.strip()
    rnd = random.Random(seed)
    rules: dict[str, dict] = {}
    left_out = 0
    for name in sorted(files):
        if name.endswith("_test.go"):
            continue
        text = subprocess.run(["git", "-C", checkout, "show", f"HEAD:{name}"], check=True, capture_output=True,
                              text=True).stdout
        for func in re.split(r"\nfunc ", text)[1:]:
            m = re.search(r'RuleID:\s*"([^"]+)"', func)
            if not m:
                continue
            rid = m.group(1)
            entry = rules.setdefault(rid, {"file": name, "tps": [], "fps": []})
            for var, expr in statements(func):
                try:
                    value = Evaluator(expr, rnd, {var: list(entry[var])}).expr()
                except (Unsupported, ValueError, TypeError, IndexError, UnicodeDecodeError):
                    left_out += 1
                    continue
                items = value if isinstance(value, list) else [value]
                entry[var] = [x for x in items if isinstance(x, str)]
    return {"source": "https://github.com/gitleaks/gitleaks cmd/generate/config/rules/*.go",
            "commit": commit, "licence": "MIT, Copyright (c) 2019 Zachary Rice",
            "generated_by": "tests/bench/extract_gitleaks_examples.py", "seed": seed,
            "statements_left_out": left_out, "rules": rules}


if __name__ == "__main__":
    json.dump(extract(sys.argv[1]), sys.stdout, indent=1, ensure_ascii=False)
    sys.stdout.write("\n")
