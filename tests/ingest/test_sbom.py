"""SBOM export: CycloneDX 1.5/1.6 and SPDX 2.3 documents of a scanned image, valid against their
schemas (CycloneDX's JSON schema; SPDX through the SPDX project's own validator plus the required
fields of the 2.3 JSON schema), and the `stowaway sbom` command."""
from __future__ import annotations

import io
import json
import re
import zipfile

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from imagebuilder import ImageBuilder

from stowaway.ingest import sbom
from stowaway.ingest.cli import main

REF = "sbom/test:1"


def zip_bytes(files: dict) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return buf.getvalue()
STATUS = ("Package: zlib1g\nStatus: install ok installed\nArchitecture: amd64\nSource: zlib\n"
          "Version: 1:1.2.11.dfsg-2+deb11u2\nMaintainer: x\nDescription: zlib\n\n")


@pytest.fixture
def scanned(tmp_path, scan):
    fat = zip_bytes({"META-INF/maven/com.example/app/pom.properties":
                     "groupId=com.example\nartifactId=app\nversion=1.0.0\n",
                     "BOOT-INF/lib/spring-core-5.3.17.jar": zip_bytes({"META-INF/MANIFEST.MF":
                         "Implementation-Version: 5.3.17\r\nBundle-License: Apache-2.0\r\n\r\n"})})
    img = ImageBuilder().layer({"etc/os-release": "ID=debian\nVERSION_ID=11\nPRETTY_NAME=\"Debian 11\"\n",
                                "var/lib/dpkg/status": STATUS})
    img.layer({"opt/app.jar": fat,
               "opt/web/node_modules/@types/node/package.json": json.dumps(
                   {"name": "@types/node", "version": "14.0.0", "license": "MIT"}),
               "usr/lib/python3/site-packages/Jinja2-2.10.dist-info/METADATA":
                   "Name: Jinja2\nVersion: 2.10\nLicense: BSD\n\n",
               "usr/lib/python3/site-packages/odd-1.0.dist-info/METADATA":
                   "Name: odd\nVersion: 1.0\nLicense: Some Custom Licence\n\n"})
    database, outcomes = scan(f"oci:{img.write_oci_layout(tmp_path / 'oci', ref=REF)}", risks=["software"])
    assert outcomes[0].status == "done"
    return database


def _packages(database):
    return {r[0]: r[1:] for r in database.execute("SELECT name, version, purl, path, layer_index FROM packages")}


@pytest.mark.parametrize("version,schema", [("1.6", SchemaVersion.V1_6), ("1.5", SchemaVersion.V1_5)])
def test_cyclonedx_is_schema_valid_and_carries_every_package(scanned, version, schema):
    text = sbom.cyclonedx(scanned, REF, spec_version=version)
    assert JsonStrictValidator(schema).validate_str(text) is None
    doc = json.loads(text)
    assert doc["specVersion"] == version
    assert doc["metadata"]["component"]["type"] == "container"
    assert doc["metadata"]["component"]["name"] == REF
    by_purl = {c.get("purl"): c for c in doc["components"]}
    stored = _packages(scanned)
    assert {row[1] for row in stored.values()} <= set(by_purl)
    nested = by_purl["pkg:maven/org.springframework/spring-core@5.3.17"]
    assert (nested["group"], nested["name"], nested["version"]) == ("org.springframework", "spring-core", "5.3.17")
    props = {p["name"]: p["value"] for p in nested["properties"]}
    assert props["stowaway:path"] == "/opt/app.jar!/BOOT-INF/lib/spring-core-5.3.17.jar"
    assert props["stowaway:layer_index"] == "1"
    assert nested["licenses"] == [{"license": {"id": "Apache-2.0"}}]
    scoped = by_purl["pkg:npm/%40types/node@14.0.0"]
    assert (scoped["group"], scoped["name"]) == ("@types", "node")
    deb = by_purl[stored["zlib1g"][1]]
    assert {p["name"]: p["value"] for p in deb["properties"]}["stowaway:source_name"] == "zlib"
    assert any(c["type"] == "operating-system" and c["name"] == "debian" for c in doc["components"])


def test_the_cyclonedx_validator_does_reject_a_broken_document(scanned):
    doc = json.loads(sbom.cyclonedx(scanned, REF))
    doc["components"][0]["type"] = "not-a-type"
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(json.dumps(doc)) is not None


REQUIRED_DOC = {"spdxVersion", "dataLicense", "SPDXID", "name", "documentNamespace", "creationInfo"}
REQUIRED_PACKAGE = {"SPDXID", "name", "downloadLocation"}


def check_spdx_required(doc: dict) -> list[str]:
    """The SPDX 2.3 JSON schema's required fields and patterns for what this document uses."""
    problems = [f"document lacks {k}" for k in REQUIRED_DOC - set(doc)]
    if doc.get("spdxVersion") != "SPDX-2.3" or doc.get("dataLicense") != "CC0-1.0" or doc.get("SPDXID") != "SPDXRef-DOCUMENT":
        problems.append("document header")
    info = doc.get("creationInfo", {})
    if not info.get("creators") or not all(c.startswith(("Tool: ", "Person: ", "Organization: ")) for c in info["creators"]):
        problems.append("creators")
    if not re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", info.get("created", "")):
        problems.append("created")
    ids = set()
    for p in doc.get("packages", []):
        problems += [f"{p.get('SPDXID')} lacks {k}" for k in REQUIRED_PACKAGE - set(p)]
        if not re.fullmatch(r"SPDXRef-[A-Za-z0-9.\-]+", p.get("SPDXID", "")) or p["SPDXID"] in ids:
            problems.append(f"bad or repeated SPDXID {p.get('SPDXID')}")
        ids.add(p.get("SPDXID"))
        for ref in p.get("externalRefs", []):
            if set(ref) < {"referenceCategory", "referenceType", "referenceLocator"}:
                problems.append(f"{p['SPDXID']}: external ref")
    for r in doc.get("relationships", []):
        if r["spdxElementId"] not in ids | {"SPDXRef-DOCUMENT"} or r["relatedSpdxElement"] not in ids:
            problems.append(f"dangling relationship {r}")
    return problems


def test_spdx_is_valid_for_the_spdx_validator_and_the_required_fields(scanned, tmp_path):
    from spdx_tools.spdx.parser.parse_anything import parse_file
    from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

    doc = sbom.spdx(scanned, REF)
    assert check_spdx_required(doc) == []
    path = tmp_path / "doc.spdx.json"
    path.write_text(json.dumps(doc))
    assert validate_full_spdx_document(parse_file(str(path))) == []
    stored = _packages(scanned)
    assert len(doc["packages"]) == len(stored) + 1  # and the image itself
    by_name = {p["name"]: p for p in doc["packages"]}
    # 'BSD' names no single SPDX licence: it is kept as a comment, not guessed
    assert (by_name["jinja2"]["licenseDeclared"], by_name["jinja2"]["licenseComments"]) == ("NOASSERTION", "declared: BSD")
    assert by_name["@types/node"]["licenseDeclared"] == "MIT"
    assert by_name["odd"]["licenseDeclared"] == "NOASSERTION"
    assert by_name["odd"]["licenseComments"] == "declared: Some Custom Licence"
    assert by_name["@types/node"]["externalRefs"][0]["referenceLocator"] == "pkg:npm/%40types/node@14.0.0"
    contained = {r["relatedSpdxElement"] for r in doc["relationships"] if r["relationshipType"] == "CONTAINS"}
    assert len(contained) == len(stored)

    # and the validators do bite
    broken = dict(doc, packages=[{k: v for k, v in p.items() if k != "downloadLocation"} for p in doc["packages"]])
    assert check_spdx_required(broken)
    bad_licence = json.loads(json.dumps(doc))
    bad_licence["packages"][1]["licenseDeclared"] = "Some Custom Licence"
    path.write_text(json.dumps(bad_licence))
    assert validate_full_spdx_document(parse_file(str(path)))


def test_sbom_command(scanned, tmp_path, capsys):
    db_path = scanned.conn.execute("PRAGMA database_list").fetchone()[2]
    out = tmp_path / "bom.json"
    assert main(["sbom", REF, "--db", db_path, "--format", "cyclonedx", "-o", str(out)]) == 0
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(out.read_text()) is None
    assert main(["sbom", REF, "--db", db_path, "--format", "spdx"]) == 0
    assert json.loads(capsys.readouterr().out)["spdxVersion"] == "SPDX-2.3"
    assert main(["sbom", "no/such:image", "--db", db_path, "--format", "spdx"]) == 2
    assert capsys.readouterr().err.strip() == "stowaway: no/such:image: no such image in the database"
