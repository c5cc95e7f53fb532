"""JavaScript libraries known by their banner, not repeated where an npm package.json covers them."""
from __future__ import annotations

import json

from app_harness import inspect

from stowaway.analyzers.inventory.javascript_banner import identify

NAMES = ("npm", "javascript-banner")
JQUERY_MIN = "/*! jQuery v3.4.1 | (c) JS Foundation and other contributors | jquery.org/license */\n!function(e,t){}"
BOOTSTRAP = "/*!\n * Bootstrap v3.3.7 (http://getbootstrap.com)\n * Copyright 2011-2016 Twitter, Inc.\n */\nif(1);"


def test_banners_of_common_libraries():
    assert identify("jquery.min.js", JQUERY_MIN) == ("jquery", "3.4.1")
    assert identify("jquery.slim.js", "/*!\n * jQuery JavaScript Library v3.4.1 -ajax,-ajax/jsonp\n") == ("jquery", "3.4.1")
    assert identify("jquery-ui.min.js", "/*! jQuery UI - v1.12.1 - 2016-09-14\n") == ("jquery-ui", "1.12.1")
    assert identify("bootstrap.min.js", BOOTSTRAP) == ("bootstrap", "3.3.7")
    assert identify("angular.min.js", "/*\n AngularJS v1.7.8\n (c) 2010-2018 Google, Inc.\n @license AngularJS v1.7.8") \
        == ("angular", "1.7.8")
    assert identify("moment.js", "//! moment.js\n//! version : 2.24.0\n") == ("moment", "2.24.0")
    assert identify("vue.min.js", "/*!\n * Vue.js v2.6.10\n") == ("vue", "2.6.10")
    assert identify("jquery.js", "define( [ './core' ] )") is None
    assert identify("other.js", JQUERY_MIN) is None  # only files named like the library are read


def test_standalone_files_are_packages_and_node_modules_copies_are_not_repeated():
    layers = [{
        "var/www/static/js/jquery.min.js": JQUERY_MIN,
        "var/www/static/js/bootstrap.min.js": BOOTSTRAP,
        "opt/web/node_modules/jquery/package.json": json.dumps({"name": "jquery", "version": "3.4.1"}),
        "opt/web/node_modules/jquery/dist/jquery.min.js": JQUERY_MIN,
        "opt/web/node_modules/theme/package.json": json.dumps({"name": "theme", "version": "1.0.0"}),
        "opt/web/node_modules/theme/vendor/bootstrap.min.js": BOOTSTRAP,
    }]
    got = sorted((p.name, p.version, p.path) for p in inspect(layers, NAMES).packages)
    assert got == [
        ("bootstrap", "3.3.7", "/opt/web/node_modules/theme/vendor/bootstrap.min.js"),  # vendored by another package
        ("bootstrap", "3.3.7", "/var/www/static/js/bootstrap.min.js"),
        ("jquery", "3.4.1", "/opt/web/node_modules/jquery/package.json"),
        ("jquery", "3.4.1", "/var/www/static/js/jquery.min.js"),
        ("theme", "1.0.0", "/opt/web/node_modules/theme/package.json"),
    ]
