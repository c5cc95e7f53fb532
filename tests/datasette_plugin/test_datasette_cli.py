"""The plugin is found by plain `datasette` through its entry point, and `stowaway serve` starts it."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request

from plugin_fixtures import demo_db, serving  # noqa: F401 (demo_db is a fixture)

BIN = os.path.dirname(sys.executable)


def test_plain_datasette_loads_the_plugin(demo_db):
    plugins = subprocess.run([os.path.join(BIN, "datasette"), demo_db, "--get", "/-/plugins.json"],
                             capture_output=True, text=True, timeout=120)
    assert plugins.returncode == 0, plugins.stderr
    mine = [p for p in json.loads(plugins.stdout) if p["name"] == "stowaway"]
    assert mine and {"register_facet_classes", "register_routes", "register_output_renderer",
                     "permission_allowed", "startup"} <= set(mine[0]["hooks"])
    page = subprocess.run([os.path.join(BIN, "datasette"), demo_db, "--get", "/-/stowaway/images"],
                          capture_output=True, text=True, timeout=120)
    assert page.returncode == 0 and "Repository images" in page.stdout and "demo/app" in page.stdout


def test_stowaway_serve_listens_on_localhost(demo_db, tmp_path):
    with serving(demo_db, tmp_path / "serve.log") as (base, _):
        with urllib.request.urlopen(f"{base}/-/stowaway/images", timeout=30) as r:
            assert "demo/app" in r.read().decode()
        assert base in (tmp_path / "serve.log").read_text()  # the address it listens on, printed for the user


def test_stowaway_serve_missing_database(tmp_path):
    got = subprocess.run([os.path.join(BIN, "stowaway"), "serve", str(tmp_path / "nope.db")],
                         capture_output=True, text=True, timeout=60)
    assert got.returncode == 2
    assert got.stderr.strip().splitlines() == [f"stowaway: {tmp_path / 'nope.db'}: no such database"]
