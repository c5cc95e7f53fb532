"""Checks written as data: one value in one file, compared with what the benchmark asks.

Rule types (the `rule` table of a check in checks.toml; a sub-table named after an OS baseline
overrides the rule's values for images under that baseline):
  login_defs  key, op, value, missing ('fail' | 'pass' | 'not_applicable')   /etc/login.defs
  sysctl      key, value                                                      sysctl.d and sysctl.conf
  file_mode   path, max_mode, groups (owner is root)                          file metadata, no content
  sshd        keyword, op, value                                              see ssh.py
"""
from __future__ import annotations

from typing import Callable, Iterable

from .env import Env, keyword_values
from .model import Check, Result

RuleFn = Callable[[Env, Check, dict], Iterable[Result]]
RULE_TYPES: dict[str, RuleFn] = {}


def rule_type(name: str):
    def deco(fn):
        RULE_TYPES[name] = fn
        return fn
    return deco


def evaluate(env: Env, check: Check) -> Iterable[Result]:
    rule = dict(check.rule)
    # a baseline that asks for something else names it in a sub-table: {..., centos7 = {max_mode = "0000"}}
    overrides = rule.pop(env.baseline, None) if env.baseline else None
    rule = {k: v for k, v in rule.items() if not isinstance(v, dict)} | (overrides or {})
    fn = RULE_TYPES.get(rule.get("type", ""))
    if fn is None:
        raise ValueError(f"unknown rule type {rule.get('type')!r}")
    return fn(env, check, rule)


def _number(text: str) -> float | None:
    text = text.strip()
    try:
        return float(int(text, 8)) if len(text) > 1 and text.startswith("0") and text.isdigit() else float(text)
    except ValueError:
        return None


def compare(actual: str, op: str, want) -> bool:
    """The comparisons a benchmark asks for; numbers compare as numbers, words without case."""
    if op in ("<=", ">=", "<", ">", "between"):
        n = _number(actual)
        if n is None:
            return False
        if op == "between":
            return want[0] <= n <= want[1]
        return {"<=": n <= want, ">=": n >= want, "<": n < want, ">": n > want}[op]
    if op == "in":
        return actual.lower() in {str(w).lower() for w in want}
    if op == "not_in":
        return actual.lower() not in {str(w).lower() for w in want}
    if op == "==":
        return actual.lower() == str(want).lower()
    raise ValueError(f"unknown operator {op!r}")


def describe(op: str, want) -> str:
    if op == "between":
        return f"between {want[0]} and {want[1]}"
    if op in ("in", "not_in"):
        if op == "in" and len(want) == 1:
            return str(want[0])
        return ("one of " if op == "in" else "none of ") + ", ".join(map(str, want))
    return f"{op} {want}"


@rule_type("login_defs")
def login_defs(env: Env, check: Check, rule: dict) -> Iterable[Result]:
    conf = env.read("/etc/login.defs")
    if conf is None:
        yield Result(check.id, "not_applicable", "/etc/login.defs is absent", target="/etc/login.defs")
        return
    found = None
    for n, key, value in keyword_values(conf):
        if key == rule["key"]:
            found = (n, value)  # the last definition wins, as in shadow's getdef
    if found is None:
        yield Result(check.id, rule.get("missing", "fail"),
                     f"{rule['key']} is not set in {conf.path} (want {describe(rule['op'], rule['value'])})",
                     path=conf.path, layer_index=conf.layer)
        return
    n, value = found
    ok = compare(value, rule["op"], rule["value"])
    yield Result(check.id, "pass" if ok else "fail",
                 f"{conf.path}:{n}: {rule['key']} {value}" + ("" if ok else f" (want {describe(rule['op'], rule['value'])})"),
                 path=conf.path, line=n, layer_index=conf.layer)


SYSCTL_PLACES = ("/usr/lib/sysctl.d/*.conf", "/lib/sysctl.d/*.conf", "/etc/sysctl.d/*.conf")


def sysctl_settings(env: Env) -> dict[str, tuple[str, str, int, int]]:
    """key -> (value, path, line, layer); later files win, /etc/sysctl.conf last (systemd-sysctl order)."""
    confs = []
    for pattern in SYSCTL_PLACES:
        confs += env.glob(pattern)
    main = env.read("/etc/sysctl.conf")
    if main is not None:
        confs.append(main)
    out = {}
    for conf in confs:
        for n, line in conf.lines():
            if line.startswith(";") or "=" not in line:
                continue
            key, _, value = line.partition("=")
            key = key.strip().lstrip("-").replace("/", ".")
            out[key] = (value.strip(), conf.path, n, conf.layer)
    return out


@rule_type("sysctl")
def sysctl(env: Env, check: Check, rule: dict) -> Iterable[Result]:
    key, want = rule["key"], str(rule["value"])
    got = sysctl_settings(env).get(key)
    if got is None:
        # a container's kernel parameters are the host's: an image that does not set one has no say
        yield Result(check.id, "not_applicable", f"{key} is not set in the image (the host's kernel decides)",
                     target="sysctl")
        return
    value, path, n, layer = got
    ok = value.split() == want.split()
    yield Result(check.id, "pass" if ok else "fail",
                 f"{path}:{n}: {key} = {value}" + ("" if ok else f" (want {want})"), path=path, line=n,
                 layer_index=layer)


@rule_type("file_mode")
def file_mode(env: Env, check: Check, rule: dict) -> Iterable[Result]:
    path = rule["path"]
    real = env.fs.resolve(path)
    info = env.fs.get(real) if real else None
    if info is None:
        yield Result(check.id, "not_applicable", f"{path} is absent", target=path)
        return
    max_mode = int(rule["max_mode"], 8)
    gids = {0} | {env.groups[g] for g in rule.get("groups", []) if g in env.groups}
    mode = info.mode & 0o7777
    problems = []
    if mode & ~max_mode:
        problems.append(f"mode {mode:04o} (want {max_mode:04o} or stricter)")
    if info.uid != 0:
        problems.append(f"owner uid {info.uid} (want root)")
    if info.gid not in gids:
        problems.append(f"group gid {info.gid} (want {' or '.join(['root'] + list(rule.get('groups', [])))})")
    evidence = f"{path}: " + ("; ".join(problems) if problems else f"mode {mode:04o}, owner {info.uid}:{info.gid}")
    yield Result(check.id, "fail" if problems else "pass", evidence, path=path, layer_index=env.fs.layer_of(real))
