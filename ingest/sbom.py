"""SBOM export of an image's software inventory: CycloneDX (1.5/1.6 JSON) and SPDX 2.3 JSON.

Built from the database alone (the packages of the image's newest finished scan), so an SBOM never
needs the image again. Every package keeps its package URL, licences and, as properties or
comments, where it was found and in which layer.
"""
from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from urllib.parse import quote

from .model import ScanError
from .report import find_image

TOOL = "stowaway"
FORMATS = ("cyclonedx", "spdx")


def inventory(db, ref: str, platform: str = "") -> tuple[dict, list[dict]]:
    """(image row, package rows) of the newest finished scan of REF."""
    image_id, scan_id = find_image(db, ref, platform)
    cur = db.execute("SELECT * FROM images WHERE id = ?", [image_id])
    cols = [c[0] for c in cur.description]
    image = dict(zip(cols, cur.fetchone()))
    cur = db.execute("SELECT * FROM packages WHERE scan_id = ? ORDER BY ecosystem, name, version, path", [scan_id])
    cols = [c[0] for c in cur.description]
    packages = [dict(zip(cols, r)) for r in cur.fetchall()]
    for p in packages:
        try:
            p["licenses"] = json.loads(p["licenses"]) if p["licenses"] else []
        except ValueError:
            p["licenses"] = []
    return image, packages


def _tool_version() -> str:
    from .pipeline import TOOL_VERSION

    return TOOL_VERSION


def _split_name(p: dict) -> tuple[str, str]:
    """(group, name) as CycloneDX wants them: Maven groupId, npm scope, Go module prefix."""
    name = p["name"]
    if p["ecosystem"] == "maven" and ":" in name:
        return tuple(name.split(":", 1))  # type: ignore[return-value]
    if p["ecosystem"] == "npm" and name.startswith("@") and "/" in name:
        return tuple(name.split("/", 1))  # type: ignore[return-value]
    return "", name


# --- CycloneDX --------------------------------------------------------------------------------------

def cyclonedx(db, ref: str, platform: str = "", spec_version: str = "1.6") -> str:
    from cyclonedx.model import Property
    from cyclonedx.model.bom import Bom
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.model.license import DisjunctiveLicense, LicenseExpression
    from cyclonedx.output.json import JsonV1Dot5, JsonV1Dot6
    from cyclonedx.spdx import fixup_id, is_expression
    from packageurl import PackageURL

    writers = {"1.5": JsonV1Dot5, "1.6": JsonV1Dot6}
    if spec_version not in writers:
        raise ScanError(f"CycloneDX {spec_version} is not supported; choose from {', '.join(writers)}")
    image, packages = inventory(db, ref, platform)
    bom = Bom()
    bom.metadata.tools.components.add(Component(type=ComponentType.APPLICATION, name=TOOL, version=_tool_version()))
    root = Component(type=ComponentType.CONTAINER, name=image["reference"], version=image["manifest_digest"] or None,
                     bom_ref="image", properties=[Property(name="stowaway:platform", value=image["platform"])]
                     if image["platform"] else None)
    bom.metadata.component = root
    components = []
    if image["os_family"]:
        os_component = Component(type=ComponentType.OPERATING_SYSTEM, name=image["os_family"],
                                 version=image["os_version"] or None, bom_ref="os",
                                 description=image["os_name"] or None)
        components.append(os_component)
    for p in packages:
        group, name = _split_name(p)
        licenses: list[LicenseExpression | DisjunctiveLicense] = []
        names = p["licenses"]
        if len(names) == 1 and not fixup_id(names[0]) and is_expression(names[0]):
            licenses = [LicenseExpression(names[0])]
        else:
            for text in names:
                spdx_id = fixup_id(text)
                licenses.append(DisjunctiveLicense(id=spdx_id) if spdx_id else DisjunctiveLicense(name=text))
        props = [Property(name="stowaway:ecosystem", value=p["ecosystem"]),
                 Property(name="stowaway:path", value=p["path"])]
        if p["layer_index"] is not None:
            props.append(Property(name="stowaway:layer_index", value=str(p["layer_index"])))
        if p["os_owned"]:
            props.append(Property(name="stowaway:os_owned", value="true"))
        for key in ("arch", "source_name", "source_version"):
            if p.get(key):
                props.append(Property(name=f"stowaway:{key}", value=p[key]))
        purl = None
        if p["purl"]:
            try:
                purl = PackageURL.from_string(p["purl"])
            except ValueError:
                purl = None
        components.append(Component(type=ComponentType.LIBRARY, name=name, group=group or None,
                                    version=p["version"] or None, purl=purl, licenses=licenses,
                                    bom_ref=f"pkg-{p['id']}", properties=props))
    for c in components:
        bom.components.add(c)
    bom.register_dependency(root, components)
    return writers[spec_version](bom).output_as_string(indent=2)


# --- SPDX 2.3 ---------------------------------------------------------------------------------------

def _spdx_licence(names: list[str]) -> tuple[str, str]:
    """(licenseDeclared, licenseComments): an SPDX expression when every name maps to one."""
    from cyclonedx.spdx import fixup_id, is_expression

    if not names:
        return "NOASSERTION", ""
    ids = [fixup_id(n) for n in names]
    found = [i for i in ids if i]
    if len(found) == len(ids):
        unique = list(dict.fromkeys(found))
        return (unique[0] if len(unique) == 1 else " AND ".join(unique)), ""
    if len(names) == 1 and is_expression(names[0]):
        return names[0], ""
    return "NOASSERTION", "declared: " + "; ".join(names)


def spdx(db, ref: str, platform: str = "", created: str | None = None) -> dict:
    image, packages = inventory(db, ref, platform)
    created = created or dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    root_id = "SPDXRef-Image"
    root = {"SPDXID": root_id, "name": image["reference"], "downloadLocation": "NOASSERTION",
            "filesAnalyzed": False, "primaryPackagePurpose": "CONTAINER",
            "licenseConcluded": "NOASSERTION", "licenseDeclared": "NOASSERTION", "copyrightText": "NOASSERTION"}
    if image["manifest_digest"]:
        root["versionInfo"] = image["manifest_digest"]
        algo, _, hexdigest = image["manifest_digest"].partition(":")
        if algo == "sha256" and re.fullmatch(r"[0-9a-f]{64}", hexdigest):
            root["checksums"] = [{"algorithm": "SHA256", "checksumValue": hexdigest}]
    doc_packages = [root]
    relationships = [{"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES", "relatedSpdxElement": root_id}]
    for p in packages:
        spdx_id = f"SPDXRef-Package-{p['ecosystem']}-{p['id']}"
        spdx_id = re.sub(r"[^A-Za-z0-9.\-]", "-", spdx_id)
        declared, comment = _spdx_licence(p["licenses"])
        where = f"{p['ecosystem']} package recorded at {p['path']}"
        if p["layer_index"] is not None:
            where += f", layer {p['layer_index']}"
        if p["os_owned"]:
            where += ", owned by an OS package"
        item = {"SPDXID": spdx_id, "name": p["name"], "downloadLocation": "NOASSERTION", "filesAnalyzed": False,
                "licenseConcluded": "NOASSERTION", "licenseDeclared": declared, "copyrightText": "NOASSERTION",
                "sourceInfo": where, "primaryPackagePurpose": "LIBRARY"}
        if p["version"]:
            item["versionInfo"] = p["version"]
        if comment:
            item["licenseComments"] = comment
        if p["purl"]:
            item["externalRefs"] = [{"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl",
                                     "referenceLocator": p["purl"]}]
        doc_packages.append(item)
        relationships.append({"spdxElementId": root_id, "relationshipType": "CONTAINS", "relatedSpdxElement": spdx_id})
    name = image["reference"]
    return {
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": name,
        # unique per document, as the spec asks; the host is not meant to resolve
        "documentNamespace": f"https://stowaway.invalid/spdx/{quote(name, safe='')}-{uuid.uuid4()}",
        "creationInfo": {"created": created, "creators": [f"Tool: {TOOL}-{_tool_version()}"]},
        "packages": doc_packages,
        "relationships": relationships,
    }


def export(db, ref: str, fmt: str, platform: str = "") -> str:
    if fmt == "cyclonedx":
        return cyclonedx(db, ref, platform)
    if fmt == "spdx":
        return json.dumps(spdx(db, ref, platform), indent=2, ensure_ascii=False)
    raise ScanError(f"unknown SBOM format {fmt!r}; choose from {', '.join(FORMATS)}")
