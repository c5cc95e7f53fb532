"""Suppressions to and from files: `.trivyignore` (plain), the structured ignore file (YAML or TOML,
see analyzers/vulnerabilities/ignores.py) and OpenVEX JSON.

OpenVEX (https://github.com/openvex/spec, v0.2.0; field names from its JSON schema, Apache-2.0): a
`not_affected` statement becomes one suppression per product (and subcomponent) it names; its
`impact_statement`, else `justification`, is the reason. A product given as `pkg:oci/NAME?
repository_url=HOST/PATH&tag=T` (the form Trivy and vexctl use for images) scopes it to that
repository (and tag); a package URL of another type names the package. A statement without products
applies everywhere. Other statuses (affected, fixed, under_investigation) suppress nothing and are
counted. Export writes every vulnerability suppression back as a `not_affected` statement.
"""
from __future__ import annotations

import json
import os
import re
from urllib.parse import parse_qs, unquote

from . import findings
from .findings import Suppression
from .model import ScanError

MAX_FILE = 16 << 20


def _read(path: str) -> str:
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_FILE + 1)
    except OSError as exc:
        raise ScanError(f"{path}: cannot read ({exc.strerror})") from None
    if len(data) > MAX_FILE:
        raise ScanError(f"{path}: larger than {MAX_FILE >> 20} MB; not read")
    return data.decode("utf-8", "replace")


def detect(path: str, text: str) -> str:
    ext = os.path.splitext(path)[1].lower()
    if ext in (".yaml", ".yml", ".toml"):
        return "structured"
    if re.search(r"(?m)^(?:\[\[(?:vulnerabilities|ignore)\]\]|(?:vulnerabilities|ignore)\s*:)", text):
        return "structured"  # .stowawayignore: the structured form without an extension
    stripped = text.lstrip()
    if stripped.startswith("{"):
        try:
            doc = json.loads(stripped)
        except ValueError:
            raise ScanError(f"{path}: invalid JSON") from None
        if isinstance(doc, dict) and "statements" in doc:
            return "openvex"
        raise ScanError(f"{path}: a JSON file that is not an OpenVEX document (no 'statements')")
    return "trivyignore"


def load(path: str, repository: str = "", tag: str = "", author: str | None = None,
         fmt: str = "auto") -> tuple[list[Suppression], list[str]]:
    """The suppressions a file stands for, and warnings (skipped statements, expired rules). Plain and
    structured ignore files apply everywhere unless REPOSITORY (and TAG) scope them; a structured
    rule's own `images` globs scope it further."""
    text = _read(path)
    fmt = detect(path, text) if fmt == "auto" else fmt
    if fmt == "openvex":
        return from_openvex(json.loads(text), path, author)
    from stowaway.analyzers.vulnerabilities import ignores

    rules = ignores.load(path)  # the parser `rematch --ignore-file` has always used (plain, YAML, TOML)
    warnings = rules.warnings()
    out = []
    for r in list(rules.active) + list(rules.expired):
        images = r.images or ("",)
        for image in images:
            repo, t = (repository, tag)
            if image:
                from .findings import scope_of

                repo, t = scope_of(image)
            for package in r.packages or ("",):
                for p in r.paths or ("",):
                    out.append(Suppression(rule=r.id, reason=r.reason or f"listed in {os.path.basename(path)}",
                                           kind="", package=_package_name(package), path=p, repository=repo,
                                           tag=t, author=author, expires=r.expires.isoformat() if r.expires else None,
                                           source=f"{fmt}:{path}"))
    return out, warnings


def _package_name(spec: str) -> str:
    """A package given as a name, name@version or package URL, as the name findings carry."""
    if spec.startswith("pkg:"):
        return purl_name(spec)
    if "@" in spec and not spec.startswith("@"):
        return spec.rsplit("@", 1)[0]
    return spec


def purl_name(purl: str) -> str:
    """The package name Stowaway stores for a package URL: Maven `group:artifact`, npm `@scope/name`,
    everything else its name."""
    body = purl[4:].split("?", 1)[0].split("#", 1)[0]
    if body.rfind("@") > body.rfind("/"):  # the version
        body = body[:body.rfind("@")]
    parts = [unquote(p) for p in body.split("/")]
    ptype, rest = parts[0].lower(), parts[1:]
    if not rest:
        return ""
    name = rest[-1]
    namespace = "/".join(rest[:-1])
    if ptype == "maven" and namespace:
        return f"{namespace}:{name}"
    if ptype == "npm" and namespace:
        return f"{namespace}/{name}"
    if ptype == "pypi":
        return name.lower().replace("_", "-")
    return name


def _oci_scope(purl: str) -> tuple[str, str]:
    query = parse_qs(purl.split("?", 1)[1]) if "?" in purl else {}
    name = unquote(purl[len("pkg:oci/"):].split("?", 1)[0].split("@", 1)[0])
    repository = (query.get("repository_url") or [name])[0]
    tag = (query.get("tag") or [""])[0]
    return repository, tag


def _ids(component) -> list[str]:
    if isinstance(component, str):
        return [component]
    if not isinstance(component, dict):
        return []
    out = [component["@id"]] if isinstance(component.get("@id"), str) else []
    identifiers = component.get("identifiers")
    if isinstance(identifiers, dict) and isinstance(identifiers.get("purl"), str):
        out.append(identifiers["purl"])
    return out


def from_openvex(doc, source: str, author: str | None = None) -> tuple[list[Suppression], list[str]]:
    if not isinstance(doc, dict) or not isinstance(doc.get("statements"), list):
        raise ScanError(f"{source}: not an OpenVEX document (no 'statements' list)")
    author = author or (doc.get("author") if isinstance(doc.get("author"), str) else None)
    out: list[Suppression] = []
    skipped: dict[str, int] = {}
    for n, st in enumerate(doc["statements"], 1):
        if not isinstance(st, dict):
            skipped["not an object"] = skipped.get("not an object", 0) + 1
            continue
        vuln = st.get("vulnerability")
        name = vuln.get("name") if isinstance(vuln, dict) else vuln if isinstance(vuln, str) else None
        if not isinstance(name, str) or not name.strip():
            skipped["no vulnerability name"] = skipped.get("no vulnerability name", 0) + 1
            continue
        status = st.get("status")
        if status != "not_affected":
            skipped[f"status {status}"] = skipped.get(f"status {status}", 0) + 1
            continue
        reason = str(st.get("impact_statement") or st.get("justification") or "not_affected (OpenVEX)")
        scopes: list[tuple[str, str, str]] = []  # repository, tag, package
        for product in st.get("products") or [{}]:
            repo = tag = ""
            packages = []
            for ident in _ids(product):
                if ident.startswith("pkg:oci/"):
                    repo, tag = _oci_scope(ident)
                elif ident.startswith("pkg:"):
                    packages.append(purl_name(ident))
                elif ident:
                    repo, tag = _split_image(ident)
            subs = product.get("subcomponents") if isinstance(product, dict) else None
            for sub in subs or []:
                for ident in _ids(sub):
                    packages.append(purl_name(ident) if ident.startswith("pkg:") else ident)
            for package in packages or [""]:
                scopes.append((repo, tag, package))
        for repo, tag, package in dict.fromkeys(scopes):
            out.append(Suppression(rule=name.strip(), reason=reason, kind="vulnerability", package=package,
                                   repository=repo, tag=tag, author=author, source=f"openvex:{source}"))
    warnings = [f"{source}: {n} statement(s) skipped ({why})" for why, n in skipped.items()]
    return out, warnings


def _split_image(ident: str) -> tuple[str, str]:
    from .findings import scope_of

    return scope_of(ident)


def to_openvex(suppressions: list[Suppression], author: str, timestamp: str) -> tuple[dict, int]:
    """An OpenVEX v0.2.0 document of the vulnerability suppressions, and how many others were left out."""
    import hashlib

    statements, left_out = [], 0
    for s in suppressions:
        if s.kind not in ("", "vulnerability"):
            left_out += 1
            continue
        st: dict = {"vulnerability": {"name": s.rule}, "status": "not_affected", "impact_statement": s.reason,
                    "timestamp": _iso(s.created or timestamp)}
        if s.repository:
            name = s.repository.rstrip("/").rsplit("/", 1)[-1]
            product: dict = {"@id": f"pkg:oci/{name}?repository_url={s.repository}"
                                    + (f"&tag={s.tag}" if s.tag else "")}
            if s.package:
                product["subcomponents"] = [{"@id": s.package}]
            st["products"] = [product]
        elif s.package:
            st["products"] = [{"@id": s.package}]
        statements.append(st)
    digest = hashlib.sha256(json.dumps(statements, sort_keys=True).encode()).hexdigest()[:16]
    doc = {"@context": "https://openvex.dev/ns/v0.2.0", "@id": f"https://openvex.dev/docs/stowaway-{digest}",
           "author": author, "timestamp": _iso(timestamp), "version": 1, "tooling": "stowaway",
           "statements": statements}
    return doc, left_out


def _iso(value: str) -> str:
    return value if "T" in value else f"{value[:10]}T00:00:00Z"


def import_into(conn, path: str, repository: str = "", tag: str = "", author: str | None = None,
                fmt: str = "auto") -> tuple[int, list[str]]:
    """Adds (or refreshes) the suppressions a file stands for, in one transaction, and applies them to
    every image's current scan. `rematch --ignore-file`, `scan` with `[vulnerabilities] ignore_file`
    and `stowaway ignore import` all come here: an ignore file feeds the store, it is not a one-off filter."""
    items, warnings = load(path, repository, tag, author, fmt)
    with conn:
        for s in items:
            try:
                findings.add_suppression(conn, s, apply=False)
            except ValueError as exc:
                warnings.append(f"{path}: {s.rule}: {exc}")
        findings.apply_suppressions(conn)
    return len(items), warnings
