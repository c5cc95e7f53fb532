"""PHP Composer installed.json, version 1 (a list) and 2 (an object)."""
from __future__ import annotations

import json

from app_harness import inspect


def test_composer_1_and_2_and_bad_json():
    v1 = [{"name": "monolog/monolog", "version": "1.25.1", "license": ["MIT"]}]
    v2 = {"packages": [{"name": "guzzlehttp/guzzle", "version": "v7.4.0", "license": ["MIT"]}, {"name": "x"}],
          "dev": True}
    layers = [{"var/www/a/vendor/composer/installed.json": json.dumps(v1),
               "var/www/b/vendor/composer/installed.json": json.dumps(v2),
               "var/www/c/vendor/composer/installed.json": "{not json"}]
    result = inspect(layers, ("composer",))
    got = sorted((p.name, p.version, p.purl, p.licenses) for p in result.packages)
    assert got == [("guzzlehttp/guzzle", "7.4.0", "pkg:composer/guzzlehttp/guzzle@7.4.0", ("MIT",)),
                   ("monolog/monolog", "1.25.1", "pkg:composer/monolog/monolog@1.25.1", ("MIT",))]
    assert any("c/vendor/composer/installed.json: not JSON" in w for w in result.ctx.warnings)
