"""npm: node_modules package.json files and the app's own, scoped names, licences, bad JSON."""
from __future__ import annotations

import json

from app_harness import inspect

NAMES = ("npm",)


def test_node_modules_and_app_package_json():
    layers = [{
        "opt/web/package.json": json.dumps({"name": "shop-web", "version": "1.0.0", "private": True}),
        "opt/web/node_modules/lodash/package.json": json.dumps({"name": "lodash", "version": "4.17.15",
                                                                "license": "MIT"}),
        "opt/web/node_modules/@babel/core/package.json": json.dumps(
            {"name": "@babel/core", "version": "7.1.0", "licenses": [{"type": "MIT"}, "ISC"]}),
        "opt/web/node_modules/lodash/fp/package.json": json.dumps({"main": "../fp.js"}),
        "opt/web/node_modules/x/template/package.json": "{{ name }}",
        "opt/web/node_modules/y/package.json": "[1, 2]",
    }]
    got = {p.name: p for p in inspect(layers, NAMES).packages}
    assert set(got) == {"shop-web", "lodash", "@babel/core"}
    assert got["lodash"].path == "/opt/web/node_modules/lodash/package.json"
    assert got["lodash"].licenses == ("MIT",) and got["lodash"].purl == "pkg:npm/lodash@4.17.15"
    assert got["@babel/core"].purl == "pkg:npm/%40babel/core@7.1.0"
    assert got["@babel/core"].licenses == ("MIT", "ISC")
    assert got["shop-web"].metadata == {"private": True}


def test_huge_and_hostile_package_json_are_skipped(monkeypatch):
    from stowaway.analyzers.inventory import npm

    monkeypatch.setattr(npm, "MAX_SIZE", 5000)
    layers = [{"a/node_modules/big/package.json": json.dumps({"name": "big", "version": "1.0.0", "x": "y" * 6000}),
               "a/node_modules/deep/package.json": "[" * 2400 + "]" * 2400,  # deeper than json can recurse,
               "a/node_modules/ok/package.json": json.dumps({"name": "ok", "version": "2.0.0"})}]
    result = inspect(layers, NAMES)
    assert [p.name for p in result.packages] == ["ok"]
    assert any("big/package.json: 60" in w and "not parsed" in w for w in result.ctx.warnings)
