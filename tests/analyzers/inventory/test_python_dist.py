"""Python distributions: dist-info METADATA, egg-info PKG-INFO (directory or file), PEP 503 names."""
from __future__ import annotations

from app_harness import inspect
from imagebuilder import WHITEOUT

from stowaway.analyzers.inventory.python_dist import MAX_HEADER, parse_headers

NAMES = ("python-dist",)
SITE = "usr/local/lib/python3.9/site-packages"


def metadata(name, version, extra="", body="A long description.\n"):
    return f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n{extra}\n{body}"


def test_dist_info_and_egg_info_with_normalized_names_and_licences():
    layers = [{
        f"{SITE}/Jinja2-2.10.dist-info/METADATA": metadata("Jinja2", "2.10", "License: BSD\n"),
        f"{SITE}/zope.interface-5.4.0.egg-info/PKG-INFO": metadata(
            "zope.interface", "5.4.0", "License: UNKNOWN\nClassifier: License :: OSI Approved :: Zope Public License\n"),
        "usr/lib/python3/dist-packages/Ruamel_YAML.egg-info": metadata("ruamel.yaml", "0.17.21",
                                                                      "License-Expression: MIT\n"),
        f"{SITE}/requests-2.19.1.dist-info/RECORD": "requests/__init__.py,,\n",
    }]
    got = {p.name: p for p in inspect(layers, NAMES).packages}
    assert set(got) == {"jinja2", "zope-interface", "ruamel-yaml"}
    j = got["jinja2"]
    assert (j.ecosystem, j.version, j.path, j.purl, j.licenses) == (
        "pypi", "2.10", f"/{SITE}/Jinja2-2.10.dist-info/METADATA", "pkg:pypi/jinja2@2.10", ("BSD",))
    assert got["zope-interface"].licenses == ("Zope Public License",)
    assert got["ruamel-yaml"].licenses == ("MIT",)
    assert got["ruamel-yaml"].path == "/usr/lib/python3/dist-packages/Ruamel_YAML.egg-info"


def test_header_parsing_stops_at_the_body_and_reads_folded_lines():
    fields, complete = parse_headers(b"Name: x\r\nVersion: 1\r\nSummary: one\r\n  two\r\n\r\nName: not-a-header\n")
    assert complete and fields["name"] == ["x"] and fields["summary"] == ["one\ntwo"]


def test_upgrade_and_removal_in_later_layers():
    old = f"{SITE}/urllib3-1.24.1.dist-info/METADATA"
    new = f"{SITE}/urllib3-1.26.5.dist-info/METADATA"
    layers = [{old: metadata("urllib3", "1.24.1")}, {f"{SITE}/.wh.urllib3-1.24.1.dist-info": WHITEOUT,
                                                    new: metadata("urllib3", "1.26.5")}]
    got = inspect(layers, NAMES).packages
    assert [(p.version, p.layer_index) for p in got] == [("1.26.5", 1)]


def test_malformed_metadata_is_a_warning_and_the_rest_stays():
    layers = [{f"{SITE}/a-1.dist-info/METADATA": "Version: 1\n\n",
               f"{SITE}/b-1.dist-info/METADATA": "X-Pad: " + "x" * (MAX_HEADER + 10),
               f"{SITE}/ok-1.dist-info/METADATA": metadata("ok", "1")}]
    result = inspect(layers, NAMES)
    assert [p.name for p in result.packages] == ["ok"]
    warnings = " | ".join(result.ctx.warnings)
    assert "a-1.dist-info/METADATA: metadata without Name or Version" in warnings
    assert "b-1.dist-info/METADATA: no Name and Version in the first" in warnings
