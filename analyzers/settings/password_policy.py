"""Password complexity policy: the PAM password and auth stacks of the OS family, pwquality.conf, login.defs.

Debian and Ubuntu keep the password stack in /etc/pam.d/common-password; the RHEL family (CentOS,
EulerOS, openEuler, ...) in system-auth and password-auth (symlinks to *-ac files on CentOS 7, which
`Env.read` follows). `@include` and `include`/`substack` controls are spliced in place.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

from .env import ConfigText, Env, Expansion, keyword_values
from .model import Check, Result, evaluator

COMPLEXITY_MODULES = ("pam_pwquality.so", "pam_cracklib.so", "pam_passwdqc.so")
DEBIAN_STACKS = {"password": ["common-password"], "auth": ["common-auth"]}
REDHAT_STACKS = {"password": ["system-auth", "password-auth"], "auth": ["system-auth", "password-auth"]}
MIN_LENGTH = 8
PAM_UNIX_BUILTIN_MINLEN = 6
PWQUALITY_DEFAULT_MINLEN = 8  # libpwquality; pam_cracklib's own default is 9
CRACKLIB_DEFAULT_MINLEN = 9
MAX_INCLUDE_DEPTH = 10


@dataclass(frozen=True)
class PamLine:
    type: str
    control: str
    module: str
    args: tuple[str, ...]
    path: str
    line: int
    layer: int

    def arg(self, name: str) -> str | None:
        for a in self.args:
            key, sep, value = a.partition("=")
            if key == name:
                return value if sep else ""
        return None

    def evidence(self) -> str:
        return f"{self.path}:{self.line}: {self.type} {self.control} {self.module} {' '.join(self.args)}".rstrip()


def parse_pam(env: Env, conf: ConfigText, kind: str) -> list[PamLine]:
    """The lines of one type of a PAM file, with `@include`, `include` and `substack` spliced in place.
    Each file is read once per parse (a file that includes itself, or many times over, costs one
    read) within the include budget; parsed once per image."""
    key = ("pam", conf.path, kind)
    if key not in env.memo:
        out: list[PamLine] = []
        _parse_pam(env, conf, kind, 0, frozenset(), Expansion.of(env, f"PAM {conf.path}"), out)
        env.memo[key] = out
    return list(env.memo[key])  # type: ignore[call-overload]


def _parse_pam(env: Env, conf: ConfigText, kind: str, depth: int, active: frozenset, seen: Expansion,
               out: list[PamLine]) -> None:
    if conf.path in active:
        seen.loop(conf.path)
        return
    if depth > MAX_INCLUDE_DEPTH:
        env.warn(f"PAM: include depth beyond {MAX_INCLUDE_DEPTH} at {conf.path}; not read")
        return
    if not seen.enter(conf):
        return
    active = active | {conf.path}
    for n, line in conf.lines():
        if line.startswith("@include"):
            inc = env.read("/etc/pam.d/" + line.split(None, 1)[1].strip()) if len(line.split()) > 1 else None
            if inc is not None:
                _parse_pam(env, inc, kind, depth + 1, active, seen, out)
            continue
        # a bracketed control holds spaces: '[success=1 default=ignore]'
        m = re.match(r"(-?\w+)\s+(\[[^\]]*\]|\S+)\s+(\S+)\s*(.*)$", line)
        if not m:
            continue
        type_, control, module, rest = m.group(1).lstrip("-").lower(), m.group(2), m.group(3), m.group(4)
        if type_ != kind:
            continue
        if control in ("include", "substack"):
            inc = env.read("/etc/pam.d/" + module)
            if inc is not None:
                _parse_pam(env, inc, kind, depth + 1, active, seen, out)
            continue
        module = module.rsplit("/", 1)[-1]
        out.append(PamLine(type_, control, module, tuple(rest.split()), conf.path, n, conf.layer))


def stacks(env: Env, kind: str) -> list[tuple[ConfigText, list[PamLine]]]:
    """The stack files of the image's family that exist, each with its lines of one type."""
    family = env.ctx.os.family
    if env.baseline in ("debian10", "ubuntu1604") or family in ("debian", "ubuntu"):
        names = DEBIAN_STACKS[kind]
    elif env.baseline in ("centos7", "euleros"):
        names = REDHAT_STACKS[kind]
    else:
        names = DEBIAN_STACKS[kind] + REDHAT_STACKS[kind]
    out = []
    for name in names:
        conf = env.read("/etc/pam.d/" + name)
        if conf is not None:
            out.append((conf, parse_pam(env, conf, kind)))
    return out


def pwquality_settings(env: Env) -> dict[str, tuple[str, str]]:
    """pwquality.conf and pwquality.conf.d: key -> (value, evidence), within the include budget."""
    if "pwquality" in env.memo:
        return env.memo["pwquality"]  # type: ignore[return-value]
    out = {}
    seen = Expansion.of(env, "pwquality.conf")
    for conf in [env.read("/etc/security/pwquality.conf")] + env.glob("/etc/security/pwquality.conf.d/*.conf"):
        if conf is None or not seen.enter(conf):
            continue
        for n, key, value in keyword_values(conf, "="):
            out[key] = (value, f"{conf.path}:{n}: {key} = {value}")
    env.memo["pwquality"] = out
    return out


def _no_pam(check: Check) -> Result:
    return Result(check.id, "not_applicable", "no PAM password stack (/etc/pam.d/common-password, system-auth,"
                  " password-auth) in the image", target="/etc/pam.d")


def _complexity(lines: list[PamLine]) -> PamLine | None:
    return next((l for l in lines if l.module in COMPLEXITY_MODULES), None)


@evaluator("password_policy.complexity-module")
def complexity_module(env: Env, check: Check) -> Iterable[Result]:
    found = stacks(env, "password")
    if not found:
        yield _no_pam(check)
        return
    missing = [conf for conf, lines in found if _complexity(lines) is None]
    if missing:
        conf = missing[0]
        yield Result(check.id, "fail", "; ".join(f"{c.path}: no password line uses pam_pwquality.so or pam_cracklib.so,"
                                                 " so password complexity is not enforced" for c in missing),
                     path=conf.path, layer_index=conf.layer, target=conf.path)
        return
    first = _complexity(found[0][1])
    assert first is not None  # no stack is missing one
    yield Result(check.id, "pass", first.evidence(), path=first.path, line=first.line, layer_index=first.layer,
                 target=first.path)


def _module_setting(env: Env, module: PamLine, key: str) -> tuple[str | None, str]:
    """A pwquality/cracklib option: the module argument wins over pwquality.conf."""
    value = module.arg(key)
    if value is not None:
        return value, module.evidence()
    if module.module == "pam_pwquality.so":
        got = pwquality_settings(env).get(key)
        if got:
            return got
    return None, ""


@evaluator("password_policy.min-length")
def min_length(env: Env, check: Check) -> Iterable[Result]:
    found = stacks(env, "password")
    if not found:
        conf = env.read("/etc/login.defs")
        if conf is None:
            yield _no_pam(check)
            return
        setting: tuple[int, str] | None = None
        for n, key, v in keyword_values(conf):
            if key == "PASS_MIN_LEN":
                setting = (n, v)
        ok = setting is not None and setting[1].isdigit() and int(setting[1]) >= MIN_LENGTH
        evidence = (f"{conf.path}:{setting[0]}: PASS_MIN_LEN {setting[1]}" if setting
                    else f"no minimum length: PASS_MIN_LEN is not set in {conf.path}")
        yield Result(check.id, "pass" if ok else "fail", evidence, path=conf.path, layer_index=conf.layer, target=conf.path)
        return
    for conf, lines in found:
        module = _complexity(lines)
        if module is not None and module.module != "pam_passwdqc.so":
            value, evidence = _module_setting(env, module, "minlen")
            default = PWQUALITY_DEFAULT_MINLEN if module.module == "pam_pwquality.so" else CRACKLIB_DEFAULT_MINLEN
            n = int(value) if value and value.isdigit() else default
            evidence = evidence or f"{module.evidence()} (default minlen {default})"
        else:
            unix = next((l for l in lines if l.module == "pam_unix.so"), None)
            value = unix.arg("minlen") if unix else None
            n = int(value) if value and value.isdigit() else PAM_UNIX_BUILTIN_MINLEN
            evidence = (f"{unix.evidence()}" if unix and value else
                        f"no minimum length set in {conf.path}: only pam_unix's built-in minimum of {PAM_UNIX_BUILTIN_MINLEN} applies")
        if n < MIN_LENGTH:
            yield Result(check.id, "fail", f"{evidence} (minimum length {n}, want {MIN_LENGTH} or more)",
                         path=conf.path, layer_index=conf.layer, target=conf.path)
            return
    conf = found[0][0]
    yield Result(check.id, "pass", evidence, path=conf.path, layer_index=conf.layer, target=conf.path)


@evaluator("password_policy.character-classes")
def character_classes(env: Env, check: Check) -> Iterable[Result]:
    found = stacks(env, "password")
    if not found:
        yield _no_pam(check)
        return
    for conf, lines in found:
        module = _complexity(lines)
        if module is None:
            yield Result(check.id, "fail", f"{conf.path}: no complexity module (pam_pwquality/pam_cracklib),"
                         " so no character classes are required", path=conf.path, layer_index=conf.layer, target=conf.path)
            return
        if module.module == "pam_passwdqc.so":
            continue  # passwdqc counts classes through its min= option, which always requires several
        minclass, ev_class = _module_setting(env, module, "minclass")
        credits = {}
        for k in ("dcredit", "ucredit", "lcredit", "ocredit"):
            v, ev = _module_setting(env, module, k)
            if v is not None and re.fullmatch(r"-?\d+", v):
                credits[k] = (int(v), ev)
        required = [k for k, (v, _) in credits.items() if v < 0]
        if (minclass and minclass.isdigit() and int(minclass) >= 3) or len(required) >= 3:
            continue
        evidence = "; ".join(filter(None, [ev_class] + [ev for _, ev in credits.values()])) or module.evidence()
        yield Result(check.id, "fail", f"{evidence} (want minclass >= 3, or dcredit/ucredit/lcredit/ocredit of -1)",
                     path=conf.path, layer_index=conf.layer, target=conf.path)
        return
    conf = found[0][0]
    yield Result(check.id, "pass", f"{conf.path}: at least three character classes are required", path=conf.path,
                 layer_index=conf.layer, target=conf.path)


@evaluator("password_policy.reuse")
def reuse(env: Env, check: Check) -> Iterable[Result]:
    found = stacks(env, "password")
    if not found:
        yield _no_pam(check)
        return
    for conf, lines in found:
        remembered = [(l, l.arg("remember")) for l in lines if l.module in ("pam_pwhistory.so", "pam_unix.so")]
        good = [l for l, v in remembered if v is not None and v.isdigit() and int(v) >= 5]
        if not good:
            said = "; ".join(l.evidence() for l, v in remembered if v is not None)
            yield Result(check.id, "fail", (said + " " if said else f"{conf.path}: no pam_pwhistory or pam_unix remember= option ")
                         + "(want remember >= 5)", path=conf.path, layer_index=conf.layer, target=conf.path)
            return
    l = good[0]
    yield Result(check.id, "pass", l.evidence(), path=l.path, line=l.line, layer_index=l.layer, target=l.path)


@evaluator("password_policy.pam-hashing")
def pam_hashing(env: Env, check: Check) -> Iterable[Result]:
    found = stacks(env, "password")
    if not found:
        yield _no_pam(check)
        return
    units = [l for _, lines in found for l in lines if l.module == "pam_unix.so"]
    if not units:
        yield Result(check.id, "not_applicable", "no pam_unix password line", target="/etc/pam.d")
        return
    for unix in units:
        if not any(unix.arg(a) is not None for a in ("sha512", "yescrypt", "gost_yescrypt")):
            yield Result(check.id, "fail", f"{unix.evidence()} (want sha512 or yescrypt)", path=unix.path, line=unix.line,
                         layer_index=unix.layer, target=unix.path)
            return
    unix = units[0]
    yield Result(check.id, "pass", unix.evidence(), path=unix.path, line=unix.line, layer_index=unix.layer, target=unix.path)


@evaluator("password_policy.lockout")
def lockout(env: Env, check: Check) -> Iterable[Result]:
    found = stacks(env, "auth")
    if not found:
        yield _no_pam(check)
        return
    module: PamLine | None = None
    for conf, lines in found:
        module = next((l for l in lines if l.module in ("pam_faillock.so", "pam_tally2.so", "pam_tally.so")), None)
        if module is None:
            yield Result(check.id, "fail", f"{conf.path}: no pam_faillock or pam_tally2 auth line: failed logins never"
                         " lock an account", path=conf.path, layer_index=conf.layer, target=conf.path)
            return
        deny = module.arg("deny")
        if module.module == "pam_faillock.so" and deny is None:
            for c in [env.read("/etc/security/faillock.conf")]:
                if c is not None:
                    for n, key, value in keyword_values(c, "="):
                        if key == "deny":
                            deny = value
        deny_n = int(deny) if deny and deny.isdigit() else (3 if module.module == "pam_faillock.so" else 0)
        if not 0 < deny_n <= 5:
            yield Result(check.id, "fail", f"{module.evidence()} (deny={deny_n or 'unset'}; want 1 to 5)", path=module.path,
                         line=module.line, layer_index=module.layer, target=module.path)
            return
    assert module is not None  # every stack has one
    yield Result(check.id, "pass", module.evidence(), path=module.path, line=module.line, layer_index=module.layer,
                 target=module.path)
