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
