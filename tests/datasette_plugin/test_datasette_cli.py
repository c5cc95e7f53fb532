"""The plugin is found by plain `datasette` through its entry point, and `stowaway serve` starts it."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

from plugin_fixtures import demo_db  # noqa: F401 (a fixture)

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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_stowaway_serve_listens_on_localhost(demo_db, tmp_path):
    port = free_port()
    log = open(tmp_path / "serve.log", "w+")
    proc = subprocess.Popen([os.path.join(BIN, "stowaway"), "serve", demo_db, "--port", str(port)],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        body = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and body is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/stowaway/images", timeout=5) as r:
                    body = r.read().decode()
            except OSError:
                if proc.poll() is not None:
                    break
                time.sleep(0.3)
        log.seek(0)
        output = log.read()
        assert body is not None, output
        assert "demo/app" in body
        assert f"http://127.0.0.1:{port}" in output
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def test_stowaway_serve_missing_database(tmp_path):
    got = subprocess.run([os.path.join(BIN, "stowaway"), "serve", str(tmp_path / "nope.db")],
                         capture_output=True, text=True, timeout=60)
    assert got.returncode == 2
    assert got.stderr.strip().splitlines() == [f"stowaway: {tmp_path / 'nope.db'}: no such database"]
