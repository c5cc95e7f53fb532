"""Scanning through Debian's real docker-registry: plain, htpasswd, TLS with a CA made here; images pushed
with skopeo. A registry scan stores what the archive scan stores; a second scan downloads no layer."""
import base64
import json
import re
import subprocess
import sys

import pytest
from conftest import CORPUS, corpus, report_of
from imagebuilder import File, ImageBuilder, Symlink
from registry_server import Registry, needs_registry, registry  # noqa: F401  (fixture)

pytestmark = [pytest.mark.registry, needs_registry]


def app_image(tag="1") -> ImageBuilder:
    img = ImageBuilder()
    img.layer({"etc/os-release": 'ID=alpine\nVERSION_ID=3.19.1\nPRETTY_NAME="Alpine Linux v3.19"\n',
               "bin/busybox": File(b"\x7fELF" + b"b" * 2000, mode=0o755), "bin/sh": Symlink("/bin/busybox")},
              created_by="ADD alpine /")
    img.layer({"app/main.py": f"print('app {tag}')\n", "app/data.bin": File(b"\0" * 5000)}, created_by="COPY app /app")
    return img


def push(reg, tmp_path, img, repo_tag, name="oci"):
    layout = tmp_path / name
    img.write_oci_layout(layout, ref="x")
    reg.push(f"oci:{layout}:x", repo_tag)


def scan(db_path, sources, options, **kw):
    from stowaway.ingest.db import connect
    from stowaway.ingest.pipeline import Scanner

    database = connect(str(db_path))
    return database, Scanner(database, {"source_options": options}, progress=False, **kw).run(sources)


def manifest_gets(reg) -> int:
    """Manifest downloads (GET .../manifests/...) answered so far, from the registry's access log."""
    reg.log.flush()
    return len(re.findall(r'"GET /v2/[^ ]+/manifests/[^ ]+ HTTP/[0-9.]+" 200', open(reg.log_path, errors="replace").read()))


def manifest_heads(reg) -> list[str]:
    reg.log.flush()
    return re.findall(r'"HEAD (/v2/[^ ]+/manifests/[^ ]+) HTTP/[0-9.]+" (\d+)', open(reg.log_path, errors="replace").read())


def head_peers(reg) -> list[str]:
    """The client address (host:port, so one per connection) of every HEAD the registry logged."""
    reg.log.flush()
    return [m.group(1) for line in open(reg.log_path, errors="replace") if "http.request.method=HEAD" in line
            for m in [re.search(r'http.request.remoteaddr="([^"]+)"', line)] if m]


def file_view(database, ref, platform=""):
    from stowaway.ingest.report import build

    rep = build(database, ref, platform)
    return rep["image"]["os"], rep["files"]["total_files"], rep["files"]["total_size"], rep["files"]["largest"], \
        [l["created_by"] for l in rep["image"]["layers"]]


def test_registry_scan_matches_the_layout_scan_and_rescan_downloads_no_layer(registry, tmp_path):
    img = app_image()
    push(registry, tmp_path, img, "demo/app:1")
    database, out = scan(tmp_path / "r.db", [f"registry:{registry.host}/demo/app:1"], registry.options())
    assert [o.status for o in out] == ["done"], out
    ref = f"{registry.host}/demo/app:1"
    img.write_oci_layout(tmp_path / "local", ref="demo/app:1")
    local, _ = scan(tmp_path / "l.db", [f"oci:{tmp_path / 'local'}"], {})
    assert file_view(database, ref) == file_view(local, "demo/app:1")
    assert file_view(database, ref)[0]["family"] == "alpine"
    row = database.execute("SELECT repository, tag, manifest_digest, source FROM images").fetchone()
    assert row[:2] == (f"{registry.host}/demo/app", "1") and row[2].startswith("sha256:")

    layer_digests = {d for d, b in img.oci_blobs()[0].items() if len(b) > 0} - {row[2]}
    first = registry.blob_gets()
    assert len([g for g in first if g.rsplit("/", 1)[1] in layer_digests]) >= 2  # both layers came down once
    _, again = scan(tmp_path / "r.db", [f"registry:{registry.host}/demo/app:1"], registry.options())
    assert (again[0].status, again[0].layers_read, again[0].layers_cached) == ("done", 0, 2)
    # (the first scan's connection predates the advisory store's tables, which this one made: evaluated again)
    first = registry.blob_gets()
    _, third = scan(tmp_path / "r.db", [f"registry:{registry.host}/demo/app:1"], registry.options())
    # unchanged (the same manifest digest, by a HEAD): no manifest GET, no blob at all, the results copied forward
    gets = manifest_gets(registry)
    assert registry.blob_gets()[len(first):] == [] and "(manifest digest by HEAD, nothing downloaded)" in \
        third[0].reused, third
    assert manifest_gets(registry) == gets
    from stowaway.ingest.pipeline import Scanner

    before = len(registry.blob_gets())
    out = Scanner(database, {"source_options": registry.options(), "scan": {"reuse": False}},
                  progress=False).run([f"registry:{registry.host}/demo/app:1"])
    assert (out[0].status, out[0].layers_read, out[0].reused) == ("done", 0, "")
    config_digest = database.execute("SELECT config_digest FROM images").fetchone()[0]
    # analysed afresh from the cache: the config only, never a layer
    assert [g.rsplit("/", 1)[1] for g in registry.blob_gets()[before:]] == [config_digest]


def test_pull_by_digest_and_a_shared_base_is_read_once(registry, tmp_path):
    one, two = app_image("1"), app_image("2")
    push(registry, tmp_path, one, "demo/app:1", "a")
    push(registry, tmp_path, two, "demo/other:2", "b")
    from stowaway.ingest.sources.registry import RegistryClient

    client = RegistryClient.from_options(registry.host, registry.options())
    _, _, digest = client.manifest("demo/other", "2")
    database, out = scan(tmp_path / "r.db", [f"registry:{registry.host}/demo/app:1",
                                             f"registry:{registry.host}/demo/other@{digest}"], registry.options())
    assert [(o.status, o.layers_read, o.layers_cached) for o in out] == [("done", 2, 0), ("done", 1, 1)]
    assert database.execute("SELECT manifest_digest FROM images WHERE reference LIKE '%other%'").fetchone()[0] == digest


def test_catalog_and_tags_are_paginated(registry, tmp_path):
    for tag in ("1", "2", "3"):
        push(registry, tmp_path, app_image(tag), f"demo/app:{tag}", f"o{tag}")
    push(registry, tmp_path, app_image("x"), "other/tool:1", "ox")
    from stowaway.ingest.sources.registry import RegistryClient

    client = RegistryClient.from_options(registry.host, registry.options())
    before = registry.blob_gets()
    assert list(client.catalog(page=1)) == ["demo/app", "other/tool"]
    assert sorted(client.tags("demo/app", page=2)) == ["1", "2", "3"]
    log = open(registry.log_path).read()
    assert "_catalog?last=demo%2Fapp&n=1" in log or "_catalog?last=demo/app&n=1" in log  # the Link was followed
    assert registry.blob_gets() == before


def test_multi_platform_index_scans_each_platform(registry, tmp_path):
    amd = ImageBuilder().layer({"etc/os-release": "ID=alpine\nVERSION_ID=3.19.1\n", "arch": "amd64"})
    arm = ImageBuilder().layer({"etc/os-release": "ID=alpine\nVERSION_ID=3.19.1\n", "arch": "arm64", "more": "x"})
    ImageBuilder().write_oci_layout(tmp_path / "multi", ref="m", platforms={"linux/amd64": amd, "linux/arm64": arm})
    registry.push(f"oci:{tmp_path / 'multi'}:m", "demo/multi:1", all_platforms=True)
    database, out = scan(tmp_path / "r.db", [f"registry:{registry.host}/demo/multi:1"], registry.options())
    assert [o.status for o in out] == ["done", "done"], out
    rows = database.execute("SELECT platform, index_digest, manifest_digest FROM images ORDER BY platform").fetchall()
    assert [r[0] for r in rows] == ["linux/amd64", "linux/arm64"]
    assert rows[0][1] and rows[0][1] == rows[1][1] and rows[0][2] != rows[1][2]
    ref = f"{registry.host}/demo/multi:1"
    assert file_view(database, ref, "linux/arm64")[1] == 3
    assert file_view(database, ref, "linux/amd64")[1] == 2


def test_htpasswd_registry_needs_credentials_and_takes_them_from_env_or_docker_config(tmp_path, monkeypatch):
    reg = Registry(tmp_path / "reg", auth=("scanner", "s3cret-pass"))
    try:
        push(reg, tmp_path, app_image(), "private/app:1")
        source = f"registry:{reg.host}/private/app:1"
        monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "nodocker"))
        database, out = scan(tmp_path / "a.db", [source], {"scheme": "http"})
        assert out[0].status == "failed" and "authentication required" in out[0].error
        _, out = scan(tmp_path / "a.db", [source], {"scheme": "http", "username": "scanner", "password": "wrong"})
        assert out[0].status == "failed" and "401" in out[0].error

        key = reg.host.upper().replace(".", "_").replace(":", "_")
        monkeypatch.setenv(f"STOWAWAY_REGISTRY_{key}_USER", "scanner")
        monkeypatch.setenv(f"STOWAWAY_REGISTRY_{key}_PASSWORD", "s3cret-pass")
        _, out = scan(tmp_path / "a.db", [source], {"scheme": "http"})
        assert out[0].status == "done", out
        monkeypatch.delenv(f"STOWAWAY_REGISTRY_{key}_USER")

        conf_dir = tmp_path / "docker"
        conf_dir.mkdir()
        (conf_dir / "config.json").write_text(json.dumps({"auths": {reg.host: {
            "auth": base64.b64encode(b"scanner:s3cret-pass").decode()}}, "credHelpers": {"gcr.io": "gcloud"}}))
        monkeypatch.setenv("DOCKER_CONFIG", str(conf_dir))
        database, out = scan(tmp_path / "b.db", [source], {"scheme": "http"})
        assert out[0].status == "done", out
        # credentials are never stored
        dump = "\n".join(database.conn.iterdump())
        assert "s3cret-pass" not in dump

        # the command line as CI types it: http:// says plain HTTP, the password comes on stdin
        monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "nodocker"))
        monkeypatch.delenv(f"STOWAWAY_REGISTRY_{key}_PASSWORD")
        cli = [sys.executable, "-m", "stowaway.ingest.cli", "scan", f"registry:http://{reg.host}/private/app:1",
               "--db", str(tmp_path / "c.db"), "--risk", "files", "--no-progress"]
        r = subprocess.run(cli, capture_output=True, text=True, timeout=300)
        assert r.returncode == 1 and "authentication required" in r.stderr
        r = subprocess.run(cli + ["--username", "scanner", "--password-stdin"], input="s3cret-pass\n",
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        for stored in tmp_path.glob("c.db*"):  # the database and its WAL
            assert b"s3cret-pass" not in stored.read_bytes()
    finally:
        reg.stop()


def test_tls_registry_with_a_custom_ca_or_insecure(tmp_path):
    reg = Registry(tmp_path / "reg", tls=True)
    try:
        push(reg, tmp_path, app_image(), "tls/app:1")
        source = f"registry:{reg.host}/tls/app:1"
        _, out = scan(tmp_path / "a.db", [source], {})
        assert out[0].status == "failed" and "TLS" in out[0].error
        _, out = scan(tmp_path / "a.db", [source], {"ca": reg.ca})
        assert out[0].status == "done", out
        _, out = scan(tmp_path / "b.db", [source], {"insecure": True})
        assert out[0].status == "done", out
    finally:
        reg.stop()


def test_sync_records_tags_and_resync_marks_changes_and_removals(registry, tmp_path):
    from stowaway.ingest.db import connect
    from stowaway.ingest.sources.registry import RegistryClient
    from stowaway.ingest.sync import sync, synced_references

    push(registry, tmp_path, app_image("1"), "demo/app:1", "o1")
    push(registry, tmp_path, app_image("2"), "demo/app:2", "o2")
    push(registry, tmp_path, app_image("t"), "tools/t:1", "ot")
    database = connect(str(tmp_path / "s.db"))
    client = RegistryClient.from_options(registry.host, registry.options())
    res = sync(database, client, repo_type="third-party", images_per_hour=5, now="2026-01-01T00:00:00Z")
    assert (res.repositories, res.tags, res.added, res.errors) == (2, 3, 3, [])
    before_blobs = len(registry.blob_gets())
    rows = database.execute("SELECT repository, tag, digest, size, updated, type FROM registry_images"
                            " ORDER BY repository, tag").fetchall()
    assert [(r[0], r[1]) for r in rows] == [("demo/app", "1"), ("demo/app", "2"), ("tools/t", "1")]
    assert all(r[2].startswith("sha256:") and r[3] > 1000 and r[4] == "2024-01-01T00:00:00Z" and r[5] == "third-party"
               for r in rows)
    # only the namespace asked for
    res = sync(database, client, namespaces=["tools"], now="2026-01-02T00:00:00Z")
    assert (res.repositories, res.unchanged) == (1, 1)
    assert len(registry.blob_gets()) == before_blobs  # an unchanged tag costs a HEAD, no download

    # change one tag, delete another, re-sync
    push(registry, tmp_path, app_image("changed"), "demo/app:1", "o3")
    client2 = RegistryClient.from_options(registry.host, registry.options())
    _, _, d2 = client2.manifest("demo/app", "2")
    client2.request("DELETE", f"/v2/demo/app/manifests/{d2}", "delete", scope="repository:demo/app:delete",
                    ok=(202,)).close()
    res = sync(database, client2, now="2026-01-03T00:00:00Z")
    assert (res.changed, res.removed, res.unchanged) == (1, 1, 1)
    changed = database.execute("SELECT digest != ?, changed_at FROM registry_images WHERE tag='1' AND"
                               " repository='demo/app'", [rows[0][2]]).fetchone()
    assert changed == (1, "2026-01-03T00:00:00Z")
    assert database.execute("SELECT removed_at FROM registry_images WHERE repository='demo/app' AND tag='2'"
                            ).fetchone()[0] == "2026-01-03T00:00:00Z"
    refs = [r for r, _ in synced_references(database)]
    assert refs == [f"{registry.host}/demo/app:1", f"{registry.host}/tools/t:1"]
    assert [r for r, _ in synced_references(database, latest_only=True)] == refs


def test_latest_only_view_keeps_the_newest_tag_of_each_repository(registry, tmp_path):
    from stowaway.ingest.db import connect
    from stowaway.ingest.sources.registry import RegistryClient
    from stowaway.ingest.sync import sync, synced_references

    older, newer = app_image("old"), app_image("new")
    push(registry, tmp_path, older, "demo/app:2.0", "o1")  # the higher tag is the older build
    built_later = newer.config
    newer.config = lambda diff_ids=None: {**built_later(diff_ids), "created": "2025-06-01T00:00:00Z"}
    push(registry, tmp_path, newer, "demo/app:1.0", "o2")
    database = connect(str(tmp_path / "s.db"))
    sync(database, RegistryClient.from_options(registry.host, registry.options()))
    assert [r for r, _ in synced_references(database, latest_only=True)] == [f"{registry.host}/demo/app:1.0"]
    assert len(synced_references(database)) == 2
    assert [r for r, _ in synced_references(database, updated_since="2025-01-01T00:00:00Z")] == \
        [f"{registry.host}/demo/app:1.0"]


def test_cli_sync_then_scan_all_synced_latest_only(registry, tmp_path):
    push(registry, tmp_path, app_image("1"), "demo/app:1", "o1")
    push(registry, tmp_path, app_image("t"), "tools/t:1", "ot")
    db = str(tmp_path / "cli.db")
    cli = [sys.executable, "-m", "stowaway.ingest.cli"]
    r = subprocess.run(cli + ["sync", registry.host, "--db", db, "--insecure", "--type", "shared"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "2 repositories, 2 tags (2 new" in r.stderr
    # the scan reaches the registry the way the sync did (--insecure remembered), with no flag or policy
    r = subprocess.run(cli + ["scan", "--all-synced", "--registry", registry.host, "--latest-only", "--db", db,
                              "--risk", "files", "--no-progress"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("scanned ") == 2
    # a registry as users type it: http:// says plain HTTP; a fresh database needs the scheme or --insecure
    fresh = str(tmp_path / "fresh.db")
    r = subprocess.run(cli + ["scan", f"registry:{registry.host}/demo/app:1", "--db", fresh, "--risk", "files",
                              "--no-progress"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "scan of" in r.stderr
    for args in (["--insecure"], []):
        prefix = "" if args else "http://"
        r = subprocess.run(cli + ["scan", f"registry:{prefix}{registry.host}/demo/app:1", "--db", fresh, "--risk",
                                  "files", "--no-progress", *args], capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        assert f"scanned {registry.host}/demo/app:1" in r.stderr
    r = subprocess.run(cli + ["sync", f"http://{registry.host}/", "--db", fresh], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0 and "plain HTTP" in r.stderr, r.stderr
    r = subprocess.run(cli + ["tasks", "--db", db, "--json"], capture_output=True, text=True, timeout=60)
    task = json.loads(r.stdout.splitlines()[0])
    assert (task["kind"], task["state"], task["total"], task["done"], task["progress"]) == ("manual", "done", 2, 2, 1.0)


@corpus
@pytest.mark.corpus
def test_corpus_through_the_registry_passes_check_report(registry, tmp_path):
    """Acceptance: the three corpus images pushed, synced, scanned through registry:, checked like the archive."""
    from stowaway.ingest.db import connect
    from stowaway.ingest.sources.registry import RegistryClient
    from stowaway.ingest.sync import sync, synced_references

    for ref in ("corpus/debian:bullseye-base", "corpus/shop:1.0", "corpus/tools:1.0"):
        registry.push(f"oci:{CORPUS / 'oci'}:{ref}", ref)
    database = connect(str(tmp_path / "c.db"))
    sync(database, RegistryClient.from_options(registry.host, registry.options()))
    sources = [f"registry:{r}" for r, _ in synced_references(database)]
    assert len(sources) == 3
    _, out = scan(tmp_path / "c.db", sources, registry.options())
    assert [o.status for o in out] == ["done"] * 3, out
    archive, _ = scan(tmp_path / "a.db", [f"oci:{CORPUS / 'oci'}"], {})

    def check(database, ref):
        path = tmp_path / "r.json"
        path.write_text(json.dumps(report_of(database, ref)))
        r = subprocess.run([sys.executable, str(CORPUS / "check_report.py"), str(path), "--image", "corpus/shop:1.0",
                            "--only", "os,files,layers"], capture_output=True, text=True)
        return r.returncode, r.stdout

    via_registry = check(database, f"{registry.host}/corpus/shop:1.0")
    assert via_registry == check(archive, "corpus/shop:1.0")
    saved, _ = scan(tmp_path / "s.db", [f"docker-archive:{CORPUS / 'shop-1.0.docker.tar.gz'}"], {})
    assert via_registry == check(saved, "corpus/shop:1.0")  # and as on the docker save archive
    assert via_registry[0] == 0, via_registry[1]
    gets = len(registry.blob_gets())
    _, again = scan(tmp_path / "c.db", sources, registry.options())
    assert [(o.status, o.layers_read) for o in again] == [("done", 0)] * 3
    configs = {r[0].rsplit(":", 1)[1] for r in database.execute("SELECT config_digest FROM images")}
    layer_gets = [g for g in registry.blob_gets()[gets:] if g.rsplit(":", 1)[1] not in configs]
    assert layer_gets == []


def test_docker_v2_manifest_and_manifest_list_media_types(registry, tmp_path):
    img = app_image()
    img.write_oci_layout(tmp_path / "one", ref="x")
    registry.push(f"oci:{tmp_path / 'one'}:x", "demo/v2:1", manifest_format="v2s2")
    amd = ImageBuilder().layer({"etc/os-release": "ID=alpine\nVERSION_ID=3.19.1\n", "arch": "amd64"})
    arm = ImageBuilder().layer({"etc/os-release": "ID=alpine\nVERSION_ID=3.19.1\n", "arch": "arm64"})
    ImageBuilder().write_oci_layout(tmp_path / "multi", ref="m", platforms={"linux/amd64": amd, "linux/arm64": arm})
    registry.push(f"oci:{tmp_path / 'multi'}:m", "demo/v2list:1", all_platforms=True, manifest_format="v2s2")
    sources = [f"registry:{registry.host}/demo/v2:1", f"registry:{registry.host}/demo/v2list:1"]
    database, out = scan(tmp_path / "r.db", sources, registry.options())
    assert all(o.status == "done" for o in out), out
    rows = dict(database.execute("SELECT reference || ' ' || platform, media_type FROM images").fetchall())
    assert rows[f"{registry.host}/demo/v2:1 linux/amd64"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert file_view(database, f"{registry.host}/demo/v2:1") == file_view(
        scan(tmp_path / "l.db", [f"oci:{tmp_path / 'one'}"], {})[0], "x")
    index = database.execute("SELECT DISTINCT index_digest FROM images WHERE reference LIKE '%v2list%'").fetchall()
    assert len(index) == 1 and index[0][0].startswith("sha256:")
    assert sorted(k.split()[1] for k in rows if "v2list" in k) == ["linux/amd64", "linux/arm64"]


def test_cli_rescan_through_tls_and_htpasswd_asks_the_digest_only_and_loads_no_analyzer(tmp_path):
    """`stowaway scan registry:...` twice, as CI runs it (TLS with a CA, htpasswd, the password from the
    environment): the second asks the manifest's digest by HEAD (challenged, then answered, on one
    connection), downloads nothing, says so and copies the results forward, and its process loads neither
    an analyzer, the layer walk nor `requests`; a new image under the tag is seen by the same HEAD and
    scanned anew."""
    import os

    from cli_modules import LAYER_READING, heavy, run_recording_modules

    reg = Registry(tmp_path / "reg", auth=("scanner", "s3cret-pass"), tls=True)
    try:
        push(reg, tmp_path, app_image(), "ci/app:1")
        env = {**os.environ, "STOWAWAY_REGISTRY_PASSWORD": "s3cret-pass", "DOCKER_CONFIG": str(tmp_path / "none")}
        args = ("scan", f"registry:{reg.host}/ci/app:1", "--ca", reg.ca, "--username", "scanner", "--db",
                str(tmp_path / "ci.db"), "--no-progress")
        first, _ = run_recording_modules(tmp_path, *args, env=env)
        assert first.returncode == 0, first.stderr
        gets, heads, blobs, peers = manifest_gets(reg), len(manifest_heads(reg)), len(reg.blob_gets()), len(head_peers(reg))
        again, modules = run_recording_modules(tmp_path, *args, env=env)
        assert again.returncode == 0, again.stderr
        assert f"scanned {reg.host}/ci/app:1 (scan 2: 0 layers read, 2 cached; unchanged since scan 1 (manifest" \
               " digest by HEAD, nothing downloaded), its results copied forward)" in again.stderr, again.stderr
        assert heavy(modules, ("requests", "urllib3", "tarfile", "stowaway.ingest.sources.archive")) == []
        assert [m for m in modules if m in LAYER_READING] == []
        assert manifest_gets(reg) == gets and len(reg.blob_gets()) == blobs
        assert manifest_heads(reg)[heads:] == [("/v2/ci/app/manifests/1", "401"), ("/v2/ci/app/manifests/1", "200")]
        assert len(set(head_peers(reg)[peers:])) == 1  # one connection: one TLS handshake
        push(reg, tmp_path, app_image("2"), "ci/app:1", name="oci2")
        changed, _ = run_recording_modules(tmp_path, *args, env=env)
        assert changed.returncode == 0 and "copied forward" not in changed.stderr, changed.stderr
        assert f"scanned {reg.host}/ci/app:1 (scan 3: 1 layers read, 1 cached" in changed.stderr, changed.stderr
        assert manifest_gets(reg) > gets  # the moved tag was seen by its HEAD, then read on
    finally:
        reg.stop()


def test_the_rescan_head_trusts_what_the_full_client_trusts(tmp_path, monkeypatch):
    """The HEAD a rescan asks (http.client) verifies TLS as RegistryClient (requests) does: the CA given, else
    REQUESTS_CA_BUNDLE, else certifi's bundle (which does not know this registry's CA); a CA given wins over
    the environment; `insecure` with https skips verification, and without a scheme is left to the full
    client, which finds out whether the registry speaks TLS."""
    from registry_server import make_ca_and_cert

    from stowaway.ingest.sources.registry import head_digest

    reg = Registry(tmp_path / "reg", tls=True)
    try:
        push(reg, tmp_path, app_image(), "tls/app:1")
        where = f"{reg.host}/tls/app:1"
        monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
        monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
        found = head_digest(where, ca=reg.ca)
        assert found is not None and found[1].startswith("sha256:")
        assert head_digest(where) is None  # certifi's bundle: not trusted
        (tmp_path / "other").mkdir()
        other_ca = make_ca_and_cert(tmp_path / "other")[0]
        assert head_digest(where, ca=other_ca) is None
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", reg.ca)
        assert head_digest(where) == found
        assert head_digest(where, ca=other_ca) is None  # the CA given wins, as requests' verify= does
        monkeypatch.delenv("REQUESTS_CA_BUNDLE")
        assert head_digest(where, insecure=True, scheme="https") == found
        assert head_digest(where, insecure=True) is None
    finally:
        reg.stop()
