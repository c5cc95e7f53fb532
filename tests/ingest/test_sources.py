"""Every layout a user hands us gives the same image: docker save (legacy and OCI-style; plain, gzip,
zstd), OCI layout (directory and tar; gzip, zstd and plain layers), and multi-platform indexes."""
import pytest
from conftest import report_of
from imagebuilder import WHITEOUT, File, Hardlink, ImageBuilder, Symlink

OS_RELEASE = 'ID=debian\nVERSION_ID="11"\nPRETTY_NAME="Debian GNU/Linux 11 (bullseye)"\n'


def sample_image() -> ImageBuilder:
    img = ImageBuilder()
    img.layer({
        "usr/lib/os-release": OS_RELEASE,
        "etc/os-release": Symlink("../usr/lib/os-release"),
        "bin/busybox": File(b"\x7fELF" + b"x" * 5000, mode=0o755),
        "bin/sh": Hardlink("bin/busybox"),
        "etc/motd": "hello\n",
        "opt/app/old.txt": "old\n",
    }, created_by="ADD rootfs.tar /")
    img.layer({
        "etc/.wh.motd": WHITEOUT,
        "opt/app/.wh..wh..opq": WHITEOUT,
        "opt/app/new.txt": "new!\n",
        "data/big.bin": File(b"\0" * 20000),
    }, created_by="RUN rm /etc/motd && build")
    return img


def stats(database, ref):
    rep = report_of(database, ref)
    return rep, (rep["files"]["total_files"], rep["files"]["total_size"],
                 [(x["path"], x["size"], x["layer_index"]) for x in rep["files"]["largest"]])


EXPECTED_FILES = {"/bin/busybox": 5004, "/bin/sh": 5004, "/usr/lib/os-release": len(OS_RELEASE), "/opt/app/new.txt": 5,
                  "/data/big.bin": 20000}


@pytest.mark.parametrize("layout", ["legacy", "oci"])
@pytest.mark.parametrize("compression", ["none", "gzip", "zstd"])
def test_docker_archive_layouts_and_compressions(tmp_path, scan, layout, compression):
    path = sample_image().write_docker_archive(tmp_path / "img.tar", ref="demo/app:1", compress_with=compression,
                                               layout=layout)
    database, outcomes = scan(f"docker-archive:{path}")
    assert [o.status for o in outcomes] == ["done"], outcomes
    rep, (count, size, largest) = stats(database, "demo/app:1")
    assert count == len(EXPECTED_FILES)
    assert size == sum(EXPECTED_FILES.values())
    assert {p: s for p, s, _ in largest} == EXPECTED_FILES
    assert largest[0] == ("/data/big.bin", 20000, 1)
    assert rep["image"]["os"] == {"family": "debian", "version": "11", "name": "Debian GNU/Linux 11 (bullseye)"}
    assert [l["created_by"] for l in rep["image"]["layers"]] == ["ADD rootfs.tar /", "RUN rm /etc/motd && build"]
    layers = {l["layer_index"]: l for l in rep["files"]["layers"]}
    assert layers[1]["whiteouts"] == 1
    assert layers[0]["files"] == 5 and layers[0]["visible_files"] == 3  # motd and old.txt hidden later


@pytest.mark.parametrize("layer_compression", ["gzip", "zstd", "none"])
@pytest.mark.parametrize("as_tar", [False, True])
def test_oci_layout_dir_and_tar(tmp_path, scan, layer_compression, as_tar):
    target = tmp_path / ("oci.tar" if as_tar else "oci")
    sample_image().write_oci_layout(target, ref="demo/app:1", layer_compression=layer_compression, as_tar=as_tar)
    database, outcomes = scan(f"oci:{target}")
    assert [o.status for o in outcomes] == ["done"]
    _, (count, size, _) = stats(database, "demo/app:1")
    assert (count, size) == (len(EXPECTED_FILES), sum(EXPECTED_FILES.values()))


def test_docker_archive_and_oci_layout_agree(tmp_path, scan):
    img = sample_image()
    archive = img.write_docker_archive(tmp_path / "a.tar.gz", ref="demo/app:1", compress_with="gzip")
    img.write_oci_layout(tmp_path / "oci", ref="demo/app:2")
    database, _ = scan(f"docker-archive:{archive}", f"oci:{tmp_path / 'oci'}:demo/app:2")
    assert stats(database, "demo/app:1")[1] == stats(database, "demo/app:2")[1]


def test_oci_ref_selects_one_image_and_unknown_ref_fails(tmp_path, scan):
    a, b = sample_image(), ImageBuilder().layer({"only.txt": "x"})
    a.write_oci_layout(tmp_path / "oci", ref="one:1")
    b.write_oci_layout(tmp_path / "oci", ref="two:1", append=True)
    database, outcomes = scan(f"oci:{tmp_path / 'oci'}:two:1")
    assert [(o.reference, o.status) for o in outcomes] == [("two:1", "done")]
    database, outcomes = scan(f"oci:{tmp_path / 'oci'}")
    assert sorted(o.reference for o in outcomes) == ["one:1", "two:1"]
    database, outcomes = scan(f"oci:{tmp_path / 'oci'}:three:1")
    assert outcomes[0].status == "failed" and "no image 'three:1'" in outcomes[0].error


def test_multi_platform_index_scans_each_platform(tmp_path, scan):
    amd = ImageBuilder().layer({"arch.txt": "amd64"})
    arm = ImageBuilder().layer({"arch.txt": "arm64!", "extra": "e"})
    ImageBuilder().write_oci_layout(tmp_path / "oci", ref="multi:1", platforms={"linux/amd64": amd, "linux/arm64": arm})
    database, outcomes = scan(f"oci:{tmp_path / 'oci'}")
    assert [o.status for o in outcomes] == ["done", "done"]
    rows = database.execute("SELECT platform, index_digest FROM images ORDER BY platform").fetchall()
    assert [r[0] for r in rows] == ["linux/amd64", "linux/arm64"]
    assert rows[0][1] and rows[0][1] == rows[1][1]  # both linked to the index
    from stowaway.ingest.report import build

    assert build(database, "multi:1", platform="linux/arm64")["files"]["total_files"] == 2


def test_shared_layers_are_read_once(tmp_path, scan):
    base = ImageBuilder().layer({"etc/os-release": "ID=debian\nVERSION_ID=11\n", "lib/libc.so": File(b"c" * 3000)})
    app = ImageBuilder(layers=list(base.layers), created_by=list(base.created_by)).layer({"app/main": "x"})
    base.write_oci_layout(tmp_path / "oci", ref="base:1")
    app.write_oci_layout(tmp_path / "oci", ref="app:1", append=True)
    database, outcomes = scan(f"oci:{tmp_path / 'oci'}")
    by_ref = {o.reference: o for o in outcomes}
    assert (by_ref["base:1"].layers_read, by_ref["base:1"].layers_cached) == (1, 0)
    assert (by_ref["app:1"].layers_read, by_ref["app:1"].layers_cached) == (1, 1)
    # the shared layer is one row, linked from both images
    assert database.execute("SELECT COUNT(*) FROM layers").fetchone()[0] == 2
    assert database.execute("SELECT COUNT(DISTINCT image_id) FROM image_layers WHERE position = 0").fetchone()[0] == 2
    # and a rescan reads nothing at all
    _, again = scan(f"oci:{tmp_path / 'oci'}")
    assert all(o.layers_read == 0 for o in again)


def test_streamed_oci_style_archive_skips_layers_the_database_holds(tmp_path, scan):
    """docker save of Docker 25+ names plain layer blobs by digest: a gzipped save can skip cached layers."""
    base = ImageBuilder().layer({"etc/os-release": "ID=debian\nVERSION_ID=12\n", "lib/x.so": File(b"x" * 4000)})
    app = ImageBuilder(layers=list(base.layers), created_by=list(base.created_by)).layer({"app/main": "m"})
    first = base.write_docker_archive(tmp_path / "base.tar.gz", ref="base:1", layout="oci", compress_with="gzip")
    second = app.write_docker_archive(tmp_path / "app.tar.gz", ref="app:1", layout="oci", compress_with="gzip")
    database, outcomes = scan(f"docker-archive:{first}", f"docker-archive:{second}")
    assert [(o.layers_read, o.layers_cached) for o in outcomes] == [(1, 0), (1, 1)]
    # a legacy save cannot tell its diff_ids before reading: everything is read again
    legacy = app.write_docker_archive(tmp_path / "legacy.tar.gz", ref="app:2", compress_with="gzip")
    _, again = scan(f"docker-archive:{legacy}")
    assert (again[0].layers_read + again[0].layers_cached) == 2
    assert report_of(database, "app:1")["files"]["total_files"] == 3
