"""OS configuration baselines (CentOS 7, Debian 10, EulerOS, Ubuntu 16.04 and their relatives): the
checks that need code. The checks that compare one value are data in checks.toml (rule tables)."""
from __future__ import annotations

import re
from typing import Any, Iterable

from .container import PROFILE_FILES
from .env import Env
from .model import Check, Result, evaluator

TMOUT_LINE = re.compile(r"^(?:(?:readonly|export|declare\s+-\w+|typeset\s+-\w+)\s+)*TMOUT=(\d+)")
MAX_TMOUT = 900


@evaluator("baseline.shell-timeout")
def shell_timeout(env: Env, check: Check) -> Iterable[Result]:
    found = []
    for conf in [env.read(p) for p in PROFILE_FILES] + env.glob("/etc/profile.d/*.sh"):
        if conf is None:
            continue
        for n, line in conf.lines():
            m = TMOUT_LINE.match(line)
            if m:
                found.append((int(m.group(1)), conf, n, line))
    good = [f for f in found if 0 < f[0] <= MAX_TMOUT]
    if good:
        _, conf, n, line = good[0]
        yield Result(check.id, "pass", f"{conf.path}:{n}: {line}", path=conf.path, line=n, layer_index=conf.layer,
                     target=conf.path)
    elif found:
        _, conf, n, line = found[0]
        yield Result(check.id, "fail", f"{conf.path}:{n}: {line} (want 1 to {MAX_TMOUT} seconds)", path=conf.path, line=n,
                     layer_index=conf.layer, target=conf.path)
    else:
        yield Result(check.id, "fail", "TMOUT is not set in /etc/profile, /etc/bashrc, /etc/bash.bashrc or"
                     " /etc/profile.d: idle shells never time out", target="/etc/profile")


@evaluator("baseline.root-gid")
def root_gid(env: Env, check: Check) -> Iterable[Result]:
    conf = env.read("/etc/passwd")
    root = next((a for a in env.accounts if a.name == "root"), None)
    if conf is None or root is None:
        yield Result(check.id, "not_applicable", "no root entry in /etc/passwd", target="/etc/passwd")
        return
    yield Result(check.id, "pass" if root.gid == 0 else "fail", f"{conf.path}:{root.line}: root's group is GID {root.gid}",
                 path=conf.path, line=root.line, layer_index=conf.layer, target=conf.path)


@evaluator("baseline.legacy-plus-entries")
def legacy_plus(env: Env, check: Check) -> Iterable[Result]:
    seen = False
    for path in ("/etc/passwd", "/etc/group"):
        conf = env.read(path)
        if conf is None:
            continue
        seen = True
        for n, line in enumerate(conf.text.splitlines(), 1):
            if line.startswith(("+", "-")):
                yield Result(check.id, "fail", f"{conf.path}:{n}: legacy NIS entry {line.split(':')[0]}", path=conf.path,
                             line=n, layer_index=conf.layer, target=conf.path)
                return
    yield Result(check.id, "pass" if seen else "not_applicable",
                 "no legacy '+' entries in /etc/passwd or /etc/group" if seen else "no /etc/passwd or /etc/group",
                 target="/etc/passwd")


@evaluator("baseline.duplicate-names")
def duplicate_names(env: Env, check: Check) -> Iterable[Result]:
    conf = env.read("/etc/passwd")
    if conf is None:
        yield Result(check.id, "not_applicable", "no /etc/passwd in the image", target="/etc/passwd")
        return
    seen_names: dict[str, Any] = {}
    seen_uids: dict[Any, Any] = {}
    problems: list[str] = []
    for a in env.accounts:
        if a.name in seen_names:
            problems.append(f"{conf.path}:{a.line}: user name {a.name} repeats line {seen_names[a.name]}")
        seen_names.setdefault(a.name, a.line)
        if a.uid is not None and a.uid in seen_uids and a.uid != 0:
            problems.append(f"{conf.path}:{a.line}: UID {a.uid} of {a.name} is also {seen_uids[a.uid]}'s")
        seen_uids.setdefault(a.uid, a.name)
    yield Result(check.id, "fail" if problems else "pass",
                 "; ".join(problems[:10]) if problems else f"{conf.path}: user names and UIDs are unique",
                 path=conf.path, layer_index=conf.layer, target=conf.path)


@evaluator("baseline.su-restricted")
def su_restricted(env: Env, check: Check) -> Iterable[Result]:
    from .password_policy import parse_pam

    conf = env.read("/etc/pam.d/su")
    if conf is None:
        yield Result(check.id, "not_applicable", "no /etc/pam.d/su in the image", target="/etc/pam.d/su")
        return
    wheel = next((l for l in parse_pam(env, conf, "auth") if l.module == "pam_wheel.so"), None)
    if wheel is None:
        yield Result(check.id, "fail", f"{conf.path}: no active pam_wheel.so auth line: any user may su to root",
                     path=conf.path, layer_index=conf.layer, target=conf.path)
    else:
        yield Result(check.id, "pass", wheel.evidence(), path=wheel.path, line=wheel.line, layer_index=wheel.layer,
                     target=wheel.path)
