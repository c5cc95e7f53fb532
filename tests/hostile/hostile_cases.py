"""The hostile-input corpus: images, layers and metadata built in code to break a scanner.

Each case is a function that writes its input under a directory and returns a `Case`: the sources
to scan (a good image is always scanned after them in the same command, so a case also shows that
the batch goes on), extra CLI arguments, the exit status expected, and a phrase the user must be
told — in the failed scan's one-line error or in the scan's warnings. The harness
(test_hostile_corpus.py) runs the installed `stowaway` command on every case and checks the rest:
no traceback, no exception name, bounded time and memory, nothing written outside the database,
and a database that is intact and usable afterwards.
"""
from __future__ import annotations

import gzip
import io
import json
import os
import sqlite3
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import zstandard

from stowaway.ingest.imagebuilder import Device, File, Hardlink, ImageBuilder, Symlink, _tar, layer_tar, sha256

FAIL, DONE = 1, 0


@dataclass
class Case:
    sources: list[str]
    expect_exit: int  # 1: an image failed (recorded); 0: every image scanned
    says: str  # a phrase of the failed scan's error, or of a warning when the scan is done
    args: list[str] = field(default_factory=list)
    rss_mb: int = 300  # peak RSS bound (issue 14: under 300 MB for any input under default limits)
    check: Callable[[sqlite3.Connection], None] | None = None  # more to assert on the database afterwards


CASES: dict[str, Callable[[Path], Case]] = {}


def case(fn: Callable[[Path], Case]) -> Callable[[Path], Case]:
    CASES[fn.__name__.removeprefix("case_")] = fn
    return fn


# --- helpers ----------------------------------------------------------------------------------------

def raw_tar(members: list[tuple[dict, bytes | None]], fmt=tarfile.GNU_FORMAT) -> bytes:
    """A tar with names and types tarfile's builder would refuse or rewrite."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for fields, data in members:
            fields = dict(fields)
            ti = tarfile.TarInfo(fields.pop("name"))
            for k, v in fields.items():
                setattr(ti, k, v)
            ti.size = len(data or b"")
            tf.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def archive(d: Path, img: ImageBuilder, ref: str = "bad:1", **kw) -> str:
    return "docker-archive:" + img.write_docker_archive(d / "bad.tar", ref=ref, **kw)


def oci(d: Path, img: ImageBuilder, ref: str = "bad:1", **kw) -> str:
    return "oci:" + img.write_oci_layout(d / "oci", ref=ref, **kw)


def debian(extra: dict | None = None) -> ImageBuilder:
    return ImageBuilder().layer({"etc/os-release": "ID=debian\nVERSION_ID=12\n", **(extra or {})})


def rewrite_oci(d: Path, img: ImageBuilder, change_manifest=None, change_config=None, change_index=None) -> str:
    """An OCI layout whose manifest/config/index were changed, with digests kept consistent."""
    root = d / "oci"
    img.write_oci_layout(root, ref="bad:1", layer_compression="none")
    index = json.loads((root / "index.json").read_text())
    entry = index["manifests"][0]
    blob = lambda dg: root / "blobs" / "sha256" / dg.split(":")[1]  # noqa: E731

    def put(data: bytes) -> str:
        blob(sha256(data)).write_bytes(data)
        return sha256(data)

    manifest = json.loads(blob(entry["digest"]).read_bytes())
    if change_config:
        config = json.loads(blob(manifest["config"]["digest"]).read_bytes())
        cdata = change_config(config)
        cdata = cdata if isinstance(cdata, bytes) else json.dumps(cdata).encode()
        manifest["config"]["digest"], manifest["config"]["size"] = put(cdata), len(cdata)
    mdata = change_manifest(manifest) if change_manifest else manifest
    mdata = mdata if isinstance(mdata, bytes) else json.dumps(mdata).encode()
    entry["digest"], entry["size"] = put(mdata), len(mdata)
    if change_index:
        index = change_index(index, put)
    (root / "index.json").write_text(json.dumps(index) if not isinstance(index, str) else index)
    return f"oci:{root}"


def compressed_layer(d: Path, data: bytes, how: str) -> str:
    """An OCI layout whose one layer is `data` compressed with `how` (gzip or zstd), digests consistent."""
    blob = gzip.compress(data, 9) if how == "gzip" else zstandard.ZstdCompressor(level=3).compress(data)
    media = "application/vnd.oci.image.layer.v1.tar+" + how
    root = d / "oci"
    (root / "blobs" / "sha256").mkdir(parents=True)
    config = json.dumps({"os": "linux", "architecture": "amd64", "rootfs": {"type": "layers",
                        "diff_ids": [sha256(data)]}}).encode()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": sha256(config), "size": len(config)},
                           "layers": [{"mediaType": media, "digest": sha256(blob), "size": len(blob)}]}).encode()
    for b in (blob, config, manifest):
        (root / "blobs" / "sha256" / sha256(b)[7:]).write_bytes(b)
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": sha256(manifest),
         "size": len(manifest), "annotations": {"org.opencontainers.image.ref.name": "bad:1"}}]}))
    (root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    return f"oci:{root}"


def zeros_tar(size: int) -> bytes:
    return layer_tar({"zeros": File(b"\0" * size)})


# --- layer contents ---------------------------------------------------------------------------------

@case
def case_names_climbing_out(d):
    img = ImageBuilder().raw_layer(raw_tar([({"name": "../../escape.txt"}, b"evil"), ({"name": "ok"}, b"1")]))
    return Case([archive(d, img)], DONE, "points outside the image")


@case
def case_names_climbing_out_through_dots(d):
    img = ImageBuilder().raw_layer(raw_tar([({"name": "a/./../../../../x"}, b"evil"), ({"name": "ok"}, b"1")]))
    return Case([archive(d, img)], DONE, "points outside the image")


@case
def case_absolute_names(d):
    img = ImageBuilder().raw_layer(raw_tar([({"name": "/etc/abs"}, b"abs")]))
    return Case([archive(d, img)], DONE, "has an absolute name")


@case
def case_absurdly_long_name(d):
    img = ImageBuilder().raw_layer(raw_tar([({"name": "a" * 9000}, b"long")]))
    return Case([archive(d, img)], DONE, "9000 characters")


@case
def case_symlink_out_of_the_image(d):
    img = debian().layer({"etc/os-release": Symlink("../../../../../../etc/passwd")})
    return Case([archive(d, img)], DONE, "")


@case
def case_symlink_loop(d):
    img = ImageBuilder().layer({"a": Symlink("/b"), "b": Symlink("/a"), "etc/os-release": Symlink("/a")})
    return Case([archive(d, img)], DONE, "")


@case
def case_hard_link_to_nowhere(d):
    img = ImageBuilder().layer({"bin/ghost": Hardlink("bin/missing")})
    return Case([archive(d, img)], DONE, "hard link to missing target")


@case
def case_hard_link_out_of_the_image(d):
    img = ImageBuilder().raw_layer(raw_tar([({"name": "x", "type": tarfile.LNKTYPE, "linkname": "../../etc/shadow"},
                                             None)]))
    return Case([archive(d, img)], DONE, "outside the image")


@case
def case_devices_and_fifos(d):
    img = ImageBuilder().layer({"dev/null": Device("char"), "dev/sda": Device("block"), "run/f": Device("fifo")})
    return Case([archive(d, img)], DONE, "")


@case
def case_unknown_entry_type(d):
    img = ImageBuilder().raw_layer(raw_tar([({"name": "odd", "type": b"Z"}, b"")]))
    return Case([archive(d, img)], DONE, "")


@case
def case_whiteout_climbing_out(d):
    img = debian().raw_layer(raw_tar([({"name": "../.wh.etc"}, b""), ({"name": ".wh..wh..opq"}, b"")]))
    return Case([archive(d, img)], DONE, "points outside the image")


@case
def case_opaque_root_then_files(d):
    img = debian({"etc/shadow": "root:x:1::::::\n"}).raw_layer(raw_tar([({"name": ".wh..wh..opq"}, b"")]))
    return Case([archive(d, img)], DONE, "")


@case
def case_file_replaced_by_directory_and_back(d):
    img = ImageBuilder().layer({"x": "file"}).layer({"x/y": "now a dir"}).layer({"x": "a file again"})
    return Case([archive(d, img)], DONE, "")


@case
def case_duplicate_entries_in_one_layer(d):
    img = ImageBuilder().raw_layer(raw_tar([({"name": "etc/os-release"}, b"ID=alpine\n")] * 50))
    return Case([archive(d, img)], DONE, "")


@case
def case_truncated_layer(d):
    layer = layer_tar({"big": File(b"x" * 50000), "after": "y"})
    img = ImageBuilder().raw_layer(layer[:20000])
    return Case([oci(d, img, layer_compression="gzip")], FAIL, "truncated")


@case
def case_layer_cut_at_a_header(d):
    layer = layer_tar({"a": File(b"x" * 512), "b": "2"})
    img = ImageBuilder().raw_layer(layer[:1024 + 100])  # the second header cut short
    return Case([archive(d, img)], FAIL, "truncated")


@case
def case_garbage_after_the_files(d):
    layer = layer_tar({"a": "1"})
    img = ImageBuilder().raw_layer(layer[:1024] + os.urandom(2048))  # no end blocks: random bytes instead
    return Case([archive(d, img)], FAIL, "corrupt tar header")


@case
def case_layer_that_is_not_a_tar(d):
    img = ImageBuilder().raw_layer(os.urandom(4096))
    return Case([oci(d, img, layer_compression="gzip")], FAIL, "")


@case
def case_empty_layer(d):
    img = ImageBuilder().raw_layer(b"")
    return Case([oci(d, img, layer_compression="none")], FAIL, "not a tar archive")


@case
def case_layer_of_end_blocks_only(d):
    img = ImageBuilder().raw_layer(b"\0" * 10240)
    return Case([archive(d, img)], DONE, "")


@case
def case_corrupt_tar_header_checksum(d):
    layer = bytearray(layer_tar({"a": "1", "b": "2"}))
    layer[1044:1064] = b"\xff" * 20  # inside the second header (the first is 512 bytes, its data 512)
    img = ImageBuilder().raw_layer(bytes(layer))
    return Case([archive(d, img)], FAIL, "corrupt tar header")


@case
def case_corrupt_gzip_layer(d):
    img = ImageBuilder().layer({"a": "b" * 1000})
    src = oci(d, img, layer_compression="gzip")
    blobs = d / "oci" / "blobs" / "sha256"
    layer = next(p for p in blobs.iterdir() if p.read_bytes()[:2] == b"\x1f\x8b")
    data = bytearray(layer.read_bytes())
    data[20:40] = b"\xff" * 20
    layer.write_bytes(bytes(data))
    return Case([src], FAIL, "")


@case
def case_gzip_bomb(d):
    return Case([compressed_layer(d, zeros_tar(200 << 20), "gzip")], FAIL, "compression ratio exceeds")


@case
def case_zstd_bomb(d):
    return Case([compressed_layer(d, zeros_tar(200 << 20), "zstd")], FAIL, "compression ratio exceeds")


@case
def case_layer_past_the_size_cap(d):
    return Case([compressed_layer(d, zeros_tar(8 << 20), "gzip")], FAIL, "decompressed size exceeds",
                args=["--set", "limits.max_layer_bytes=4194304"])


@case
def case_too_many_entries(d):
    img = ImageBuilder().layer({f"f{i}": "" for i in range(100)})
    return Case([archive(d, img)], FAIL, "more than 50 entries", args=["--set", "limits.max_entries=50"])


@case
def case_huge_pax_header(d):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        ti = tarfile.TarInfo("etc/motd")
        ti.pax_headers = {"comment": os.urandom(1 << 20).hex() * 4}  # 8 MiB header, poorly compressible
        ti.size = 2
        tf.addfile(ti, io.BytesIO(b"hi"))
    img = ImageBuilder().raw_layer(buf.getvalue())
    return Case([oci(d, img, layer_compression="gzip")], FAIL, "tar extended header is larger than")


@case
def case_chained_gnu_long_names(d):
    block = io.BytesIO()
    with tarfile.open(fileobj=block, mode="w", format=tarfile.GNU_FORMAT) as tf:
        ti = tarfile.TarInfo("d/" + "n" * 600_000)
        ti.size = 1
        tf.addfile(ti, io.BytesIO(b"x"))
    one = block.getvalue()[:-1024]
    cut = 512 + ((600_002 + 511) // 512) * 512
    img = ImageBuilder().raw_layer(one[:cut] * 3 + one[cut:] + b"\0" * 1024)
    return Case([archive(d, img)], FAIL, "tar extended header is larger than")


@case
def case_file_over_the_read_limit(d):
    img = ImageBuilder().layer({"etc/os-release": "ID=debian\n" + "#" * 5000})
    return Case([archive(d, img)], DONE, "larger than the read limit", args=["--set", "limits.max_file_read=1000"])


# --- archive and metadata ---------------------------------------------------------------------------

@case
def case_manifest_json_not_json(d):
    img = ImageBuilder().layer({"a": "1"})
    return Case([archive(d, img, manifest_override=b"{not json")], FAIL, "invalid JSON")


@case
def case_manifest_json_not_a_list(d):
    img = ImageBuilder().layer({"a": "1"})
    return Case([archive(d, img, manifest_override=b'{"Config": "x"}')], FAIL, "manifest.json is not a list")


@case
def case_manifest_json_deeply_nested(d):
    img = ImageBuilder().layer({"a": "1"})
    return Case([archive(d, img, manifest_override=b"[" * 200_000 + b"]" * 200_000)], FAIL, "")


@case
def case_manifest_json_over_the_metadata_limit(d):
    img = ImageBuilder().layer({"a": "1"})
    big = json.dumps([{"Config": "x", "RepoTags": ["bad:1"], "Layers": ["a" * (9 << 20)]}]).encode()
    return Case([archive(d, img, manifest_override=big)], FAIL, "limit for metadata")


@case
def case_manifest_entry_of_wrong_types(d):
    img = ImageBuilder().layer({"a": "1"})
    bad = json.dumps([{"Config": 7, "RepoTags": ["bad:1"], "Layers": "abc"}]).encode()
    return Case([archive(d, img, manifest_override=bad)], FAIL, "Config is a number, not a string")


@case
def case_missing_layer_blob(d):
    img = ImageBuilder().layer({"a": "1"}).layer({"b": "2"})
    return Case([archive(d, img, skip_layers=(1,))], FAIL, "is missing")


@case
def case_missing_layer_blob_in_a_stream(d):
    img = ImageBuilder().layer({"a": "1"}).layer({"b": "2"})
    return Case([archive(d, img, skip_layers=(1,), compress_with="gzip")], FAIL, "is missing")


@case
def case_missing_config_blob(d):
    return Case([rewrite_oci(d, debian(), change_manifest=lambda m: {**m, "config": {
        **m["config"], "digest": "sha256:" + "ab" * 32}})], FAIL, "")


@case
def case_layer_diff_id_mismatch(d):
    img = ImageBuilder().layer({"a": "1"})
    return Case([archive(d, img, diff_ids=["sha256:" + "0" * 64])], FAIL, "digest mismatch")


@case
def case_layer_blob_digest_mismatch(d):
    img = ImageBuilder().layer({"a": "1"})
    src = oci(d, img, layer_compression="none")
    blobs = d / "oci" / "blobs" / "sha256"
    layer = next(p for p in blobs.iterdir() if p.read_bytes()[257:262] == b"ustar")
    data = bytearray(layer.read_bytes())
    data[512] = ord("2")
    layer.write_bytes(bytes(data))
    return Case([src], FAIL, "digest mismatch")


@case
def case_diff_id_count_mismatch(d):
    def more(c):
        c["rootfs"]["diff_ids"].append("sha256:" + "1" * 64)
        return c
    return Case([rewrite_oci(d, debian(), change_config=more)], FAIL, "diff_ids for")


@case
def case_config_wrong_types(d):
    def bad(c):
        c["config"] = {"Env": "PATH=/bin", "Labels": {"a": 7}}
        return c
    return Case([rewrite_oci(d, debian(), change_config=bad)], FAIL, "config.Env is a string, not a list")


@case
def case_config_not_json(d):
    return Case([rewrite_oci(d, debian(), change_config=lambda c: b"\xff\xfe not json")], FAIL, "invalid JSON")


@case
def case_digest_naming_a_path(d):
    return Case([rewrite_oci(d, debian(), change_manifest=lambda m: {**m, "layers": [
        {**m["layers"][0], "digest": "sha256:../../../../etc/passwd"}]})], FAIL, "is not a sha256 or sha512 digest")


@case
def case_index_pointing_at_itself(d):
    def loop(index, put):
        inner = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                 "manifests": [index["manifests"][0]]}
        for _ in range(8):  # indexes nested past the depth limit
            data = json.dumps(inner).encode()
            inner = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                     "manifests": [{"mediaType": "application/vnd.oci.image.index.v1+json",
                                    "digest": put(data), "size": len(data)}]}
        data = json.dumps(inner).encode()
        return {"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.index.v1+json",
                                                   "digest": put(data), "size": len(data),
                                                   "annotations": {"org.opencontainers.image.ref.name": "bad:1"}}]}
    return Case([rewrite_oci(d, debian(), change_index=loop)], FAIL, "nested too deep")


@case
def case_index_manifests_not_a_list(d):
    return Case([rewrite_oci(d, debian(), change_index=lambda i, put: {"schemaVersion": 2, "manifests": 7})],
                FAIL, "no manifests list")


@case
def case_index_entry_of_wrong_type(d):
    return Case([rewrite_oci(d, debian(), change_index=lambda i, put: {
        "schemaVersion": 2, "manifests": [i["manifests"][0], "just a string"]})], FAIL, "is a string, not an object")


@case
def case_blob_symlinked_out_of_the_layout(d):
    src = oci(d, debian(), layer_compression="none")
    blobs = d / "oci" / "blobs" / "sha256"
    outside = d / "outside"
    outside.write_bytes(b"secret")
    victim = next(p for p in blobs.iterdir() if p.read_bytes()[257:262] == b"ustar")
    victim.unlink()
    victim.symlink_to(outside)
    return Case([src], FAIL, "leaves the image layout")


@case
def case_windows_image(d):
    return Case([rewrite_oci(d, debian(), change_config=lambda c: {**c, "os": "windows"})], FAIL,
                "Windows images are not supported")


@case
def case_windows_layer_paths(d):
    img = ImageBuilder().layer({"Files/Windows/System32/cmd.exe": b"MZ", "Hives/Software_Base": b"regf"})
    return Case([archive(d, img)], FAIL, "Windows images are not supported")


@case
def case_other_os(d):
    return Case([rewrite_oci(d, debian(), change_config=lambda c: {**c, "os": "freebsd"})], FAIL,
                "images are not supported")


@case
def case_not_an_archive(d):
    junk = d / "junk.tar"
    junk.write_bytes(os.urandom(3000))
    return Case([f"docker-archive:{junk}"], FAIL, str(junk))


@case
def case_empty_file(d):
    empty = d / "empty.tar"
    empty.write_bytes(b"")
    return Case([f"docker-archive:{empty}"], FAIL, "")


@case
def case_no_such_file(d):
    return Case([f"docker-archive:{d / 'nope.tar'}"], FAIL, "no such file or directory")


@case
def case_corrupt_outer_gzip(d):
    path = debian().write_docker_archive(d / "x.tar.gz", ref="bad:1", compress_with="gzip")
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2:len(data) // 2 + 30] = b"\0" * 30
    open(path, "wb").write(bytes(data))
    return Case([f"docker-archive:{path}"], FAIL, "")


@case
def case_outer_archive_bomb(d):
    path = d / "bomb.tar.gz"
    with gzip.open(path, "wb", compresslevel=9) as fh:
        fh.write(_tar({"manifest.json": b"[]", "zeros": b"\0" * (200 << 20)}))
    return Case([f"docker-archive:{path}"], FAIL, "ratio")


@case
def case_an_oci_layout_with_no_index(d):
    (d / "empty-layout").mkdir()
    return Case([f"oci:{d / 'empty-layout'}"], FAIL, "neither manifest.json nor index.json")


# --- what analyzers read ----------------------------------------------------------------------------

@case
def case_package_database_over_its_cap(d):
    stanza = "Package: pkg{n}\nStatus: install ok installed\nVersion: 1.0-{n}\nArchitecture: amd64\n\n"
    img = debian({"var/lib/dpkg/status": "".join(stanza.format(n=n) for n in range(500))})
    return Case([archive(d, img)], DONE, "cap of the dpkg analyzer", args=["--set", "limits.max_package_db=1000"])


@case
def case_dpkg_status_of_binary_junk(d):
    return Case([archive(d, debian({"var/lib/dpkg/status": os.urandom(65536)}))], DONE, "")


@case
def case_rpm_database_of_junk(d):
    img = ImageBuilder().layer({"etc/os-release": "ID=centos\nVERSION_ID=7\n",
                                "var/lib/rpm/Packages": os.urandom(65536),
                                "var/lib/rpm/rpmdb.sqlite": os.urandom(8192)})
    return Case([archive(d, img)], DONE, "")


@case
def case_apk_database_of_junk(d):
    img = ImageBuilder().layer({"etc/os-release": "ID=alpine\nVERSION_ID=3.19.1\n",
                                "lib/apk/db/installed": b"P:\nV:\n\x00\xff" * 5000})
    return Case([archive(d, img)], DONE, "")


@case
def case_os_release_of_binary_junk(d):
    return Case([archive(d, ImageBuilder().layer({"etc/os-release": os.urandom(100_000)}))], DONE, "")


@case
def case_passwd_and_shadow_of_junk(d):
    img = debian({"etc/passwd": os.urandom(20000), "etc/shadow": b"root:" + os.urandom(5000) + b"\n" * 3,
                  "etc/login.defs": os.urandom(5000), "etc/pam.d/common-password": os.urandom(3000)})
    return Case([archive(d, img)], DONE, "")


@case
def case_sshd_config_of_junk(d):
    return Case([archive(d, debian({"etc/ssh/sshd_config": os.urandom(50000)}))], DONE, "")


@case
def case_corrupt_jar(d):
    return Case([archive(d, debian({"opt/app/lib/x.jar": b"PK\x03\x04" + os.urandom(5000)}))], DONE, "")


@case
def case_jar_claiming_a_huge_central_directory(d):
    buf = io.BytesIO()
    import zipfile
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("META-INF/MANIFEST.MF", "Manifest-Version: 1.0\n")
    data = bytearray(buf.getvalue())
    eocd = data.rfind(b"PK\x05\x06")
    data[eocd + 8:eocd + 12] = (0xFFFF).to_bytes(2, "little") * 2  # 65535 entries
    data[eocd + 12:eocd + 16] = (0x7FFFFFFF).to_bytes(4, "little")  # a 2 GiB central directory
    return Case([archive(d, debian({"opt/app/lib/x.jar": bytes(data)}))], DONE, "")


def _jar(members: dict[str, bytes]) -> bytearray:
    import zipfile
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return bytearray(buf.getvalue())


@case
def case_jar_member_name_not_utf8_though_flagged_so(d):
    # general purpose bit 11 says UTF-8; the name's bytes are not (Python's zipfile raises a decode error)
    data = bytes(_jar({"META-INF/MANIFEST.MF": b"Manifest-Version: 1.0\n", "a\u00e9.class": b"\xca\xfe\xba\xbe"}))
    return Case([archive(d, debian({"opt/app/lib/x.jar": data.replace("\u00e9".encode(), b"\xff\xfe")}))], DONE,
                "not valid utf-8")


@case
def case_jar_member_with_a_bad_local_header(d):
    data = _jar({"META-INF/MANIFEST.MF": b"Manifest-Version: 1.0\n", "a/B.class": b"\xca\xfe\xba\xbe" * 10})
    second = data.find(b"PK\x03\x04", 4)
    data[second:second + 4] = b"XX\x03\x04"
    return Case([archive(d, debian({"opt/app/lib/x.jar": bytes(data)}))], DONE, "Bad magic number")


@case
def case_xz_file_of_junk(d):
    return Case([archive(d, debian({"var/log/apt/eipp.log.xz": b"\xfd7zXZ\x00" + b"\x00\x04" + os.urandom(4000)}))],
                DONE, "corrupt compressed data")


@case
def case_fake_go_binary(d):
    elf = b"\x7fELF\x02\x01\x01" + b"\0" * 9 + os.urandom(20000) + b"\xff Go buildinf:" + os.urandom(2000)
    return Case([archive(d, debian({"usr/local/bin/app": File(elf, mode=0o755)}))], DONE, "")


@case
def case_node_package_json_of_junk(d):
    img = debian({"app/node_modules/x/package.json": b'{"name": ' + b"[" * 100_000,
                  "app/node_modules/y/package.json": b'{"name": 7, "version": {"a": []}}'})
    return Case([archive(d, img)], DONE, "")


@case
def case_python_metadata_of_junk(d):
    img = debian({"usr/lib/python3/dist-packages/x-1.0.dist-info/METADATA": os.urandom(10000),
                  "usr/lib/python3/dist-packages/y-1.0.dist-info/METADATA": b"Name: \nVersion: " + b"9" * 5000})
    return Case([archive(d, img)], DONE, "")


@case
def case_minified_javascript_on_one_line(d):
    js = b"/*! jQuery v1.2.3 */" + b"var a=1;" * (2 << 20)
    return Case([archive(d, debian({"srv/www/app.min.js": js}))], DONE, "")


@case
def case_many_small_files(d):
    img = ImageBuilder().layer({f"d{i // 1000}/f{i}": "" for i in range(10000)})
    return Case([archive(d, img)], DONE, "")


@case
def case_deep_directory_tree(d):
    return Case([archive(d, ImageBuilder().layer({"/".join(["d"] * 1000) + "/f": "x"}))], DONE, "")


@case
def case_large_executables(d):
    """Three 80 MB Go executables, one without section headers: read by offset from a spool, never
    held whole; the malware check names the files over its cap."""
    from bench.synthetic import _add, _add_stream, _docker_save, _elf_go

    layer = d / "big.tar.layer"
    size = 80 << 20
    with tarfile.open(layer, "w") as tf:
        _add(tf, "etc/os-release", b"ID=debian\nVERSION_ID=12\n")
        for i in range(3):
            head, tail = _elf_go(size, f"example.com/app{i}")
            _add_stream(tf, f"usr/local/bin/app{i}", size, b"\x90" * 4096, head, tail)
    _docker_save(d / "big.tar", [layer], "bad:1")
    layer.unlink()
    def found_every_go_module(conn):
        mains = conn.execute("SELECT name FROM packages WHERE ecosystem='go' AND name LIKE 'example.com/app%'")
        assert sorted(r[0] for r in mains) == [f"example.com/app{i}" for i in range(3)]
    return Case([f"docker-archive:{d / 'big.tar'}"], DONE, "cap of the malware analyzer", rss_mb=200,
                args=["--set", "malware.max_file_size=33554432"], check=found_every_go_module)
