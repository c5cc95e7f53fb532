"""Hostile and broken images: each gets one clear error or a recorded warning, the batch goes on,
and nothing is written anywhere but the database."""
import io
import os
import tarfile

import pytest
from conftest import report_of
from imagebuilder import Device, File, Hardlink, ImageBuilder, Symlink, layer_tar

GOOD = ImageBuilder().layer({"etc/os-release": "ID=alpine\nVERSION_ID=3.18.4\n", "bin/true": File(b"ok", mode=0o755)})


def raw_tar(members) -> bytes:
    """A tar with names tarfile's builder would refuse or rewrite: [(TarInfo kwargs, data)]."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
        for fields, data in members:
            ti = tarfile.TarInfo(fields.pop("name"))
            for k, v in fields.items():
                setattr(ti, k, v)
            ti.size = len(data or b"")
            tf.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def scan_with_good(scan, tmp_path, bad_source, **kw):
    good = GOOD.write_docker_archive(tmp_path / "good.tar", ref="good:1")
    database, outcomes = scan(bad_source, f"docker-archive:{good}", **kw)
    assert outcomes[-1].reference == "good:1" and outcomes[-1].status == "done", "the batch must go on"
    return database, outcomes[:-1]


def failed_with(outcomes, needle):
    assert len(outcomes) == 1, outcomes
    o = outcomes[0]
    assert o.status == "failed"
    assert needle in o.error, o.error
    assert "\n" not in o.error
    return o


def test_names_that_climb_out_or_are_absolute_or_absurdly_long(tmp_path, scan):
    img = ImageBuilder().raw_layer(raw_tar([
        ({"name": "../../escape.txt"}, b"evil"),
        ({"name": "ok/../../../x"}, b"evil"),
        ({"name": "/abs/file"}, b"abs"),
        ({"name": "a" * 5000}, b"long"),
        ({"name": "fine/file"}, b"fine"),
    ]))
    path = img.write_docker_archive(tmp_path / "bad.tar", ref="names:1")
    database, outcomes = scan_with_good(scan, tmp_path, f"docker-archive:{path}")
    assert outcomes[0].status == "done"
    warnings = " ".join(outcomes[0].warnings)
    assert "points outside the image" in warnings and "absolute name" in warnings and "5000 characters" in warnings
    files = {x["path"] for x in report_of(database, "names:1")["files"]["largest"]}
    assert files == {"/abs/file", "/fine/file"}
    assert not (tmp_path / "escape.txt").exists() and not os.path.exists("/escape.txt")


def test_symlinks_out_of_the_image_loops_hard_links_to_nowhere_and_devices(tmp_path, scan):
    img = ImageBuilder().layer({
        "etc/os-release": Symlink("../../../../../../../etc/os-release-outside"),
        "loop/a": Symlink("/loop/b"),
        "loop/b": Symlink("/loop/a"),
        "usr/lib/os-release": Symlink("/loop/a"),
        "bin/ghost": Hardlink("bin/missing"),
        "dev/null": Device("char"),
        "dev/sda": Device("block"),
        "run/fifo": Device("fifo"),
        "real": "1",
    })
    path = img.write_docker_archive(tmp_path / "links.tar", ref="links:1")
    database, outcomes = scan_with_good(scan, tmp_path, f"docker-archive:{path}")
    assert outcomes[0].status == "done"
    assert any("hard link to missing target /bin/missing" in w for w in outcomes[0].warnings)
    rep = report_of(database, "links:1")
    assert rep["image"]["os"]["family"] is None  # the symlinks lead nowhere inside the image
    # devices and fifos are not regular files; the dangling hard link counts as an (empty) file
    assert rep["files"]["total_files"] == 2


def test_truncated_tar_fails_that_image(tmp_path, scan):
    layer = layer_tar({"big": File(b"x" * 50000), "after": "y"})
    img = ImageBuilder().raw_layer(layer[:20000])
    img.write_oci_layout(tmp_path / "oci", ref="trunc:1", layer_compression="gzip")
    _, outcomes = scan_with_good(scan, tmp_path, f"oci:{tmp_path / 'oci'}")
    failed_with(outcomes, "truncated")


def test_corrupt_gzip_layer_fails_that_image(tmp_path, scan):
    img = ImageBuilder().layer({"a": "b" * 1000})
    img.write_oci_layout(tmp_path / "oci", ref="corrupt:1", layer_compression="gzip")
    blobs = tmp_path / "oci" / "blobs" / "sha256"
    layer = max(blobs.iterdir(), key=lambda p: p.read_bytes()[:2] == b"\x1f\x8b")
    data = bytearray(layer.read_bytes())
    data[20:40] = b"\xff" * 20
    layer.write_bytes(bytes(data))
    _, outcomes = scan_with_good(scan, tmp_path, f"oci:{tmp_path / 'oci'}")
    failed_with(outcomes, "corrupt")


def test_corrupt_outer_gzip_fails_that_source(tmp_path, scan):
    path = GOOD.write_docker_archive(tmp_path / "x.tar.gz", ref="outer:1", compress_with="gzip")
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2:len(data) // 2 + 30] = b"\x00" * 30
    open(path, "wb").write(bytes(data))
    _, outcomes = scan_with_good(scan, tmp_path, f"docker-archive:{path}")
    assert outcomes and all(o.status == "failed" for o in outcomes)


def test_gzip_bomb_is_stopped_by_ratio_and_by_size(tmp_path, scan):
    img = ImageBuilder().layer({"zeros": File(b"\0" * (8 << 20))})
    img.write_oci_layout(tmp_path / "oci", ref="bomb:1", layer_compression="gzip")
    policy = {"limits": {"max_ratio": 20, "ratio_floor": 1 << 20}}
    _, outcomes = scan_with_good(scan, tmp_path, f"oci:{tmp_path / 'oci'}", policy=policy)
    failed_with(outcomes, "compression ratio exceeds 20:1")
    policy = {"limits": {"max_layer_bytes": 4 << 20}}
    _, outcomes = scan_with_good(scan, tmp_path, f"oci:{tmp_path / 'oci'}", policy=policy)
    failed_with(outcomes, "decompressed size exceeds")


def test_manifest_naming_a_missing_blob(tmp_path, scan):
    img = ImageBuilder().layer({"a": "1"}).layer({"b": "2"})
    path = img.write_docker_archive(tmp_path / "m.tar", ref="missing:1", skip_layers=(1,))
    _, outcomes = scan_with_good(scan, tmp_path, f"docker-archive:{path}")
    failed_with(outcomes, "is missing")
    gz = img.write_docker_archive(tmp_path / "m.tar.gz", ref="missing:2", skip_layers=(1,), compress_with="gzip")
    _, outcomes = scan_with_good(scan, tmp_path, f"docker-archive:{gz}")
    failed_with(outcomes, "is missing")


@pytest.mark.parametrize("compress_with", ["none", "gzip"])
def test_layer_digest_mismatch(tmp_path, scan, compress_with):
    img = ImageBuilder().layer({"a": "1"})
    path = img.write_docker_archive(tmp_path / "d.tar", ref="digest:1", compress_with=compress_with,
                                    diff_ids=["sha256:" + "0" * 64])
    _, outcomes = scan_with_good(scan, tmp_path, f"docker-archive:{path}")
    failed_with(outcomes, "digest mismatch")


def test_oci_blob_digest_mismatch(tmp_path, scan):
    img = ImageBuilder().layer({"a": "1"})
    img.write_oci_layout(tmp_path / "oci", ref="blob:1", layer_compression="none")
    blobs = tmp_path / "oci" / "blobs" / "sha256"
    layer = next(p for p in blobs.iterdir() if p.read_bytes()[257:262] == b"ustar")
    data = bytearray(layer.read_bytes())
    data[512] = ord("2")  # same size, other content
    layer.write_bytes(bytes(data))
    _, outcomes = scan_with_good(scan, tmp_path, f"oci:{tmp_path / 'oci'}")
    failed_with(outcomes, "digest mismatch")


def test_invalid_json_manifest_and_config(tmp_path, scan):
    img = ImageBuilder().layer({"a": "1"})
    path = img.write_docker_archive(tmp_path / "j.tar", ref="json:1", manifest_override=b"{not json")
    _, outcomes = scan_with_good(scan, tmp_path, f"docker-archive:{path}")
    failed_with(outcomes, "invalid JSON")
    img.write_oci_layout(tmp_path / "oci", ref="json:2")
    (tmp_path / "oci" / "index.json").write_text('{"schemaVersion": 2, "manifests": 7}')
    _, outcomes = scan_with_good(scan, tmp_path, f"oci:{tmp_path / 'oci'}")
    failed_with(outcomes, "no manifests list")


def test_not_an_archive_at_all(tmp_path, scan):
    junk = tmp_path / "junk.tar"
    junk.write_bytes(os.urandom(3000))
    _, outcomes = scan_with_good(scan, tmp_path, f"docker-archive:{junk}")
    failed_with(outcomes, str(junk))
    _, outcomes = scan_with_good(scan, tmp_path, f"docker-archive:{tmp_path / 'nope.tar'}")
    failed_with(outcomes, "no such file or directory")


def test_file_over_the_read_limit_is_not_read(tmp_path, scan):
    img = ImageBuilder().layer({"etc/os-release": "ID=debian\nVERSION_ID=11\n" + "#" * 5000})
    path = img.write_docker_archive(tmp_path / "big.tar", ref="biglimit:1")
    database, outcomes = scan(f"docker-archive:{path}", policy={"limits": {"max_file_read": 1000}})
    assert outcomes[0].status == "done"
    assert any("larger than the read limit" in w for w in outcomes[0].warnings)
    assert report_of(database, "biglimit:1")["image"]["os"]["family"] is None


def test_failed_scan_keeps_its_row_and_earlier_scans(tmp_path, scan):
    path = GOOD.write_docker_archive(tmp_path / "g.tar", ref="keep:1")
    database, first = scan(f"docker-archive:{path}")
    # the same reference, now broken
    broken = ImageBuilder().layer({"a": "1"}).write_docker_archive(tmp_path / "g.tar", ref="keep:1",
                                                                   diff_ids=["sha256:" + "1" * 64])
    database, second = scan(f"docker-archive:{broken}")
    assert second[0].status == "failed"
    rows = database.execute("SELECT status, error FROM scans WHERE reference='keep:1' ORDER BY id").fetchall()
    assert [r[0] for r in rows] == ["done", "failed"] and "digest mismatch" in rows[1][1]
    # the report still shows the last good scan
    assert report_of(database, "keep:1")["scan"]["id"] == first[0].scan_id


def test_nothing_is_written_outside_the_database(tmp_path, scan):
    work = tmp_path / "work"
    work.mkdir()
    img = ImageBuilder().raw_layer(raw_tar([({"name": "../../../../tmp/stowaway-escape"}, b"x")]))
    img.layer({"etc/passwd": "root:x:0:0::/root:/bin/sh\n", "tmp/stowaway-escape-2": "y"})
    path = img.write_docker_archive(work / "w.tar.gz", ref="escape:1", compress_with="gzip")
    before = set(os.listdir(tmp_path)) | {"scan.db", "scan.db-wal", "scan.db-shm"}
    scan(f"docker-archive:{path}")
    assert set(os.listdir(tmp_path)) <= before
    assert os.listdir(work) == ["w.tar.gz"]
    assert not os.path.exists("/tmp/stowaway-escape") and not os.path.exists("/tmp/stowaway-escape-2")


def test_too_many_entries_in_one_layer(tmp_path, scan):
    img = ImageBuilder().layer({f"f{i}": "" for i in range(50)})
    path = img.write_docker_archive(tmp_path / "many.tar", ref="many:1")
    _, outcomes = scan_with_good(scan, tmp_path, f"docker-archive:{path}", policy={"limits": {"max_entries": 20}})
    failed_with(outcomes, "more than 20 entries")


def pax_layer(header_bytes: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        ti = tarfile.TarInfo("etc/motd")
        ti.pax_headers = {"comment": "x" * header_bytes}
        ti.size = 2
        tf.addfile(ti, io.BytesIO(b"hi"))
    return buf.getvalue()


def test_a_huge_pax_header_is_refused_before_it_is_read(tmp_path, scan):
    img = ImageBuilder().raw_layer(pax_layer(3 << 20))
    img.write_oci_layout(tmp_path / "oci", ref="pax:1", layer_compression="gzip")
    _, outcomes = scan_with_good(scan, tmp_path, f"oci:{tmp_path / 'oci'}")
    failed_with(outcomes, "tar extended header is larger than 1048576 bytes")
    # a header under the cap is read as tarfile reads it
    ok = ImageBuilder().raw_layer(pax_layer(1000)).write_docker_archive(tmp_path / "ok.tar", ref="pax:2")
    database, outcomes = scan(f"docker-archive:{ok}")
    assert outcomes[0].status == "done"


def test_chained_gnu_long_names_share_one_header_budget(tmp_path, scan):
    # a GNU long-name header followed by more long-name headers: each is under the cap alone
    block = io.BytesIO()
    with tarfile.open(fileobj=block, mode="w", format=tarfile.GNU_FORMAT) as tf:
        ti = tarfile.TarInfo("d/" + "n" * 600_000)
        ti.size = 1
        tf.addfile(ti, io.BytesIO(b"x"))
    one = block.getvalue()[:-1024]  # without the end-of-archive blocks
    longname, rest = one[:512 + ((600_002 + 511) // 512) * 512], one[512 + ((600_002 + 511) // 512) * 512:]
    img = ImageBuilder().raw_layer(longname * 3 + rest + b"\0" * 1024)
    path = img.write_docker_archive(tmp_path / "gnu.tar", ref="gnu:1")
    _, outcomes = scan_with_good(scan, tmp_path, f"docker-archive:{path}")
    failed_with(outcomes, "tar extended header is larger than")


def test_a_package_database_over_its_cap_is_named_never_silently_empty(tmp_path, scan):
    stanza = "Package: pkg{n}\nStatus: install ok installed\nVersion: 1.0-{n}\nArchitecture: amd64\n\n"
    status = "".join(stanza.format(n=n) for n in range(2000))
    img = ImageBuilder().layer({"etc/os-release": "ID=debian\nVERSION_ID=12\n", "var/lib/dpkg/status": status})
    path = img.write_docker_archive(tmp_path / "dpkg.tar", ref="dpkg:1")
    database, outcomes = scan(f"docker-archive:{path}", policy={"limits": {"max_package_db": 10_000}})
    assert outcomes[0].status == "done"
    said = [w for w in outcomes[0].warnings if "/var/lib/dpkg/status" in w]
    assert said and "10000-byte cap of the dpkg analyzer" in said[0], outcomes[0].warnings
    # under the default cap the same database is read
    database, outcomes = scan(f"docker-archive:{path}")
    assert len([s for s in report_of(database, "dpkg:1")["software"] if s["ecosystem"] == "deb"]) == 2000


@pytest.mark.timeout(120, method="thread")  # without the check, opening a pipe nobody writes to waits forever
def test_a_named_pipe_or_a_device_is_refused_before_it_is_opened(tmp_path, scan):
    fifo = tmp_path / "image.tar"
    os.mkfifo(fifo)
    for source in (f"docker-archive:{fifo}", f"oci-archive:{fifo}:img", f"oci:{fifo}"):
        _, outcomes = scan_with_good(scan, tmp_path, source)
        failed_with(outcomes, f"{fifo} is a named pipe (FIFO), not a file or directory")
    _, outcomes = scan_with_good(scan, tmp_path, "docker-archive:/dev/zero")  # would read zeros for ever
    failed_with(outcomes, "/dev/zero is a device")
