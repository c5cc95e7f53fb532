"""Parsers of the lockfiles that projects ship in images: each takes the file's bytes and returns
(ecosystem, name, version, metadata) tuples, or raises LockfileError with one sentence.

What a lockfile pins is what the project resolved, installed or not; the analyzer (lockfiles.py)
marks each package with its source and drops those that installed metadata already reports.
Conventions follow what Trivy and Syft do with the same files:

* development-only dependencies are left out (npm `dev`, pnpm `dev`, poetry `category = "dev"`,
  Pipfile `develop`, composer `packages-dev`): they are not part of what the image runs;
* workspace members, `link:`/`file:`/`git` sources and local paths are the project's own code, not
  registry packages, and are left out; npm aliases (`"x": "npm:real@1.2.3"`) report the real name;
* requirements files count only exact pins (`==`, `===`), the only lines that name one version;
* go.mod `replace` directives are applied (a replacement by a local path drops the module); go.sum is
  read only when no go.mod sits beside it, one version per module (the last, highest listed);
* Gemfile.lock versions lose their platform suffix (`1.13.1-x86_64-linux` -> `1.13.1`).
"""
from __future__ import annotations

import json
import re
from typing import Iterator

import tomllib

Entry = tuple[str, str, str, dict]


class LockfileError(ValueError):
    pass


def _json(data: bytes, what: str):
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise LockfileError(f"not a valid {what} (not JSON: {str(exc)[:80]})") from None


def _yaml(data: bytes, what: str):
    import yaml  # here: most scans, and every rescan of an unchanged image, never parse a YAML lockfile

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    if b"*" in data and re.search(rb"(?m):\s*\*\w", data):
        raise LockfileError(f"not a valid {what} (YAML aliases are refused)")
    try:
        return yaml.load(data, Loader=loader)  # noqa: S506 - a safe loader
    except (yaml.YAMLError, RecursionError) as exc:
        raise LockfileError(f"not a valid {what} (not YAML: {str(exc)[:80]})") from None


# -- npm: package-lock.json / npm-shrinkwrap.json, v1 (nested "dependencies") and v2/v3 ("packages")

def _npm_alias(name: str, version: str) -> tuple[str, str]:
    if version.startswith("npm:"):
        real, _, ver = version[4:].rpartition("@")
        if real:
            return real, ver
    return name, version


def _registry_version(version: str) -> bool:
    return bool(version) and not re.match(r"^(?:file:|link:|git\+|git:|github:|http:|https:|workspace:|[./~])", version)


def package_lock(data: bytes) -> Iterator[Entry]:
    doc = _json(data, "package-lock.json")
    if not isinstance(doc, dict):
        raise LockfileError("not a valid package-lock.json (not an object)")
    packages = doc.get("packages")
    if isinstance(packages, dict):  # lockfileVersion 2 and 3
        for key, e in packages.items():
            if not isinstance(key, str) or "node_modules/" not in key or not isinstance(e, dict):
                continue  # "" is the project, other keys without node_modules/ are workspace sources
            if e.get("link") or e.get("dev") is True:  # devOptional stays: an optional dependency of the app
                continue
            name = e.get("name") if isinstance(e.get("name"), str) else key.rsplit("node_modules/", 1)[1]
            version = e.get("version")
            if not isinstance(version, str) or not name:
                continue
            name, version = _npm_alias(name, version)
            if _registry_version(version):
                yield "npm", name, version, {"lock_key": key}
        return
    yield from _npm_v1(doc.get("dependencies"), "", 0)


def _npm_v1(deps, prefix: str, depth: int) -> Iterator[Entry]:
    if not isinstance(deps, dict) or depth > 64:
        return
    for name, e in deps.items():
        if not isinstance(e, dict) or not isinstance(name, str):
            continue
        key = f"{prefix}node_modules/{name}"
        version = e.get("version")
        if isinstance(version, str) and e.get("dev") is not True:
            real, ver = _npm_alias(name, version)
            if _registry_version(ver):
                yield "npm", real, ver, {"lock_key": key}
        yield from _npm_v1(e.get("dependencies"), key + "/", depth + 1)


# -- yarn.lock: v1 (its own format) and berry (YAML with __metadata)

_YARN_VERSION = re.compile(r'^\s+version:?\s+"?([^"\s]+)"?\s*$')


def _yarn_name(spec: str) -> str:
    spec = spec.strip().strip('"')
    at = spec.find("@", 1)
    name, rest = (spec[:at], spec[at + 1:]) if at > 0 else (spec, "")
    if rest.startswith("npm:") and "@" in rest[5:]:  # alias: 'x@npm:real@^1.0.0'
        inner = rest[4:]
        return inner[: inner.find("@", 1)]
    return name


def yarn_lock(data: bytes) -> Iterator[Entry]:
    text = data.decode("utf-8", "replace")
    if "__metadata:" in text:
        yield from _yarn_berry(data)
        return
    specs: list[str] = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not line[0].isspace():
            specs = [s for s in line.rstrip().rstrip(":").split(", ") if s]
            continue
        m = _YARN_VERSION.match(line)
        if m and specs and line.startswith("  ") and not line.startswith("   "):
            names = {_yarn_name(s) for s in specs}
            local = all(re.search(r"@(?:file:|link:|workspace:|portal:)", s) for s in specs)
            for name in sorted(names):
                if name and not local:
                    yield "npm", name, m.group(1), {}
            specs = []


def _yarn_berry(data: bytes) -> Iterator[Entry]:
    doc = _yaml(data, "yarn.lock")
    if not isinstance(doc, dict):
        raise LockfileError("not a valid yarn.lock (not a mapping)")
    for key, e in doc.items():
        if key == "__metadata" or not isinstance(e, dict):
            continue
        resolution = e.get("resolution")
        version = e.get("version")
        if not isinstance(resolution, str) or not isinstance(version, (str, int, float)):
            continue
        at = resolution.find("@", 1)
        name, protocol = resolution[:at], resolution[at + 1:]
        if protocol.startswith("npm:"):
            yield "npm", name, str(version), {}


# -- pnpm-lock.yaml: v5 ('/name/1.2.3_peer'), v6 ('/name@1.2.3(peer)'), v9 ('name@1.2.3')

def pnpm_lock(data: bytes) -> Iterator[Entry]:
    doc = _yaml(data, "pnpm-lock.yaml")
    if not isinstance(doc, dict):
        raise LockfileError("not a valid pnpm-lock.yaml (not a mapping)")
    version = str(doc.get("lockfileVersion") or "")
    packages = doc.get("packages") or {}
    if not isinstance(packages, dict):
        return
    v5 = version.startswith("5")
    for key, e in packages.items():
        if not isinstance(key, str) or (isinstance(e, dict) and e.get("dev") is True):
            continue
        k = key.lstrip("/")
        k = re.sub(r"\(.*\)$", "", k)
        if v5:
            name, _, ver = k.rpartition("/")
            ver = ver.split("_", 1)[0]
        else:
            at = k.find("@", 1)
            name, ver = (k[:at], k[at + 1:]) if at > 0 else ("", "")
        if isinstance(e, dict) and isinstance(e.get("name"), str) and isinstance(e.get("version"), str):
            name, ver = e["name"], e["version"]
        if name and _registry_version(ver) and re.match(r"^\d", ver):
            yield "npm", name, ver, {}


# -- Python: poetry.lock, Pipfile.lock, requirements*.txt

def poetry_lock(data: bytes) -> Iterator[Entry]:
    try:
        doc = tomllib.loads(data.decode("utf-8", "replace"))
    except tomllib.TOMLDecodeError as exc:
        raise LockfileError(f"not a valid poetry.lock (not TOML: {str(exc)[:80]})") from None
    for p in doc.get("package") or ():
        if not isinstance(p, dict) or p.get("category") == "dev":
            continue
        source = p.get("source")
        if isinstance(source, dict) and source.get("type") in ("directory", "file", "git", "url"):
            continue
        name, version = p.get("name"), p.get("version")
        if isinstance(name, str) and isinstance(version, str) and name and version:
            yield "pypi", _pep503(name), version, {}


def pipfile_lock(data: bytes) -> Iterator[Entry]:
    doc = _json(data, "Pipfile.lock")
    default = doc.get("default") if isinstance(doc, dict) else None
    for name, e in (default or {}).items() if isinstance(default, dict) else ():
        version = e.get("version") if isinstance(e, dict) else None
        if isinstance(version, str) and version.startswith("=="):
            yield "pypi", _pep503(name), version.lstrip("="), {}


_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*===?\s*([A-Za-z0-9][A-Za-z0-9.+!_-]*)\s*(?:;.*)?$")


def requirements(data: bytes) -> Iterator[Entry]:
    text = data.decode("utf-8", "replace").replace("\\\n", " ")
    for line in text.splitlines():
        line = line.split(" #", 1)[0].strip()
        line = re.sub(r"\s--hash[= ]\S+", "", line).strip()
        if not line or line.startswith(("#", "-")):
            continue
        m = _PIN.match(line)
        if m and "*" not in m.group(2):
            yield "pypi", _pep503(m.group(1)), m.group(2), {}


def _pep503(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# -- Go: go.mod (with replace), go.sum

_REQ = re.compile(r"^\s*(\S+)\s+(v\S+)")
_REPLACE = re.compile(r"^\s*(\S+)(?:\s+(v\S+))?\s*=>\s*(\S+)(?:\s+(v\S+))?")


def go_mod(data: bytes) -> Iterator[Entry]:
    requires: dict[str, str] = {}
    replaces: list[tuple[str, str | None, str, str | None]] = []
    block = ""
    for raw in data.decode("utf-8", "replace").splitlines():
        line = raw.split("//", 1)[0].rstrip()
        indirect = "// indirect" in raw
        if not line.strip():
            continue
        if block:
            if line.strip() == ")":
                block = ""
                continue
            body = line
        else:
            word, _, body = line.strip().partition(" ")
            if body.strip() == "(":
                block = word
                continue
            if word not in ("require", "replace"):
                continue
            block_word = word
            _consume(block_word, body, requires, replaces, indirect)
            continue
        _consume(block, body, requires, replaces, indirect)
    for old, old_v, new, new_v in replaces:
        for mod in [m for m in requires if m == old and (old_v is None or requires[m] == old_v)]:
            del requires[mod]
            if new_v and not new.startswith((".", "/")):
                requires[new] = new_v
    for mod, version in sorted(requires.items()):
        yield "go", mod, version, {}


def _consume(block: str, body: str, requires: dict, replaces: list, indirect: bool) -> None:
    if block == "require":
        m = _REQ.match(body)
        if m:
            requires[m.group(1)] = m.group(2)
    elif block == "replace":
        m = _REPLACE.match(body)
        if m:
            replaces.append((m.group(1), m.group(2), m.group(3), m.group(4)))


def go_sum(data: bytes) -> Iterator[Entry]:
    latest: dict[str, str] = {}
    for line in data.decode("utf-8", "replace").splitlines():
        parts = line.split()
        if len(parts) == 3 and not parts[1].endswith("/go.mod"):
            latest[parts[0]] = parts[1]
    for mod, version in sorted(latest.items()):
        yield "go", mod, version, {}


# -- Ruby: Gemfile.lock; PHP: composer.lock

_GEM_SPEC = re.compile(r"^    ([A-Za-z0-9_.-]+) \(([^)\s]+)\)\s*$")


def gemfile_lock(data: bytes) -> Iterator[Entry]:
    section = ""
    for line in data.decode("utf-8", "replace").splitlines():
        if line and not line[0].isspace():
            section = line.strip()
            continue
        if section not in ("GEM", "GIT"):
            continue  # PATH: the project's own gems
        m = _GEM_SPEC.match(line)
        if m:
            version = re.sub(r"-(?:x86|x64|arm|aarch64|universal|java|mingw|mswin|darwin|linux|.*-linux).*$", "",
                             m.group(2))
            yield "gem", m.group(1), version, {}


def composer_lock(data: bytes) -> Iterator[Entry]:
    doc = _json(data, "composer.lock")
    packages = doc.get("packages") if isinstance(doc, dict) else None
    for e in packages if isinstance(packages, list) else ():
        if not isinstance(e, dict):
            continue
        name, version = e.get("name"), e.get("version")
        if isinstance(name, str) and isinstance(version, str) and name and version:
            if len(version) > 1 and version[0] in "vV" and version[1].isdigit():
                version = version[1:]
            if not version.startswith("dev-"):
                yield "composer", name, version, {}


PARSERS = {
    "package-lock.json": package_lock, "npm-shrinkwrap.json": package_lock, "yarn.lock": yarn_lock,
    "pnpm-lock.yaml": pnpm_lock, "poetry.lock": poetry_lock, "Pipfile.lock": pipfile_lock, "go.mod": go_mod,
    "go.sum": go_sum, "Gemfile.lock": gemfile_lock, "gems.locked": gemfile_lock, "composer.lock": composer_lock,
}
_REQUIREMENTS = re.compile(r"(?:^|/)(?:requirements[\w.-]*\.txt|requirements/[\w.-]+\.txt)$")


def parser_for(path: str):
    base = path.rsplit("/", 1)[-1]
    if base in PARSERS:
        return PARSERS[base]
    if _REQUIREMENTS.search(path):
        return requirements
    return None
