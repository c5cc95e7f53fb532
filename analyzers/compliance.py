"""Software compliance: forbidden software by package, executable name or path, and file hash.

The policy is the `[compliance]` section of the policy file (docs/policy.md):

    [compliance]
    use_defaults = true          # the project's list of offensive and dual-use tools (DEFAULT_RULES)
    allow = ["tcpdump"]          # rule ids, package or executable names exempted from any rule
    [[compliance.forbid]]
    id = "old-openssl"
    package = "openssl"          # or packages = [...]; fnmatch globs, case-insensitive
    ecosystem = "deb"            # or ecosystems = [...]; default: any
    versions = "<1.1.1n"         # ">=1.0, <2.0 || ==3.0.0", or a univers 'vers:deb/...' range
    reason = "end of life"

A rule matches installed packages (`ctx.packages`, from the inventory analyzers), visible
executables (any file in a bin/sbin directory, or with an execute bit) by base name or path glob,
and files by SHA-256. This is an image-level evaluator: it reads no layer, unless the policy holds
hash rules, which need file contents; then it hashes, per layer, only the files a hash rule could
concern (so the cache fingerprint is that selection, not the hash list: editing the list re-reads
nothing).
"""
from __future__ import annotations

import fnmatch
import hashlib
import json
import operator
import posixpath
import re
from dataclasses import dataclass

from stowaway.ingest.failures import plain as plain_reason
from stowaway.ingest.model import HARDLINK, REG, SEVERITIES, SYMLINK, Finding

from . import ecosystems as ecosystem_registry
from .base import Analyzer, register

MAX_HASH_SIZE = 64 << 20
MAX_RULES = 10000
MAX_WARNINGS = 20

# Written for this project: software that has no place in a production image, because it scans,
# sniffs, relays, cracks or exploits. Names are binary package names across deb/rpm/apk, plus the
# language ecosystems where the tool itself ships (`also`): 'hydra' or 'john' on npm are unrelated
# libraries. Executables are what the tools install.
DEFAULT_RULES: tuple[dict, ...] = (
    {"id": "default/nmap", "packages": ["nmap"], "executables": ["nmap"], "severity": "high",
     "reason": "network and port scanner (reconnaissance)"},
    {"id": "default/masscan", "packages": ["masscan"], "executables": ["masscan"], "severity": "high",
     "reason": "mass port scanner (reconnaissance)"},
    {"id": "default/zmap", "packages": ["zmap"], "executables": ["zmap", "ztee"], "severity": "high",
     "reason": "internet-wide network scanner (reconnaissance)"},
    {"id": "default/unicornscan", "packages": ["unicornscan"], "executables": ["unicornscan"], "severity": "high",
     "reason": "port scanner (reconnaissance)"},
    {"id": "default/hping", "packages": ["hping3"], "executables": ["hping3"], "severity": "high",
     "reason": "packet crafting and scanning tool"},
    {"id": "default/arp-scan", "packages": ["arp-scan"], "executables": ["arp-scan"], "severity": "medium",
     "reason": "local network scanner"},
    {"id": "default/netcat", "packages": ["netcat", "netcat-openbsd", "netcat-traditional", "netcat-openbsd-*",
                                          "ncat", "nmap-ncat", "nc"],
     "executables": ["nc", "ncat", "netcat", "nc.openbsd", "nc.traditional"], "severity": "high",
     "reason": "netcat: raw TCP/UDP relay, a common reverse-shell and exfiltration tool"},
    {"id": "default/socat", "packages": ["socat"], "executables": ["socat"], "severity": "high",
     "reason": "socket relay, a common reverse-shell and tunnelling tool"},
    {"id": "default/hydra", "packages": ["hydra", "hydra-gtk", "thc-hydra"], "executables": ["hydra", "xhydra"],
     "severity": "high", "reason": "online password brute-forcer"},
    {"id": "default/medusa", "packages": ["medusa"], "executables": ["medusa"], "severity": "high",
     "reason": "online password brute-forcer"},
    {"id": "default/ncrack", "packages": ["ncrack"], "executables": ["ncrack"], "severity": "high",
     "reason": "network authentication cracker"},
    {"id": "default/john", "packages": ["john", "john-data", "john-jumbo"], "executables": ["john", "unshadow"],
     "severity": "high", "reason": "John the Ripper password cracker"},
    {"id": "default/hashcat", "packages": ["hashcat"], "executables": ["hashcat", "hashcat.bin"], "severity": "high",
     "reason": "password hash cracker"},
    {"id": "default/sqlmap", "packages": ["sqlmap"], "also": ["pypi"], "executables": ["sqlmap"], "severity": "high",
     "reason": "automated SQL injection tool"},
    {"id": "default/nikto", "packages": ["nikto"], "executables": ["nikto", "nikto.pl"], "severity": "high",
     "reason": "web server vulnerability scanner"},
    {"id": "default/metasploit", "packages": ["metasploit-framework", "metasploit*"], "also": ["gem"],
     "executables": ["msfconsole", "msfvenom", "msfdb", "msfrpcd"], "severity": "critical",
     "reason": "Metasploit exploitation framework"},
    {"id": "default/exploitdb", "packages": ["exploitdb"], "executables": ["searchsploit"], "severity": "high",
     "reason": "exploit archive"},
    {"id": "default/impacket", "packages": ["impacket", "python3-impacket", "impacket-scripts"], "also": ["pypi"],
     "executables": ["impacket-*", "secretsdump.py", "psexec.py", "wmiexec.py"], "severity": "high",
     "reason": "Windows protocol attack toolkit"},
    {"id": "default/tcpdump", "packages": ["tcpdump"], "executables": ["tcpdump"], "severity": "medium",
     "reason": "packet sniffer"},
    {"id": "default/wireshark", "packages": ["wireshark", "wireshark-qt", "wireshark-gtk", "wireshark-cli",
                                             "tshark", "termshark"],
     "executables": ["wireshark", "tshark", "dumpcap", "termshark"], "severity": "medium",
     "reason": "packet capture and protocol analyser"},
    {"id": "default/ettercap", "packages": ["ettercap*"], "executables": ["ettercap"], "severity": "high",
     "reason": "man-in-the-middle attack suite"},
    {"id": "default/dsniff", "packages": ["dsniff"], "executables": ["dsniff", "arpspoof", "urlsnarf"],
     "severity": "high", "reason": "password sniffer and spoofing tools"},
    {"id": "default/aircrack-ng", "packages": ["aircrack-ng"], "executables": ["aircrack-ng", "airodump-ng"],
     "severity": "high", "reason": "wireless network cracker"},
)

BIN_DIRS = ("bin", "sbin")
# Executables here are what OS packages install: when a package already answered a rule, a match on
# one of its files says nothing new.
SYSTEM_DIRS = ("/bin/", "/sbin/", "/usr/bin/", "/usr/sbin/", "/usr/libexec/", "/usr/lib/", "/usr/share/")
ECOSYSTEM_ALIASES = {"debian": "deb", "dpkg": "deb", "alpine": "apk", "golang": "go", "python": "pypi",
                     "pip": "pypi", "rubygems": "gem", "java": "maven", "jar": "maven"}
_SHA256 = re.compile(r"^(?:sha256:)?([0-9a-fA-F]{64})$")
_CONSTRAINT = re.compile(r"^\s*(>=|<=|==|!=|=|>|<)?\s*(\S+)\s*$")


def _parse_version(ecosystem: str, text: str):
    """The package's version in its ecosystem's order: the same schemes the vulnerability matcher uses."""
    from .vulnerabilities import versions

    entry = ecosystem_registry.get(ecosystem)
    scheme = entry.scheme if entry else None
    # dpkg ordering is a sound natural order (1.9 < 1.10, letters, tildes) for ecosystems without a scheme
    return versions.parse(scheme or "dpkg", text)


class PolicyError(ValueError):
    pass


class VersionSpec:
    """'>=1.0, <2.0 || ==3.0' (comma: all of, '||': any of; a bare version means ==), or a 'vers:' range.

    Compared with the package's own ecosystem's rules, so one rule can serve deb and rpm alike.
    """

    def __init__(self, text: str):
        self.text = text.strip()
        self.vers = None
        self.alternatives: list[list[tuple[str, str]]] = []
        if self.text.startswith("vers:"):
            from univers.version_range import VersionRange

            try:
                self.vers = VersionRange.from_string(self.text)
            except Exception as exc:
                raise PolicyError(f"bad version range {text!r}: {exc}") from None
            return
        for alt in self.text.split("||"):
            group = []
            for part in alt.split(","):
                if not part.strip():
                    continue
                m = _CONSTRAINT.match(part)
                if not m or m.group(2)[0] in "<>=!":
                    raise PolicyError(f"bad version constraint {part.strip()!r} in {text!r}")
                group.append(({"=": "=="}.get(m.group(1) or "==", m.group(1) or "=="), m.group(2)))
            if group:
                self.alternatives.append(group)
        if not self.alternatives:
            raise PolicyError(f"empty version range {text!r}")

    def check(self, ecosystems) -> None:
        """A bound that its ecosystem cannot read would make the rule silently match nothing."""
        for ecosystem in ecosystems:
            for group in self.alternatives:
                for _, want in group:
                    try:
                        _parse_version(ecosystem, want)
                    except ValueError:
                        raise PolicyError(f"{want!r} is not a {ecosystem} version") from None

    def contains(self, ecosystem: str, version: str) -> bool:
        """Raises ValueError when `version` cannot be read in the ecosystem's scheme, or is only known
        as a range (a library found by its classes: '>=1.2.5'), which is never compared as a version."""
        if version[:2] == ">=":
            raise ValueError(f"version known only as a range ({version})")
        if self.vers is not None:
            cls = self.vers.version_class
            return cls(version) in self.vers
        have = _parse_version(ecosystem, version)
        for group in self.alternatives:
            if all(_compare(have, op, _parse_version(ecosystem, want)) for op, want in group):
                return True
        return False


_OPS = {"==": operator.eq, "!=": operator.ne, ">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt}


def _compare(a, op, b) -> bool:
    return _OPS[op](a, b)


@dataclass(frozen=True)
class Rule:
    id: str
    reason: str = ""
    severity: str = "high"
    packages: tuple[str, ...] = ()
    ecosystems: tuple[str, ...] = ()
    versions: VersionSpec | None = None
    executables: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    sha256: frozenset = frozenset()

    def matches_package(self, ecosystem: str, name: str) -> bool:
        if self.ecosystems and ecosystem not in self.ecosystems:
            return False
        name = _normal_name(ecosystem, name)
        return any(fnmatch.fnmatchcase(name, _normal_name(ecosystem, pattern)) for pattern in self.packages)

    def matches_executable(self, path: str) -> bool:
        base = posixpath.basename(path).lower()
        return any(fnmatch.fnmatchcase(base, p) for p in self.executables)

    def matches_path(self, path: str) -> bool:
        return any(fnmatch.fnmatchcase(path, p) for p in self.paths)

    def matches_file(self, path: str) -> bool:
        return self.matches_executable(path) or self.matches_path(path)


def _normal_name(ecosystem: str, name: str) -> str:
    name = name.lower()
    if ecosystem == "pypi":
        name = re.sub(r"[-_.]+", "-", name)  # PEP 503
    return name


def _strings(entry: dict, *keys: str) -> tuple[str, ...]:
    out: list[str] = []
    for key in keys:
        value = entry.get(key)
        if value is None:
            continue
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise PolicyError(f"{key} must be a string or a list of strings")
        out.extend(value)
    return tuple(out)


def make_rule(entry, number: int) -> Rule:
    """One `[[compliance.forbid]]` entry; a bare string forbids a package or executable of that name."""
    if isinstance(entry, str):
        entry = {"name": entry}
    if not isinstance(entry, dict):
        raise PolicyError(f"rule {number}: expected a table or a string, got {type(entry).__name__}")
    known = {"id", "name", "names", "package", "packages", "ecosystem", "ecosystems", "versions", "version",
             "executable", "executables", "path", "paths", "sha256", "reason", "severity"}
    unknown = set(entry) - known
    ident = entry.get("id") or ""
    label = f"rule {ident or number}"
    if unknown:
        raise PolicyError(f"{label}: unknown key(s) {', '.join(sorted(unknown))}")
    try:
        names = _strings(entry, "name", "names")
        packages = tuple(p.lower() for p in _strings(entry, "package", "packages") + names)
        executables = tuple(e.lower() for e in _strings(entry, "executable", "executables") + names)
        paths = _strings(entry, "path", "paths")
        ecosystems = tuple(ECOSYSTEM_ALIASES.get(e.lower(), e.lower())
                           for e in _strings(entry, "ecosystem", "ecosystems"))
        hashes = []
        for h in _strings(entry, "sha256"):
            m = _SHA256.match(h.strip())
            if not m:
                raise PolicyError(f"sha256 {h!r} is not 64 hex digits")
            hashes.append(m.group(1).lower())
    except PolicyError as exc:
        raise PolicyError(f"{label}: {exc}") from None
    bad_paths = [p for p in paths if not p.startswith("/") and not p.startswith("*")]
    if bad_paths:
        raise PolicyError(f"{label}: path {bad_paths[0]!r} must be absolute (or start with '*')")
    if not (packages or executables or paths or hashes):
        raise PolicyError(f"{label}: names nothing to forbid (package, executable, path or sha256)")
    raw_versions = entry.get("versions", entry.get("version"))
    versions = None
    if raw_versions not in (None, "", "*"):
        if not isinstance(raw_versions, str):
            raise PolicyError(f"{label}: versions must be a string such as '>=1.0, <2.0'")
        if not packages:
            raise PolicyError(f"{label}: versions need a package name to apply to")
        try:
            versions = VersionSpec(raw_versions)
            versions.check(ecosystems)
        except PolicyError as exc:
            raise PolicyError(f"{label}: {exc}") from None
    severity = entry.get("severity", "high")
    if severity not in SEVERITIES:
        raise PolicyError(f"{label}: severity must be one of {', '.join(SEVERITIES)}")
    reason = entry.get("reason", "")
    if not isinstance(reason, str):
        raise PolicyError(f"{label}: reason must be a string")
    if not ident:
        ident = "policy/" + (packages or executables or tuple(paths) or (hashes[0][:12],))[0]
    elif not isinstance(ident, str):
        raise PolicyError(f"rule {number}: id must be a string")
    return Rule(id=ident, reason=reason or "forbidden by policy", severity=severity, packages=packages,
                ecosystems=ecosystems, versions=versions, executables=executables, paths=paths,
                sha256=frozenset(hashes))


def load_rules(policy: dict) -> tuple[list[Rule], set[str], list[str]]:
    """(rules, allowed names and rule ids, problems). A bad rule is skipped and named; the rest apply."""
    conf = policy.get("compliance") or {}
    problems: list[str] = []
    if not isinstance(conf, dict):
        defaults = [Rule(**_default_kwargs(r)) for r in DEFAULT_RULES]
        return defaults, set(), ["compliance: must be a table; defaults used"]
    rules: list[Rule] = []
    if conf.get("use_defaults", True) is not False:
        rules += [Rule(**_default_kwargs(r)) for r in DEFAULT_RULES]
    forbid = conf.get("forbid") or []
    if isinstance(forbid, (str, dict)):
        forbid = [forbid]
    if not isinstance(forbid, list):
        problems.append("compliance.forbid: must be a list of rules")
        forbid = []
    if len(forbid) > MAX_RULES:
        problems.append(f"compliance.forbid: {len(forbid)} rules, only the first {MAX_RULES} used")
        forbid = forbid[:MAX_RULES]
    for number, entry in enumerate(forbid, start=1):
        try:
            rules.append(make_rule(entry, number))
        except PolicyError as exc:
            problems.append(f"compliance.forbid: {exc}; skipped")
    allow = conf.get("allow") or []
    if isinstance(allow, str):
        allow = [allow]
    if not isinstance(allow, list) or not all(isinstance(a, str) for a in allow):
        problems.append("compliance.allow: must be a list of names or rule ids; ignored")
        allow = []
    return rules, {a.lower() for a in allow}, problems


def _default_kwargs(r: dict) -> dict:
    return {"id": r["id"], "reason": r["reason"], "severity": r["severity"], "packages": tuple(r["packages"]),
            "ecosystems": ecosystem_registry.OS_PACKAGE_TYPES + tuple(r.get("also", ())),
            "executables": tuple(r.get("executables", ()))}


def _is_executable_candidate(path: str, info) -> bool:
    parent = posixpath.basename(posixpath.dirname(path))
    if parent in BIN_DIRS:
        return True
    return info.type in (REG, HARDLINK) and bool(info.mode & 0o111)


@register
class SoftwareCompliance(Analyzer):
    name = "compliance"
    version = 1
    risk = "compliance"
    stage = "evaluate"
    consumes = ("packages", "owned_files")
    produces = ("findings",)
    reads_layers = False  # becomes True per instance when the policy has hash rules (see __init__)

    def __init__(self, policy=None):
        super().__init__(policy)
        self.rules, self.allow, self.problems = load_rules(self.policy)
        self.hash_rules = [r for r in self.rules if r.sha256]
        conf = self.policy.get("compliance") if isinstance(self.policy.get("compliance"), dict) else {}
        size = conf.get("max_hash_size", MAX_HASH_SIZE)
        self.max_hash_size = size if isinstance(size, int) and size > 0 else MAX_HASH_SIZE
        # hash rules restricted to names/paths hash only those; one unrestricted rule hashes every executable
        self.hash_any_executable = any(not (r.executables or r.paths) for r in self.hash_rules)
        self.hash_scoped = [r for r in self.hash_rules if r.executables or r.paths]
        self.reads_layers = bool(self.hash_rules)

    def fingerprint(self):
        if not self.hash_rules:
            return ""
        selection = {"any": self.hash_any_executable, "max": self.max_hash_size,
                     "scoped": sorted({x for r in self.hash_scoped for x in r.executables + r.paths})}
        return hashlib.sha256(json.dumps(selection, sort_keys=True).encode()).hexdigest()[:16]

    def required(self, path, info):
        if not info.is_file or info.size > self.max_hash_size:
            return False
        if self.hash_any_executable and _is_executable_candidate(path, info):
            return True
        return any(r.matches_file(path) for r in self.hash_scoped)

    def analyze(self, file):
        return [{"path": file.path, "sha256": hashlib.sha256(file.data).hexdigest(), "size": len(file.data)}]

    # --- evaluation -------------------------------------------------------------------------------
    def collect(self, ctx, layers):
        for p in self.problems:
            ctx.warn(f"{self.name}: {p}")
        warned = [0]

        def warn(message):
            if warned[0] < MAX_WARNINGS:
                ctx.warn(f"{self.name}: {message}")
            warned[0] += 1

        answered: set[str] = set()  # rules that matched a package
        candidates = self._package_index()
        for pkg in ctx.packages:
            for rule in candidates(pkg.ecosystem, pkg.name):
                if not rule.matches_package(pkg.ecosystem, pkg.name) or self._allowed(rule, pkg.name):
                    continue
                if rule.versions is not None:
                    try:
                        if not rule.versions.contains(pkg.ecosystem, pkg.version):
                            continue
                    except Exception as exc:  # a version the scheme cannot read: say so, do not guess
                        warn(f"rule {rule.id}: cannot compare {pkg.ecosystem} {pkg.name} {pkg.version!r}"
                             f" with {rule.versions.text!r} ({plain_reason(exc)})")
                        continue
                answered.add(rule.id)
                yield Finding(
                    kind="compliance", title=f"Forbidden software: {pkg.name} {pkg.version} ({pkg.ecosystem})",
                    severity=rule.severity, path=pkg.path, layer_index=pkg.layer_index, rule=rule.id,
                    package=pkg.key,
                    detail={"name": pkg.name, "version": pkg.version, "rule": rule.id, "reason": rule.reason,
                            "ecosystem": pkg.ecosystem, "matched_by": "package"})
        yield from self._executables(ctx, answered)
        if self.hash_rules:
            yield from self._hashes(ctx, layers)
        if warned[0] > MAX_WARNINGS:
            ctx.warn(f"{self.name}: {warned[0] - MAX_WARNINGS} more version warnings not shown")

    def _package_index(self):
        """A function (ecosystem, name) -> rules that may name it: exact names by dict, globs by regex.

        An image holds thousands of packages; testing each against every rule's patterns was most of
        this evaluator's time.
        """
        exact: dict[tuple[bool, str], list[Rule]] = {}
        globbed: list[tuple[re.Pattern, re.Pattern, Rule]] = []
        for rule in self.rules:
            if rule.sha256 or not rule.packages:
                continue  # in a hash rule, a package name only narrows the hash
            for pattern in rule.packages:
                if any(c in pattern for c in "*?["):
                    globbed.append((re.compile(fnmatch.translate(pattern)),
                                    re.compile(fnmatch.translate(_normal_name("pypi", pattern))), rule))
                else:
                    for pypi in (False, True):
                        bucket = exact.setdefault((pypi, _normal_name("pypi" if pypi else "", pattern)), [])
                        if rule not in bucket:
                            bucket.append(rule)

        def candidates(ecosystem: str, name: str) -> list[Rule]:
            pypi = ecosystem == "pypi"
            norm = _normal_name(ecosystem, name)
            found = list(exact.get((pypi, norm), ()))
            for plain, normalized, rule in globbed:
                if (normalized if pypi else plain).match(norm) and rule not in found:
                    found.append(rule)
            return found

        return candidates

    def _allowed(self, rule: Rule, name: str) -> bool:
        return rule.id.lower() in self.allow or name.lower() in self.allow

    def _name_index(self):
        """Exact executable names in a dict, globs compiled once: the walk visits every file of the image."""
        exact: dict[str, list[Rule]] = {}
        globbed: list[tuple[re.Pattern, Rule]] = []
        paths: list[tuple[re.Pattern, Rule]] = []
        # in a hash rule, names and paths only narrow what is hashed: they forbid nothing alone
        for rule in self.rules:
            if rule.sha256:
                continue
            for pattern in rule.executables:
                if any(c in pattern for c in "*?["):
                    globbed.append((re.compile(fnmatch.translate(pattern)), rule))
                else:
                    exact.setdefault(pattern, []).append(rule)
            paths += [(re.compile(fnmatch.translate(p)), rule) for p in rule.paths]
        return exact, globbed, paths

    def _executables(self, ctx, answered: set[str]):
        """Executables by base name (in a bin/sbin directory or with an execute bit), any file by path glob."""
        exact, globbed, path_rules = self._name_index()
        if not (exact or globbed or path_rules):
            return
        owned = ctx.owned_files
        seen: set[tuple[str, str]] = set()  # (rule, real file): one finding per file, not per link to it
        for info, layer in ctx.fs.walk():
            if info.type not in (REG, HARDLINK, SYMLINK):
                continue
            path = info.path
            hits: dict[str, tuple[Rule, bool]] = {}
            for rx, rule in path_rules:
                if rx.match(path):
                    hits.setdefault(rule.id, (rule, True))
            if _is_executable_candidate(path, info):
                base = posixpath.basename(path).lower()
                for rule in exact.get(base, ()):
                    hits.setdefault(rule.id, (rule, False))
                for rx, rule in globbed:
                    if rx.match(base):
                        hits.setdefault(rule.id, (rule, False))
            for rule, by_path in hits.values():
                name = posixpath.basename(path)
                if self._allowed(rule, name):
                    continue
                real = path
                if info.type == SYMLINK:
                    real = ctx.fs.resolve(path) or path
                elif info.type == HARDLINK:
                    real = info.linkname or path
                if rule.id in answered and not by_path and _packaged(path, real, owned):
                    continue
                if (rule.id, real) in seen:
                    continue
                seen.add((rule.id, real))
                detail = {"name": name, "version": None, "rule": rule.id, "reason": rule.reason,
                          "matched_by": "path" if by_path else "executable"}
                title = f"Forbidden executable: {path}"
                if real != path:
                    detail["target"] = real
                    if _is_busybox(ctx.fs, real):
                        detail["applet"] = "busybox"
                        title = f"Forbidden executable: {path} (busybox {name} applet)"
                yield Finding(kind="compliance", title=title, severity=rule.severity, path=path, layer_index=layer,
                              rule=rule.id, detail=detail)

    def _hashes(self, ctx, layers):
        by_hash: dict[str, list[Rule]] = {}
        for r in self.hash_rules:
            for h in r.sha256:
                by_hash.setdefault(h, []).append(r)
        for index, records in enumerate(layers):
            for rec in records:
                for rule in by_hash.get(rec["sha256"], ()):
                    name = posixpath.basename(rec["path"])
                    if self._allowed(rule, name):
                        continue
                    if (rule.executables or rule.paths) and not rule.matches_file(rec["path"]):
                        continue
                    visible = ctx.fs.visible(rec["path"], index)
                    yield Finding(kind="compliance", title=f"Forbidden file (sha256): {rec['path']}",
                                  severity=rule.severity, path=rec["path"], layer_index=index, visible=visible,
                                  rule=rule.id,
                                  detail={"name": name, "version": None, "rule": rule.id, "reason": rule.reason,
                                          "matched_by": "sha256", "sha256": rec["sha256"], "size": rec["size"]})


BUSYBOX = ("/bin/busybox", "/usr/bin/busybox", "/sbin/busybox")


def _is_busybox(fs, real: str) -> bool:
    """A link to busybox: by name, or (official busybox images) a hard link to the file /bin/busybox links to."""
    if posixpath.basename(real) == "busybox":
        return True
    for candidate in BUSYBOX:
        info = fs.get(candidate)
        if info is not None and info.type == HARDLINK and info.linkname == real:
            return True
    return False


def _packaged(path: str, real: str, owned) -> bool:
    """Whether a file is what an OS package installed: in its file list, or where packages put files.

    Both, because neither is complete: alternatives links (/bin/nc) are in no file list, and a
    package may own files under /opt.
    """
    for p in (path, real):
        if p.startswith(SYSTEM_DIRS):
            return True
        # merged /usr: the list says /bin/nc.openbsd, the image shows /usr/bin/nc.openbsd
        if owned and (p in owned or (p.startswith("/usr/") and p[4:] in owned) or "/usr" + p in owned):
            return True
    return False
