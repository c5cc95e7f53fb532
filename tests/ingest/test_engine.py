"""`docker:` sources against a real dockerd started here (vfs storage, no networking), images loaded into
it with the SDK. The engine scan stores what the archive scan stores."""
import os
import shutil
import subprocess
import sys
import tempfile
import time

import pytest
from imagebuilder import File, ImageBuilder, Symlink

DOCKERD = shutil.which("dockerd")
pytestmark = [pytest.mark.docker,
              pytest.mark.skipif(not DOCKERD, reason="needs dockerd (apt-get install docker.io)")]


@pytest.fixture(scope="module")
def engine():
    import docker

    root = tempfile.mkdtemp(prefix="swd", dir="/tmp")  # short: unix socket paths are limited to 108 bytes
    sock = f"unix://{root}/docker.sock"
    log = open(os.path.join(root, "dockerd.log"), "wb")
    proc = subprocess.Popen([DOCKERD, "--iptables=false", "--ip6tables=false", "--bridge=none", "--storage-driver=vfs",
                             "--data-root", f"{root}/data", "--exec-root", f"{root}/exec", "--pidfile",
                             f"{root}/docker.pid", "-H", sock], stdout=log, stderr=subprocess.STDOUT)
    client = None
    deadline = time.time() + 60
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.skip("dockerd did not start: " + open(os.path.join(root, "dockerd.log")).read()[-500:])
        try:
            client = docker.DockerClient(base_url=sock, timeout=60)
            client.ping()
            break
        except Exception:
            time.sleep(0.3)
    else:
        proc.kill()
        pytest.skip("dockerd did not answer within 60 s")
    yield client, sock
    client.close()
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()
    shutil.rmtree(root, ignore_errors=True)


def image(n) -> ImageBuilder:
    img = ImageBuilder()
    img.layer({"etc/os-release": 'ID=debian\nVERSION_ID="11"\n', "bin/busybox": File(b"\x7fELF" + b"b" * 900, mode=0o755),
               "bin/sh": Symlink("busybox")}, created_by="ADD rootfs /")
    img.layer({f"app/{n}.txt": "x" * (50 + n)}, created_by=f"COPY {n}")
    return img


def load(client, tmp_path, img, ref):
    path = img.write_docker_archive(tmp_path / f"{ref.replace('/', '_')}.tar", ref=ref)
    with open(path, "rb") as fh:
        client.images.load(fh.read())


def scan(tmp_path, name, sources, **options):
    from stowaway.ingest.db import connect
    from stowaway.ingest.pipeline import Scanner

    database = connect(str(tmp_path / f"{name}.db"))
    return database, Scanner(database, {"source_options": options}, progress=False, risks=["files", "software"]).run(
        sources)


def files(database, ref):
    from stowaway.ingest.report import build

    rep = build(database, ref)
    return rep["image"]["os"], rep["files"]["total_files"], rep["files"]["total_size"], rep["files"]["largest"]


def test_engine_image_scans_like_its_archive(engine, tmp_path):
    client, sock = engine
    img = image(1)
    load(client, tmp_path, img, "demo/engine:1")
    database, out = scan(tmp_path, "e", ["docker:demo/engine:1"], docker_host=sock)
    assert [(o.reference, o.status) for o in out] == [("demo/engine:1", "done")], out
    archive = img.write_docker_archive(tmp_path / "a.tar.gz", ref="demo/engine:1", compress_with="gzip")
    local, _ = scan(tmp_path, "a", [f"docker-archive:{archive}"])
    assert files(database, "demo/engine:1") == files(local, "demo/engine:1")
    assert files(database, "demo/engine:1")[0]["family"] == "debian"
    row = database.execute("SELECT source, config_digest FROM images").fetchone()
    assert row[0] == "docker:demo/engine:1"
    assert row[1] == client.images.get("demo/engine:1").id


def test_every_local_image_and_a_missing_one(engine, tmp_path, monkeypatch):
    client, sock = engine
    for n in (2, 3):
        load(client, tmp_path, image(n), f"demo/all:{n}")
    monkeypatch.setenv("DOCKER_HOST", sock)  # as a podman socket would be given
    database, out = scan(tmp_path, "all", ["docker:*", "docker:demo/missing:1"])
    refs = {o.reference: o.status for o in out}
    assert refs["demo/all:2"] == refs["demo/all:3"] == "done"
    assert refs["docker:demo/missing:1"] == "failed"
    assert "no such image in the Docker engine" in next(o.error for o in out if o.status == "failed")
    assert set(refs) >= {t for i in client.images.list() for t in i.tags[:1]}


def test_unreachable_engine_is_one_clear_error(tmp_path):
    _, out = scan(tmp_path, "x", ["docker:demo/app:1"], docker_host="unix:///nonexistent/docker.sock")
    assert out[0].status == "failed" and "Docker engine" in out[0].error


def test_cli_scans_from_the_engine(engine, tmp_path):
    client, sock = engine
    load(client, tmp_path, image(4), "demo/cli:4")
    env = {**os.environ, "DOCKER_HOST": sock}
    r = subprocess.run([sys.executable, "-m", "stowaway.ingest.cli", "scan", "docker:demo/cli:4", "--db",
                        str(tmp_path / "c.db"), "--risk", "files", "--no-progress"], capture_output=True, text=True,
                       timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    assert "scanned demo/cli:4" in r.stderr


def test_an_unchanged_engine_image_is_known_by_its_id_without_a_save(engine, tmp_path):
    client, sock = engine
    load(client, tmp_path, image(5), "demo/again:5")
    database, first = scan(tmp_path, "r", ["docker:demo/again:5"], docker_host=sock)
    database, again = scan(tmp_path, "r", ["docker:demo/again:5"], docker_host=sock)
    assert first[0].status == again[0].status == "done"
    assert again[0].layers_read == 0 and "(image id from the engine)" in again[0].reused, again
    # another image under the same tag: another id, scanned in full
    load(client, tmp_path, image(6), "demo/again:5")
    database, other = scan(tmp_path, "r", ["docker:demo/again:5"], docker_host=sock)
    assert other[0].status == "done" and not other[0].reused and other[0].layers_read > 0
    assert database.execute("SELECT config_digest FROM images ORDER BY id DESC").fetchone()[0] == \
        client.images.get("demo/again:5").id


def test_cli_rescan_of_an_engine_image_asks_the_socket_and_loads_no_sdk(engine, tmp_path):
    """`stowaway scan docker:REF` twice: the second knows the image by its id from two GETs on the engine's
    socket, says so, and its process imports neither the Docker SDK nor an analyzer nor the layer walk."""
    from cli_modules import LAYER_READING, heavy, run_recording_modules

    client, sock = engine
    load(client, tmp_path, image(7), "demo/cli:7")
    env = {**os.environ, "DOCKER_HOST": sock}
    args = ("scan", "docker:demo/cli:7", "--db", str(tmp_path / "cli.db"), "--no-progress")
    first, loaded = run_recording_modules(tmp_path, *args, env=env)
    assert first.returncode == 0, first.stderr
    again, modules = run_recording_modules(tmp_path, *args, env=env)
    assert again.returncode == 0, again.stderr
    assert ("scanned demo/cli:7 (scan 2: 0 layers read, 2 cached; unchanged since scan 1 (image id from the"
            " engine), its results copied forward)") in again.stderr, again.stderr
    assert heavy(modules, ("requests",)) == [] and [m for m in modules if m in LAYER_READING] == []
