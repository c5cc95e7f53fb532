"""OpenSSH server settings: sshd_config with its Include files and Match blocks, read as sshd reads it.

sshd keeps the first value it meets for a keyword; Include splices files in place (globs in name
order, relative names under /etc/ssh); a Match block holds until the next Match or the end of the
file it is in. A keyword nobody sets takes the default of the installed OpenSSH version, taken from
the openssh-server package (the newest defaults when the version is unknown, and the evidence says so).
"""
from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from typing import Iterable

from .env import Env, Expansion
from .model import Check, Result, evaluator
from .rules import compare, describe, rule_type

SSHD_CONFIG = "/etc/ssh/sshd_config"
MAX_INCLUDE_DEPTH = 16
SSHD_BINARIES = ("/usr/sbin/sshd", "/usr/bin/sshd", "/sbin/sshd")

CANONICAL = {k.lower(): k for k in (
    "PermitRootLogin", "PasswordAuthentication", "PermitEmptyPasswords", "Protocol", "X11Forwarding",
    "MaxAuthTries", "LoginGraceTime", "ClientAliveInterval", "ClientAliveCountMax", "IgnoreRhosts",
    "HostbasedAuthentication", "AllowTcpForwarding", "LogLevel", "Ciphers", "MACs", "KexAlgorithms")}
TIME_KEYWORDS = {"logingracetime", "clientaliveinterval"}

WEAK_CIPHERS = re.compile(r"(?i)(-cbc$|^arcfour|^rijndael-cbc|^3des|^blowfish|^cast128|^des$)")
# MD5, RIPEMD-160 and 96-bit truncated MACs; HMAC-SHA1 is not broken as a MAC and stays allowed
WEAK_MACS = re.compile(r"(?i)(md5|ripemd160|-96(-etm@openssh\.com)?$)")
WEAK_KEX = re.compile(r"(?i)(diffie-hellman-group1-sha1|diffie-hellman-group-exchange-sha1|gss-group1-sha1|gss-gex-sha1)")

_MODERN_CIPHERS = "chacha20-poly1305@openssh.com,aes128-ctr,aes192-ctr,aes256-ctr,aes128-gcm@openssh.com,aes256-gcm@openssh.com"
_MODERN_MACS = ("umac-64-etm@openssh.com,umac-128-etm@openssh.com,hmac-sha2-256-etm@openssh.com,"
                "hmac-sha2-512-etm@openssh.com,hmac-sha1-etm@openssh.com,umac-64@openssh.com,umac-128@openssh.com,"
                "hmac-sha2-256,hmac-sha2-512,hmac-sha1")
_MODERN_KEX = ("curve25519-sha256,curve25519-sha256@libssh.org,ecdh-sha2-nistp256,ecdh-sha2-nistp384,"
               "ecdh-sha2-nistp521,diffie-hellman-group-exchange-sha256,diffie-hellman-group16-sha512,"
               "diffie-hellman-group18-sha512,diffie-hellman-group14-sha256")


def default(keyword: str, version: tuple[int, int] | None) -> str:
    """sshd's built-in default for a keyword in a given OpenSSH version (None: the newest)."""
    v = version or (99, 0)
    if keyword == "permitrootlogin":
        return "yes" if v < (7, 0) else "prohibit-password"
    if keyword == "protocol":
        return "2,1" if v < (5, 4) else "2"
    if keyword == "ciphers":
        # 6.7 dropped CBC and arcfour from the server's default list
        return (_MODERN_CIPHERS + ",aes128-cbc,3des-cbc,blowfish-cbc,cast128-cbc,arcfour") if v < (6, 7) else _MODERN_CIPHERS
    if keyword == "macs":
        return (_MODERN_MACS + ",hmac-md5,hmac-ripemd160,hmac-sha1-96,hmac-md5-96") if v < (6, 7) else _MODERN_MACS
    if keyword == "kexalgorithms":
        # 7.0 disabled diffie-hellman-group1-sha1 by default
        return (_MODERN_KEX + ",diffie-hellman-group14-sha1,diffie-hellman-group1-sha1") if v < (7, 0) else _MODERN_KEX
    return {
        "passwordauthentication": "yes", "permitemptypasswords": "no", "x11forwarding": "no",
        "maxauthtries": "6", "logingracetime": "120", "clientaliveinterval": "0", "clientalivecountmax": "3",
        "ignorerhosts": "yes", "hostbasedauthentication": "no", "allowtcpforwarding": "yes", "loglevel": "INFO",
    }.get(keyword, "")


@dataclass(frozen=True)
class Directive:
    keyword: str  # lower case
    value: str
    path: str
    line: int
    layer: int
    match: str = ""  # the Match condition it sits under, "" when global

    def evidence(self) -> str:
        where = f"{self.path}:{self.line}: " + (f"Match {self.match}: " if self.match else "")
        return f"{where}{CANONICAL.get(self.keyword, self.keyword)} {self.value}"


@dataclass
class SshdConfig:
    directives: list[Directive]
    version: tuple[int, int] | None
    version_text: str
    main: str  # the main file's path, or "" when the server has no config file

    def effective(self, keyword: str) -> tuple[str, Directive | None]:
        """The global value sshd uses (first one outside Match blocks), or the version's default."""
        for d in self.directives:
            if d.keyword == keyword and not d.match:
                return d.value, d
        return default(keyword, self.version), None

    def match_overrides(self, keyword: str) -> list[Directive]:
        seen, out = set(), []
        for d in self.directives:
            if d.keyword == keyword and d.match and d.match not in seen:
                seen.add(d.match)
                out.append(d)
        return out

    def default_evidence(self, keyword: str) -> str:
        name = CANONICAL.get(keyword, keyword)
        where = f"not set in {self.main}" if self.main else "no sshd_config"
        which = f"OpenSSH {self.version_text}" if self.version_text else "current OpenSSH (version unknown)"
        return f"{name} {where}: the default of {which} is {default(keyword, self.version)}"


def openssh_version(env: Env) -> tuple[tuple[int, int] | None, str]:
    raw = env.package_version("openssh-server", "openssh")
    if not raw:
        return None, ""
    m = re.match(r"(?:\d+:)?(\d+)\.(\d+)(p\d+)?", raw)
    if not m:
        return None, ""
    return (int(m.group(1)), int(m.group(2))), f"{m.group(1)}.{m.group(2)}{m.group(3) or ''}"


def parse(env: Env, path: str = SSHD_CONFIG) -> SshdConfig | None:
    """The server's configuration, or None when the image has no OpenSSH server at all."""
    conf = env.read(path)
    version, version_text = openssh_version(env)
    if conf is None:
        if not version and not any(env.fs.exists(b) for b in SSHD_BINARIES):
            return None
        return SshdConfig([], version, version_text, "")
    out: list[Directive] = []
    _splice(env, conf, "", out, 0, frozenset(), Expansion.of(env, "sshd_config"))
    return SshdConfig(out, version, version_text, conf.path)


def _splice(env: Env, conf, outer_match: str, out: list, depth: int, active: frozenset, seen: Expansion) -> None:
    if conf.path in active:
        seen.loop(conf.path)
        return
    if depth > MAX_INCLUDE_DEPTH:
        env.warn(f"sshd_config: Include depth beyond {MAX_INCLUDE_DEPTH} at {conf.path}; not read")
        return
    # sshd keeps the first value of a keyword, so a file read again in the same Match context adds nothing
    if not seen.enter(conf, outer_match):
        return
    active = active | {conf.path}
    match = outer_match
    for n, line in conf.lines():
        parts = line.split(None, 1)
        keyword = parts[0].lower().rstrip("=")
        value = parts[1].strip() if len(parts) > 1 else ""
        if "=" in parts[0] and not value:
            keyword, _, value = parts[0].partition("=")
            keyword = keyword.lower()
        value = value.lstrip("=").strip().strip('"')
        if keyword == "match":
            match = "" if value.lower() == "all" else value
            continue
        if keyword == "include":
            for pattern in value.split():
                if not pattern.startswith("/"):
                    pattern = posixpath.join("/etc/ssh", pattern)
                targets = env.glob(pattern) if any(c in pattern for c in "*?[") else [env.read(pattern)]
                if targets == [None] and env.fs.read_target(pattern):
                    # a file outside the places the reader asks for: its settings are unknown, say so
                    env.warn(f"sshd_config: {conf.path}:{n} includes {pattern}, which was not read")
                for inc in targets:
                    if inc is not None:
                        _splice(env, inc, match, out, depth + 1, active, seen)
            continue
        out.append(Directive(keyword, value, conf.path, n, conf.layer, match))


def sshd_config(env: Env) -> SshdConfig | None:
    if "sshd_config" not in env.memo:
        env.memo["sshd_config"] = parse(env)
    found: SshdConfig | None = env.memo["sshd_config"]
    return found


def _seconds(text: str) -> str:
    """sshd time format ('1m30s', '120', '2h') as seconds, for numeric comparison."""
    total, pos = 0, 0
    for m in re.finditer(r"(\d+)\s*([smhdwSMHDW]?)", text.strip()):
        total += int(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[m.group(2).lower()]
        pos = m.end()
    return str(total) if pos else text


def _no_server(check: Check) -> Result:
    return Result(check.id, "not_applicable", "no OpenSSH server in the image", target=SSHD_CONFIG)


@rule_type("sshd")
def sshd_rule(env: Env, check: Check, rule: dict) -> Iterable[Result]:
    config = sshd_config(env)
    if config is None:
        yield _no_server(check)
        return
    keyword, op, want = rule["keyword"].lower(), rule["op"], rule["value"]
    norm = _seconds if keyword in TIME_KEYWORDS else (lambda s: s.split()[0] if s.split() else s)
    value, directive = config.effective(keyword)
    evidence = directive.evidence() if directive else config.default_evidence(keyword)
    path, line, layer = (directive.path, directive.line, directive.layer) if directive else (config.main, None, None)
    if layer is None and config.main:
        layer = env.layer_of(config.main)
    if not compare(norm(value), op, want):
        yield Result(check.id, "fail", f"{evidence} (want {describe(op, want)})", path=path or SSHD_CONFIG,
                     line=line, layer_index=layer, target=path or SSHD_CONFIG)
        return
    for d in config.match_overrides(keyword):
        if not compare(norm(d.value), op, want):
            yield Result(check.id, "fail", f"{d.evidence()} (want {describe(op, want)})", path=d.path,
                         line=d.line, layer_index=d.layer, target=d.path)
            return
    yield Result(check.id, "pass", evidence, path=path or SSHD_CONFIG, line=line, layer_index=layer,
                 target=path or SSHD_CONFIG)


def algorithms(value: str, default_list: str) -> list[str]:
    """An algorithm list as sshd builds it: '+' appends to the default, '-' removes, '^' puts first."""
    defaults = [a for a in default_list.split(",") if a]
    if value.startswith("+"):
        return defaults + [a for a in value[1:].split(",") if a]
    if value.startswith("^"):
        return [a for a in value[1:].split(",") if a] + defaults
    if value.startswith("-"):
        gone = [p for p in value[1:].split(",") if p]
        from fnmatch import fnmatchcase
        return [a for a in defaults if not any(fnmatchcase(a, p) for p in gone)]
    return [a for a in value.split(",") if a]


def _weak_algorithms(env: Env, check: Check, keyword: str, weak: re.Pattern) -> Iterable[Result]:
    config = sshd_config(env)
    if config is None:
        yield _no_server(check)
        return
    candidates = []
    value, directive = config.effective(keyword)
    candidates.append((value, directive))
    candidates += [(d.value, d) for d in config.match_overrides(keyword)]
    for value, d in candidates:
        listed = algorithms(value, default(keyword, config.version)) if d else value.split(",")
        bad = [a for a in listed if weak.search(a)]
        if bad:
            where = d.evidence() if d else config.default_evidence(keyword)
            yield Result(check.id, "fail", f"{where}: weak {', '.join(bad)}", path=d.path if d else config.main,
                         line=d.line if d else None, layer_index=d.layer if d else None,
                         target=d.path if d else (config.main or SSHD_CONFIG))
            return
    d = candidates[0][1]
    yield Result(check.id, "pass", d.evidence() if d else config.default_evidence(keyword),
                 path=d.path if d else config.main, line=d.line if d else None,
                 layer_index=d.layer if d else env.layer_of(config.main or SSHD_CONFIG),
                 target=(d.path if d else config.main) or SSHD_CONFIG)


@evaluator("ssh.weak-ciphers")
def weak_ciphers(env, check):
    return _weak_algorithms(env, check, "ciphers", WEAK_CIPHERS)


@evaluator("ssh.weak-macs")
def weak_macs(env, check):
    return _weak_algorithms(env, check, "macs", WEAK_MACS)


@evaluator("ssh.weak-kex")
def weak_kex(env, check):
    return _weak_algorithms(env, check, "kexalgorithms", WEAK_KEX)


@evaluator("ssh.protocol")
def protocol(env: Env, check: Check) -> Iterable[Result]:
    config = sshd_config(env)
    if config is None:
        yield _no_server(check)
        return
    value, d = config.effective("protocol")
    if config.version and config.version >= (7, 4):
        yield Result(check.id, "pass", f"OpenSSH {config.version_text} speaks only protocol 2"
                     + (f" ({d.evidence()} is ignored)" if d else ""), path=config.main, target=config.main or SSHD_CONFIG)
        return
    ok = "1" not in [p.strip() for p in value.split(",")]
    evidence = d.evidence() if d else config.default_evidence("protocol")
    yield Result(check.id, "pass" if ok else "fail", evidence, path=d.path if d else config.main,
                 line=d.line if d else None, layer_index=d.layer if d else None, target=config.main or SSHD_CONFIG)


HOST_KEY = re.compile(r"^/etc/ssh/ssh_host_[a-z0-9]+_key$")


@evaluator("ssh.host-private-keys")
def host_private_keys(env: Env, check: Check) -> Iterable[Result]:
    """Host keys baked into an image are shared by every container made from it: one stolen, all spoofable."""
    from .container import file_facts

    keys = file_facts(env).host_keys.items
    if not keys:
        if sshd_config(env) is None:
            yield _no_server(check)
        else:
            yield Result(check.id, "pass", "no ssh_host_*_key file under /etc/ssh", target="/etc/ssh")
        return
    for info, layer in keys:
        yield Result(check.id, "fail", f"{info.path}: host private key ({info.size} bytes) shipped in the image",
                     path=info.path, layer_index=layer, target=info.path)
