"""A rescan asks a registry whether the tag still names the manifest it scanned by one HEAD of the manifest
(ingest/sources/registry.py, `head_digest`): the Docker-Content-Digest it answers, through the standard
library's HTTP client so that the rescan's process does not load `requests`. Whatever that way cannot answer
as the full client would is asked again by a manifest GET; a digest the database does not hold is read on.
Served by a small http.server on 127.0.0.1 (tests/ingest/registry_server.py); the real docker-registry with
TLS and htpasswd is in test_registry.py."""
import pytest
from registry_server import require_bearer, serve_image, server, small_image  # noqa: F401  (fixture)

image = small_image


def scan(tmp_path, source, **options):
    from stowaway.ingest.db import connect
    from stowaway.ingest.pipeline import Scanner

    database = connect(str(tmp_path / "h.db"))
    opts = {"scheme": "http", "retries": 1, "backoff": 0.01, "timeout": 5, **options}
    out = Scanner(database, {"source_options": opts}, progress=False, risks=["files"]).run([source])
    database.conn.close()
    assert [o.status for o in out] == ["done"], out
    return out[0]


def scanned_twice(tmp_path, server, source, **options):
    """The image scanned, then scanned again (the first scan of a database made its advisory tables, so the
    second evaluates again): a third scan is a rescan that may copy its results forward. The hits so far."""
    scan(tmp_path, source, **options)
    scan(tmp_path, source, **options)
    return len(server.hits)


def test_an_unchanged_tag_is_known_by_one_head(tmp_path, server):
    serve_image(server, "demo/app", "1", image())
    source = f"registry:{server.host}/demo/app:1"
    seen = scanned_twice(tmp_path, server, source)
    again = scan(tmp_path, source)
    assert "(manifest digest by HEAD, nothing downloaded)" in again.reused, again
    assert server.hits[seen:] == ["HEAD /v2/demo/app/manifests/1"]


def test_a_moved_tag_is_seen_by_the_head_and_read_on(tmp_path, server):
    serve_image(server, "demo/app", "1", image("one"))
    source = f"registry:{server.host}/demo/app:1"
    scanned_twice(tmp_path, server, source)
    serve_image(server, "demo/app", "1", image("two"))  # the tag now names another manifest
    seen = len(server.hits)
    moved = scan(tmp_path, source)
    assert moved.reused == "" and (moved.layers_read, moved.layers_cached) == (1, 0), moved
    assert server.hits[seen] == "HEAD /v2/demo/app/manifests/1"
    assert "GET /v2/demo/app/manifests/1" in server.hits[seen:]  # read on: the new manifest and its blobs
    from stowaway.ingest.db import connect

    database = connect(str(tmp_path / "h.db"))
    digests = {r[0] for r in database.execute("SELECT manifest_digest FROM images")}
    assert len(digests) == 2


def test_a_head_without_a_digest_falls_back_to_the_manifest_get(tmp_path, server):
    serve_image(server, "demo/app", "1", image())
    source = f"registry:{server.host}/demo/app:1"
    seen = scanned_twice(tmp_path, server, source)
    good = server.routes["/v2/demo/app/manifests/1"]

    def no_digest_on_head(req):
        status, headers, body = good(req)
        if req.command == "HEAD":
            headers = {k: v for k, v in headers.items() if k != "Docker-Content-Digest"}
        return status, headers, body
    server.routes["/v2/demo/app/manifests/1"] = no_digest_on_head
    again = scan(tmp_path, source)
    assert "(manifest read)" in again.reused, again  # the GET's body is hashed instead: still unchanged
    assert server.hits[seen:] == ["HEAD /v2/demo/app/manifests/1", "GET /v2/demo/app/manifests/1"]


def test_the_head_follows_a_bearer_challenge(tmp_path, server):
    """Docker Hub / Harbor style: 401 with a Bearer realm; the token service takes the credentials as Basic."""
    serve_image(server, "team/app", "1", image())
    asked = require_bearer(server, "team/app")
    source = f"registry:{server.host}/team/app:1"
    seen = scanned_twice(tmp_path, server, source, username="u", password="p")
    again = scan(tmp_path, source, username="u", password="p")
    assert "(manifest digest by HEAD, nothing downloaded)" in again.reused, again
    hits = [h.split("?")[0] for h in server.hits[seen:]]
    assert hits == ["HEAD /v2/team/app/manifests/1", "GET /token", "HEAD /v2/team/app/manifests/1"]
    assert "scope=repository%3Ateam%2Fapp%3Apull" in asked[-1][0] and "service=reg" in asked[-1][0]
    # wrong credentials: the HEAD cannot answer; the full client then says why the image cannot be scanned
    from stowaway.ingest.db import connect
    from stowaway.ingest.pipeline import Scanner

    database = connect(str(tmp_path / "h.db"))
    out = Scanner(database, {"source_options": {"scheme": "http", "retries": 0, "username": "u", "password": "x"}},
                  progress=False, risks=["files"]).run([source])
    assert out[0].status == "failed" and "token service" in out[0].error and "401" in out[0].error, out


@pytest.mark.parametrize("variable", ["HTTPS_PROXY", "http_proxy", "ALL_PROXY"])
def test_a_proxy_in_the_environment_leaves_the_question_to_the_full_client(tmp_path, server, monkeypatch, variable):
    """requests honours the proxy variables (and no_proxy); the quick HEAD does not try to: it declines."""
    from stowaway.ingest.sources.registry import head_digest

    serve_image(server, "demo/app", "1", image())
    assert head_digest(f"{server.host}/demo/app:1", scheme="http")[1].startswith("sha256:")
    monkeypatch.setenv(variable, "http://127.0.0.1:9")
    before = len(server.hits)
    assert head_digest(f"{server.host}/demo/app:1", scheme="http") is None
    assert len(server.hits) == before


def test_a_netrc_file_leaves_the_question_to_the_full_client(tmp_path, server, monkeypatch):
    """requests sends a netrc file's credentials; the quick HEAD does not read it: it declines."""
    from stowaway.ingest.sources.registry import head_digest

    serve_image(server, "demo/app", "1", image())
    monkeypatch.setenv("HOME", str(tmp_path))
    assert head_digest(f"{server.host}/demo/app:1", scheme="http") is not None
    (tmp_path / ".netrc").write_text("machine 127.0.0.1 login u password p\n")
    assert head_digest(f"{server.host}/demo/app:1", scheme="http") is None


def test_an_index_or_a_redirect_goes_the_full_way(tmp_path, server):
    from stowaway.ingest.sources.registry import INDEX_TYPES, head_digest

    serve_image(server, "demo/app", "1", image())
    server.routes["/v2/demo/app/manifests/moved"] = lambda req: (307, {"Location": "/v2/demo/app/manifests/1"}, b"")
    assert head_digest(f"{server.host}/demo/app:moved", scheme="http") is None  # requests would follow it
    server.routes["/v2/demo/app/manifests/idx"] = lambda req: (
        200, {"Content-Type": INDEX_TYPES[0], "Docker-Content-Digest": "sha256:" + "ab" * 32}, b"")
    assert head_digest(f"{server.host}/demo/app:idx", scheme="http")[2] == INDEX_TYPES[0]
    server.routes["/v2/demo/app/manifests/odd"] = lambda req: (
        200, {"Content-Type": "text/html", "Docker-Content-Digest": "sha256:" + "ab" * 32}, b"")
    assert head_digest(f"{server.host}/demo/app:odd", scheme="http") is None


def test_a_reference_pinned_by_digest_is_not_asked_again(tmp_path, server):
    """A manifest digest names its content: the image scanned under that reference is the same image, and
    the rescan sends no request at all."""
    _, digest = serve_image(server, "demo/app", "1", image())
    source = f"registry:{server.host}/demo/app@{digest}"
    seen = scanned_twice(tmp_path, server, source)
    again = scan(tmp_path, source)
    assert "(pinned by digest, nothing asked of the registry)" in again.reused, again
    assert server.hits[seen:] == []


def test_the_head_leaves_credential_warnings_to_the_full_client(tmp_path, server, monkeypatch, caplog):
    """A Docker config that keeps credentials in a helper is warned about by RegistryClient, once per client;
    the quick HEAD reads the same config silently (when it cannot answer, the full client warns)."""
    import json
    import logging

    from stowaway.ingest.sources.registry import credentials_for, head_digest

    serve_image(server, "demo/app", "1", image())
    (tmp_path / "docker").mkdir()
    (tmp_path / "docker" / "config.json").write_text(json.dumps({"credsStore": "desktop"}))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    with caplog.at_level(logging.WARNING, logger="stowaway.registry"):
        assert head_digest(f"{server.host}/demo/app:1", scheme="http") is not None
        assert [r for r in caplog.records if "credential helpers" in r.getMessage()] == []
        assert credentials_for(server.host, {}) is None
        assert len([r for r in caplog.records if "credential helpers" in r.getMessage()]) == 1


def test_a_head_that_is_not_answered_in_time_is_left_to_the_full_client(tmp_path, server):
    import time

    from stowaway.ingest.sources.registry import head_digest

    serve_image(server, "demo/app", "1", image())
    good = server.routes["/v2/demo/app/manifests/1"]

    def slow_head(req):
        if req.command == "HEAD":
            time.sleep(2)
        return good(req)
    server.routes["/v2/demo/app/manifests/1"] = slow_head
    source = f"registry:{server.host}/demo/app:1"
    assert head_digest(source.removeprefix("registry:"), scheme="http", timeout=0.5) is None
    seen = scanned_twice(tmp_path, server, source, timeout=0.5)
    again = scan(tmp_path, source, timeout=0.5)
    assert "(manifest read)" in again.reused, again  # the GET answered at once: still known unchanged
    assert server.hits[seen:] == ["HEAD /v2/demo/app/manifests/1", "GET /v2/demo/app/manifests/1"]
