"""Registries that misbehave in ways a real one will not on demand: one clear failed scan per image, and
the next image still scans. Served by a small http.server on 127.0.0.1."""
import hashlib
import json
import time

import pytest
from registry_server import require_bearer, serve_image, server, small_image  # noqa: F401  (fixture)

image = small_image


def scan_all(tmp_path, sources, **options):
    from stowaway.ingest.db import connect
    from stowaway.ingest.pipeline import Scanner

    database = connect(str(tmp_path / "e.db"))
    opts = {"scheme": "http", "retries": 1, "backoff": 0.01, "timeout": 5, **options}
    return database, Scanner(database, {"source_options": opts}, progress=False, risks=["files"]).run(sources)


def always(status, headers=None, body=b""):
    return lambda req: (status, headers or {}, body)


def break_manifest(server, repo, how):
    """Replaces the manifest route of demo/bad:1 with a misbehaving one."""
    path = f"/v2/{repo}/manifests/1"
    if how == "redirect-loop":
        server.routes[path] = always(302, {"Location": path})
    elif how == "slow":
        good = server.routes[path]

        def slow(req):
            time.sleep(1.5)
            return good(req)
        server.routes[path] = slow
    elif how == "huge":
        server.routes[path] = always(200, {"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
                                     b" " * 70000)
    else:
        server.routes[path] = always(how, {"Content-Type": "application/json"},
                                     b'{"errors":[{"code":"DENIED","message":"go away"}]}')


@pytest.mark.parametrize("how, expected", [
    (401, "authentication required"),
    (403, "403 (access denied): DENIED go away"),
    (404, "404 (not found)"),
    (429, "429 (rate limited"),
    (500, "500 (error)"),
    ("redirect-loop", "too many redirects"),
    ("slow", "timed out"),
    ("huge", "larger than the 65536-byte limit"),
])
def test_a_bad_answer_fails_that_image_only(tmp_path, server, how, expected):
    serve_image(server, "demo/bad", "1", image("bad"))
    serve_image(server, "demo/good", "1", image("good"))
    break_manifest(server, "demo/bad", how)
    database, out = scan_all(tmp_path, [f"registry:{server.host}/demo/bad:1", f"registry:{server.host}/demo/good:1"],
                             timeout=0.5, retries=0 if how == "slow" else 1, max_manifest=65536)
    assert [o.status for o in out] == ["failed", "done"], out
    assert expected in out[0].error
    assert out[0].error.startswith(f"registry:{server.host}/demo/bad:1") or f"{server.host}/demo/bad" in out[0].error
    rows = database.execute("SELECT reference, status, error FROM scans ORDER BY id").fetchall()
    assert [r[1] for r in rows] == ["failed", "done"] and expected in rows[0][2]
    if how == 429:
        assert server.hits.count("GET /v2/demo/bad/manifests/1") == 2  # retried once, then gave up


def test_a_layer_whose_content_does_not_match_its_digest_is_refused(tmp_path, server):
    blobs, _ = serve_image(server, "demo/bad", "1", image("bad"))
    serve_image(server, "demo/good", "1", image("good"))
    layer = next(d for d, b in blobs.items() if b[:2] == b"\x1f\x8b")
    server.routes[f"/v2/demo/bad/blobs/{layer}"] = always(200, {}, image("tampered").oci_blobs()[0][
        next(d for d, b in image("tampered").oci_blobs()[0].items() if b[:2] == b"\x1f\x8b")])
    database, out = scan_all(tmp_path, [f"registry:{server.host}/demo/bad:1", f"registry:{server.host}/demo/good:1"])
    assert [o.status for o in out] == ["failed", "done"]
    assert "digest mismatch" in out[0].error
    assert database.execute("SELECT COUNT(*) FROM layers").fetchone()[0] == 1  # nothing of the bad layer kept


def test_a_config_or_manifest_that_does_not_match_its_digest_is_refused(tmp_path, server):
    blobs, mdigest = serve_image(server, "demo/bad", "1", image("bad"))
    config = json.loads(blobs[mdigest])["config"]["digest"]
    server.routes[f"/v2/demo/bad/blobs/{config}"] = always(200, {}, b'{"rootfs": {"diff_ids": []}}')
    _, out = scan_all(tmp_path, [f"registry:{server.host}/demo/bad:1"])
    assert out[0].status == "failed" and "does not match its digest" in out[0].error
    # asked by digest, answered with other bytes
    other = "sha256:" + hashlib.sha256(b"something else").hexdigest()
    server.routes[f"/v2/demo/bad/manifests/{other}"] = server.routes["/v2/demo/bad/manifests/1"]
    _, out = scan_all(tmp_path, [f"registry:{server.host}/demo/bad@{other}"])
    assert out[0].status == "failed" and "does not match the digest asked for" in out[0].error


def test_retries_honour_retry_after_then_succeed(tmp_path, server):
    from stowaway.ingest.sources.registry import RegistryClient

    serve_image(server, "demo/app", "1", image())
    good = server.routes["/v2/demo/app/manifests/1"]
    answers = iter([(429, {"Retry-After": "7"}, b""), (503, {}, b"")])
    server.routes["/v2/demo/app/manifests/1"] = lambda req: next(answers, None) or good(req)
    slept = []
    client = RegistryClient(server.host, scheme="http", retries=3, backoff=0.25, sleep=slept.append)
    media, body, digest = client.manifest("demo/app", "1")
    assert media == "application/vnd.oci.image.manifest.v1+json" and digest.startswith("sha256:")
    assert slept == [7.0, 0.5]  # Retry-After first, then exponential backoff
    # and through the pipeline, a transient 503 is invisible
    answers = iter([(503, {}, b"")])
    server.routes["/v2/demo/app/manifests/1"] = lambda req: next(answers, None) or good(req)
    _, out = scan_all(tmp_path, [f"registry:{server.host}/demo/app:1"])
    assert out[0].status == "done", out


def test_bearer_token_challenge_flow(tmp_path, server):
    """Docker Hub / Harbor style: 401 with a Bearer realm; the token service takes basic credentials."""
    serve_image(server, "team/app", "1", image())
    seen = require_bearer(server, "team/app")
    _, out = scan_all(tmp_path, [f"registry:{server.host}/team/app:1"], username="u", password="p")
    assert out[0].status == "done", out
    assert "scope=repository%3Ateam%2Fapp%3Apull" in seen[0][0] and "service=reg" in seen[0][0]
    _, out = scan_all(tmp_path, [f"registry:{server.host}/team/app:1"], username="u", password="wrong")
    assert out[0].status == "failed" and "token service" in out[0].error and "401" in out[0].error


def test_a_challenge_or_a_retry_reuses_the_connection(server):
    """A 401 challenge (Basic, with the small JSON body docker-registry sends) and a 503 before a retry are read
    to their end, so the next request goes on the same connection: one TCP connect (and, over TLS, one
    handshake) for the manifest a rescan asks for, not two."""
    from stowaway.ingest.sources.registry import RegistryClient

    serve_image(server, "team/app", "1", image())
    good = server.routes["/v2/team/app/manifests/1"]
    challenge = (401, {"WWW-Authenticate": 'Basic realm="r"', "Content-Type": "application/json"},
                 b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}')
    answers = iter([(503, {}, b"busy")])
    server.routes["/v2/team/app/manifests/1"] = lambda req: (
        challenge if req.headers.get("Authorization") != "Basic dTpw" else next(answers, None) or good(req))
    connections = []
    accept = server.get_request

    def counted():
        got = accept()
        connections.append(got[1])
        return got
    server.get_request = counted
    client = RegistryClient(server.host, "u", "p", scheme="http", retries=2, backoff=0.01, sleep=lambda s: None)
    media, _, digest = client.manifest("team/app", "1")
    assert digest.startswith("sha256:") and client.requests == 3  # challenged, retried, answered
    assert len(connections) == 1


def test_per_host_policy_settings_and_credentials_are_used_but_never_stored(tmp_path, server):
    from stowaway.ingest.db import connect
    from stowaway.ingest.pipeline import Scanner

    serve_image(server, "team/app", "1", image())
    good = server.routes["/v2/team/app/manifests/1"]
    server.routes["/v2/team/app/manifests/1"] = lambda req: good(req) if req.headers.get("Authorization") == \
        "Basic dTpwYXNzLWluLXBvbGljeQ==" else (401, {"WWW-Authenticate": 'Basic realm="r"'}, b"")
    database = connect(str(tmp_path / "p.db"))
    policy = {"registries": {server.host: {"scheme": "http", "username": "u", "password": "pass-in-policy"}}}
    out = Scanner(database, policy, progress=False, risks=["files"]).run([f"registry:{server.host}/team/app:1"])
    assert out[0].status == "done", out
    recorded = database.execute("SELECT policy FROM scans").fetchone()[0]
    assert server.host in recorded and "pass-in-policy" not in "\n".join(database.conn.iterdump())


def test_unparseable_references_fail_clearly(tmp_path):
    _, out = scan_all(tmp_path, ["registry:noslash", "registry:host.example/UPPER:1"])
    assert [o.status for o in out] == ["failed", "failed"]
    assert "expected HOST/REPOSITORY" in out[0].error and "invalid repository name" in out[1].error


def test_credentials_order_and_credential_helpers_are_skipped_with_a_warning(tmp_path, monkeypatch):
    import base64
    import logging

    from stowaway.ingest.sources.registry import credentials_for

    conf = tmp_path / "docker"
    conf.mkdir()
    (conf / "config.json").write_text(json.dumps({
        "auths": {"https://reg.example.com": {"auth": base64.b64encode(b"cfg-user:cfg-pass").decode()}},
        "credHelpers": {"helper.example.com": "ecr-login"}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(conf))
    for var in ("STOWAWAY_REGISTRY_USER", "STOWAWAY_REGISTRY_PASSWORD"):
        monkeypatch.delenv(var, raising=False)
    assert credentials_for("reg.example.com", {}) == ("cfg-user", "cfg-pass")
    warnings = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: warnings.append(record.getMessage())
    logging.getLogger("stowaway.registry").addHandler(handler)
    try:
        assert credentials_for("helper.example.com", {}) is None
    finally:
        logging.getLogger("stowaway.registry").removeHandler(handler)
    assert any("credential helpers are not supported" in w for w in warnings)
    monkeypatch.setenv("STOWAWAY_REGISTRY_USER", "env-user")
    monkeypatch.setenv("STOWAWAY_REGISTRY_PASSWORD", "env-pass")
    assert credentials_for("reg.example.com", {}) == ("env-user", "env-pass")
    monkeypatch.setenv("STOWAWAY_REGISTRY_REG_EXAMPLE_COM_USER", "host-user")
    monkeypatch.setenv("STOWAWAY_REGISTRY_REG_EXAMPLE_COM_PASSWORD", "host-pass")
    assert credentials_for("reg.example.com", {}) == ("host-user", "host-pass")
    assert credentials_for("reg.example.com", {"registries": {"reg.example.com": {"username": "cli", "password": "p"}}}) \
        == ("cli", "p")


def test_reference_parsing():
    from stowaway.ingest.sources.registry import Reference, parse_reference

    assert parse_reference("127.0.0.1:5000/a/b:1.0") == Reference("127.0.0.1:5000", "a/b", "1.0", "")
    assert parse_reference("reg.example.com/app") == Reference("reg.example.com", "app", "latest", "")
    d = "sha256:" + "a" * 64
    assert parse_reference(f"localhost/app@{d}") == Reference("localhost", "app", "", d)
    assert str(parse_reference(f"localhost/app@{d}")) == f"localhost/app@{d}"
    assert parse_reference("docker.io/alpine:3.19") == Reference("registry-1.docker.io", "library/alpine", "3.19", "")
    for bad in ("app:1", "reg.example.com/", "reg.example.com/app@sha256:xyz"):
        with pytest.raises(Exception):
            parse_reference(bad)
