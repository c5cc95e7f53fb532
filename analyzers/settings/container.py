"""The container baseline (CIS Docker Benchmark, section 4 "Container Images and Build File").

Image-level facts come from the image config (User, Healthcheck, Env, history); file facts from the
modes and owners of the final filesystem (no file content is needed, so cached layers cost nothing).
"""
from __future__ import annotations

import re
from typing import Iterable

from stowaway.ingest.model import DIR

from .env import Env
from .model import Check, Result, evaluator

SECRET_ENV = re.compile(r"(?i)(PASSWORD|PASSWD|PASSPHRASE|SECRET|TOKEN|API_?KEY|PRIVATE_?KEY|ACCESS_?KEY|_KEY$|^KEY$|CREDENTIAL)")
# names that hold a reference to a secret or a public value, not a secret
NOT_SECRET_ENV = re.compile(r"(?i)(_FILE$|_PATH$|_DIR$|_URL$|GPG_KEY|_KEYRING|_KEY_ID$|PUBLIC)")
REMOTE_ADD = re.compile(r"(?i)\bADD\b(?:\s+--\S+)*\s+(?:https?|ftp)://\S+")
SYSTEM_DIRS = ("/bin/", "/sbin/", "/usr/bin/", "/usr/sbin/", "/usr/lib/", "/usr/lib64/", "/usr/libexec/", "/lib/",
               "/lib64/", "/usr/lib32/")
PSEUDO_DIRS = ("/proc/", "/sys/", "/dev/")
LISTED = 25
CONFIG = "image config"


SAMPLE = 200  # entries kept per kind of interesting file; counts stay exact


class Sample:
    """How many entries matched, and the first SAMPLE of them (an image may hold millions)."""

    def __init__(self):
        self.count = 0
        self.items: list[tuple] = []

    def add(self, info, layer) -> None:
        self.count += 1
        if len(self.items) < SAMPLE:
            self.items.append((info, layer))


class FileFacts:
    """One pass over the final filesystem's metadata for every check that needs modes and owners."""

    def __init__(self, env: Env):
        from .ssh import HOST_KEY

        self.special, self.unexpected = Sample(), Sample()
        self.writable_files, self.writable_dirs = Sample(), Sample()
        self.unowned, self.host_keys = Sample(), Sample()
        uids = {a.uid for a in env.accounts}
        gids = set(env.groups.values()) | {a.gid for a in env.accounts}
        for info, layer in env.fs.walk():
            if info.path.startswith(PSEUDO_DIRS):
                continue
            if uids and (info.uid not in uids or info.gid not in gids):
                self.unowned.add(info, layer)
            if info.is_file:
                if info.mode & 0o6000:
                    self.special.add(info, layer)
                    if not info.path.startswith(SYSTEM_DIRS):
                        self.unexpected.add(info, layer)
                if info.mode & 0o002:
                    self.writable_files.add(info, layer)
                if HOST_KEY.match(info.path):
                    self.host_keys.add(info, layer)
            elif info.type == DIR and info.mode & 0o002 and not info.mode & 0o1000:
                self.writable_dirs.add(info, layer)


def file_facts(env: Env) -> FileFacts:
    if "file_facts" not in env.memo:
        env.memo["file_facts"] = FileFacts(env)
    facts: FileFacts = env.memo["file_facts"]
    return facts


def _listing(items: list[str], count: int | None = None) -> str:
    count = len(items) if count is None else count
    shown = ", ".join(items[:LISTED])
    return shown + (f" and {count - min(len(items), LISTED)} more" if count > min(len(items), LISTED) else "")


@evaluator("container.non-root-user")
def non_root_user(env: Env, check: Check) -> Iterable[Result]:
    user = (env.runtime.get("User") or "").strip()
    name = user.split(":")[0]
    if not name:
        yield Result(check.id, "fail", "USER is not set in the image config: the container runs as root", target=CONFIG)
    elif name in ("root", "0"):
        yield Result(check.id, "fail", f"USER {user}: the container runs as root", target=CONFIG)
    else:
        yield Result(check.id, "pass", f"USER {user}", target=CONFIG)


@evaluator("container.healthcheck")
def healthcheck(env: Env, check: Check) -> Iterable[Result]:
    hc = env.runtime.get("Healthcheck") or {}
    test = hc.get("Test") or []
    if not test:
        yield Result(check.id, "fail", "no HEALTHCHECK instruction in the image config", target=CONFIG)
    elif test[0] == "NONE":
        yield Result(check.id, "fail", "HEALTHCHECK NONE disables the health check", target=CONFIG)
    else:
        yield Result(check.id, "pass", "HEALTHCHECK " + " ".join(map(str, test))[:200], target=CONFIG)


def secret_env_names(runtime: dict) -> list[str]:
    names = []
    for item in runtime.get("Env") or []:
        name, sep, value = str(item).partition("=")
        if sep and value.strip() and SECRET_ENV.search(name) and not NOT_SECRET_ENV.search(name):
            names.append(name)
    return names


@evaluator("container.secrets-in-env")
def secrets_in_env(env: Env, check: Check) -> Iterable[Result]:
    names = secret_env_names(env.runtime)
    for name in names:
        # the name only: a secret's value never leaves the image config
        yield Result(check.id, "fail", f"ENV {name} is set to a non-empty value in the image config (value not shown)",
                     target=f"ENV {name}")
    if not names:
        yield Result(check.id, "pass", "no ENV variable named like a password, secret, token or key", target=CONFIG)


def _history(env: Env) -> list[str]:
    return [str(h.get("created_by") or "") for h in env.ctx.spec.config.get("history") or []]


def _layer_steps(env: Env) -> list[tuple[int | None, str]]:
    """(layer index, command) of each history step; steps that made no layer have None."""
    out, layer = [], 0
    for h in env.ctx.spec.config.get("history") or []:
        empty = bool(h.get("empty_layer"))
        out.append((None if empty else layer, str(h.get("created_by") or "")))
        layer += 0 if empty else 1
    return out


# a crypt(3) hash ('$6$salt$...', '$y$j9T$...'), a password piped to chpasswd, or a password option
HISTORY_SECRETS = (
    (re.compile(r"\$(?:1|2[abxy]|5|6|y|gy|7)\$[./0-9A-Za-z$]{8,}"), "a password hash"),
    (re.compile(r"echo\s+['\"]?[^'\"|\s:]+:[^'\"|\s$]+['\"]?\s*\|\s*chpasswd(?!\s+-e)"), "a plain-text password for chpasswd"),
    (re.compile(r"(?i)(?:--password[= ]|(?:PASSWORD|PASSWD|SECRET|TOKEN)=)[^\s$'\"]{4,}"), "a password or secret argument"),
)


@evaluator("container.secrets-in-history")
def secrets_in_history(env: Env, check: Check) -> Iterable[Result]:
    """Build commands stay in the image config's history: a hash or password written there ships with the image."""
    found = False
    for step, (layer, command) in enumerate(_layer_steps(env)):
        if re.match(r"(?:/bin/sh -c #\(nop\)\s+)?ENV\b", command.strip()):
            continue  # ENV is judged by container.secrets-in-env
        kinds = [what for pattern, what in HISTORY_SECRETS if pattern.search(command)]
        if kinds:
            found = True
            where = f"history step {step}" + (f" (layer {layer})" if layer is not None else "")
            yield Result(check.id, "fail", f"{where}: the build command contains {', '.join(kinds)} (not shown)",
                         layer_index=layer, target=CONFIG)
    if not found:
        yield Result(check.id, "pass", "no password, hash or secret in the build history", target=CONFIG)


@evaluator("container.add-remote-url")
def add_remote_url(env: Env, check: Check) -> Iterable[Result]:
    hits = [m.group(0)[:300] for line in _history(env) for m in [REMOTE_ADD.search(line)] if m]
    for hit in hits:
        yield Result(check.id, "fail", f"history: {hit}", target=CONFIG)
    if not hits:
        yield Result(check.id, "pass", "no ADD of a remote URL in the image history", target=CONFIG)


@evaluator("container.update-alone")
def update_alone(env: Env, check: Check) -> Iterable[Result]:
    bad = []
    for line in _history(env):
        if re.search(r"\b(apt-get|apt|yum|dnf|apk)\s+(update|makecache)\b", line) and not re.search(
                r"\b(install|upgrade|add|dist-upgrade)\b", line):
            bad.append(line.strip()[:200])
    for line in bad:
        yield Result(check.id, "fail", f"history: {line}", target=CONFIG)
    if not bad:
        yield Result(check.id, "pass", "every package index update is followed by an install in the same step",
                     target=CONFIG)


@evaluator("container.setuid-setgid")
def setuid_setgid(env: Env, check: Check) -> Iterable[Result]:
    yield _summary(check, file_facts(env).special, "no setuid or setgid file", "setuid/setgid files")


def _summary(check: Check, found: Sample, passed: str, what: str) -> Result:
    """One result for the whole image: pass, or how many files and which (path and mode), first one as evidence."""
    if not found.count:
        return Result(check.id, "pass", passed, target="/")
    info, layer = found.items[0]
    return Result(check.id, "fail", f"{found.count} {what}: "
                  + _listing([f"{i.path} ({i.mode & 0o7777:04o})" for i, _ in found.items], found.count),
                  path=info.path, layer_index=layer, target="/")


@evaluator("container.setuid-unexpected")
def setuid_unexpected(env: Env, check: Check) -> Iterable[Result]:
    """A setuid/setgid file outside the system directories is no distribution's doing: often a planted shell."""
    found = file_facts(env).unexpected
    for info, layer in found.items[:LISTED]:
        owner = "root" if info.uid == 0 else f"uid {info.uid}"
        kind = "setuid" if info.mode & 0o4000 else "setgid"
        yield Result(check.id, "fail", f"{info.path}: {kind} {owner}, mode {info.mode & 0o7777:04o}, outside the system"
                     " directories", path=info.path, layer_index=layer, target=info.path)
    if found.count > LISTED:
        yield _more(check, found, "setuid/setgid files outside the system directories")
    if not found.count:
        yield Result(check.id, "pass", "every setuid/setgid file is in a system directory", target="/")


def _more(check: Check, found: Sample, what: str) -> Result:
    """The entries past the ones reported one by one, as one result."""
    info, layer = found.items[LISTED]
    return Result(check.id, "fail", f"{found.count - LISTED} more {what}: "
                  + _listing([i.path for i, _ in found.items[LISTED:]], found.count - LISTED),
                  path=info.path, layer_index=layer, target="/")


@evaluator("container.world-writable-files")
def world_writable_files(env: Env, check: Check) -> Iterable[Result]:
    found = file_facts(env).writable_files
    for info, layer in found.items[:LISTED]:
        yield Result(check.id, "fail", f"{info.path}: world-writable, mode {info.mode & 0o7777:04o}", path=info.path,
                     layer_index=layer, target=info.path)
    if found.count > LISTED:
        yield _more(check, found, "world-writable files")
    if not found.count:
        yield Result(check.id, "pass", "no world-writable regular file", target="/")


@evaluator("container.world-writable-dirs")
def world_writable_dirs(env: Env, check: Check) -> Iterable[Result]:
    yield _summary(check, file_facts(env).writable_dirs, "every world-writable directory has the sticky bit",
                   "world-writable directories without the sticky bit")


@evaluator("container.unowned-files")
def unowned_files(env: Env, check: Check) -> Iterable[Result]:
    if not env.accounts:
        yield Result(check.id, "not_applicable", "no /etc/passwd in the image", target="/")
        return
    found = file_facts(env).unowned
    if not found.count:
        yield Result(check.id, "pass", "every file belongs to a known user and group", target="/")
        return
    info, layer = found.items[0]
    yield Result(check.id, "fail", f"{found.count} files or directories owned by no known user or group: "
                 + _listing([f"{i.path} ({i.uid}:{i.gid})" for i, _ in found.items], found.count),
                 path=info.path, layer_index=layer, target="/")


@evaluator("container.duplicate-uid0")
def duplicate_uid0(env: Env, check: Check) -> Iterable[Result]:
    conf = env.read("/etc/passwd")
    if conf is None:
        yield Result(check.id, "not_applicable", "no /etc/passwd in the image", target="/etc/passwd")
        return
    zero = [a for a in env.accounts if a.uid == 0]
    others = [a for a in zero if a.name != "root"]
    if others:
        a = others[0]
        yield Result(check.id, "fail", "; ".join(f"{conf.path}:{o.line}: {o.name} has UID 0" for o in others),
                     path=conf.path, line=a.line, layer_index=conf.layer, target=conf.path)
    else:
        yield Result(check.id, "pass", f"{conf.path}: only root has UID 0", path=conf.path, layer_index=conf.layer,
                     target=conf.path)


LIMIT_LINE = re.compile(r"^(\S+)\s+(hard|-)\s+core\s+(\S+)")


@evaluator("container.core-dumps")
def core_dumps(env: Env, check: Check) -> Iterable[Result]:
    confs = [c for c in [env.read("/etc/security/limits.conf")] + env.glob("/etc/security/limits.d/*.conf") if c]
    if not confs:
        yield Result(check.id, "not_applicable", "no /etc/security/limits.conf: core limits come from the container"
                     " runtime", target="/etc/security/limits.conf")
        return
    for conf in confs:
        for n, line in conf.lines():
            m = LIMIT_LINE.match(line)
            if m and m.group(1) == "*" and m.group(3) == "0":
                yield Result(check.id, "pass", f"{conf.path}:{n}: {line}", path=conf.path, line=n, layer_index=conf.layer,
                             target=conf.path)
                return
    conf = confs[0]
    yield Result(check.id, "fail", f"no '* hard core 0' in {', '.join(c.path for c in confs)}: core dumps of setuid"
                 " programs may leak memory contents", path=conf.path, layer_index=conf.layer, target=conf.path)


UMASK_LINE = re.compile(r"^\s*umask\s+(0?[0-7]{3})\b")
PROFILE_FILES = ("/etc/profile", "/etc/bashrc", "/etc/bash.bashrc")


@evaluator("container.umask")
def umask(env: Env, check: Check) -> Iterable[Result]:
    settings = []  # (value, evidence, conf, line)
    defs = env.read("/etc/login.defs")
    if defs is not None:
        for n, line in defs.lines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "UMASK" and re.fullmatch(r"0?[0-7]{3}", parts[1]):
                settings.append((int(parts[1], 8), f"{defs.path}:{n}: {line}", defs, n))
    for conf in [env.read(p) for p in PROFILE_FILES] + env.glob("/etc/profile.d/*.sh"):
        if conf is None:
            continue
        for n, line in conf.lines():
            m = UMASK_LINE.match(line)
            if m:
                settings.append((int(m.group(1), 8), f"{conf.path}:{n}: {line}", conf, n))
    if not settings:
        yield Result(check.id, "fail", "no default umask is set (login.defs UMASK, /etc/profile, bashrc): 022 applies",
                     target="umask")
        return
    weak = [s for s in settings if s[0] & 0o027 != 0o027]
    value, evidence, conf, n = weak[0] if weak else settings[0]
    yield Result(check.id, "fail" if weak else "pass", evidence + (" (want 027 or stricter)" if weak else ""),
                 path=conf.path, line=n, layer_index=conf.layer, target=conf.path)


@evaluator("container.sshd-installed")
def sshd_installed(env: Env, check: Check) -> Iterable[Result]:
    from .ssh import SSHD_BINARIES

    found = [b for b in SSHD_BINARIES if env.fs.exists(b)]
    if found:
        yield Result(check.id, "fail", f"{found[0]}: an SSH server is installed in the image", path=found[0],
                     layer_index=env.layer_of(found[0]), target=found[0])
    else:
        yield Result(check.id, "pass", "no sshd binary in the image", target="/usr/sbin/sshd")
