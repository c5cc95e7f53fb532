"""The nested-archive resolver: every format and combination, paths as OUTER!/INNER!/MEMBER, and every
limit cutting with one warning naming its policy key (bombs, quines, lying headers, huge tar headers)."""
from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import lzma
import tarfile
import zipfile

import pytest
import zstandard

from stowaway.ingest.archives import ArchiveLimits, _Blob, _Walk, is_archive, iter_members, kind_of
from stowaway.ingest.imagebuilder import tar_of, zip_of


def sevenz_of(members: dict) -> bytes:
    py7zr = pytest.importorskip("py7zr")
    buf = io.BytesIO()
    with py7zr.SevenZipFile(buf, "w") as z:
        for name, data in members.items():
            z.writestr(data, name)
    return buf.getvalue()


def walk(name, data, limits=None, **kw):
    warnings: list[str] = []
    got = [(m.path, m.read()) for m in iter_members(name, data, limits, warnings=warnings, **kw)]
    return got, warnings


INNER = zip_of({"app/.env": b"TOKEN=x", "a.class": b"\xca\xfe\xba\xbe"})


@pytest.mark.parametrize("name, data", [
    ("/x.tar", tar_of({"lib/in.jar": INNER})),
    ("/x.tar.gz", tar_of({"lib/in.jar": INNER}, "w:gz")),
    ("/x.tgz", tar_of({"lib/in.jar": INNER}, "w:gz")),
    ("/x.tar.bz2", tar_of({"lib/in.jar": INNER}, "w:bz2")),
    ("/x.tar.xz", tar_of({"lib/in.jar": INNER}, "w:xz")),
    ("/x.tar.zst", zstandard.ZstdCompressor().compress(tar_of({"lib/in.jar": INNER}))),
    ("/x.zip", zip_of({"lib/in.jar": INNER})),
    ("/x.whl", zip_of({"lib/in.jar": INNER}, zipfile.ZIP_BZIP2)),
    ("/x.apk", zip_of({"lib/in.jar": INNER}, zipfile.ZIP_LZMA)),
])
def test_every_container_format_and_nested_paths(name, data):
    got, warnings = walk(name, data)
    assert got == [(f"{name}!/lib/in.jar", INNER), (f"{name}!/lib/in.jar!/app/.env", b"TOKEN=x"),
                   (f"{name}!/lib/in.jar!/a.class", b"\xca\xfe\xba\xbe")]
    assert warnings == []


@pytest.mark.parametrize("name, compress, inner", [
    ("/r.gz", gzip.compress, "/r.gz!/r"), ("/r.txt.bz2", bz2.compress, "/r.txt.bz2!/r.txt"),
    ("/r.xz", lzma.compress, "/r.xz!/r"), ("/r.zst", zstandard.ZstdCompressor().compress, "/r.zst!/r"),
    ("/noext", gzip.compress, "/noext!/noext.out"),
])
def test_single_compressed_files_are_one_member(name, compress, inner):
    assert walk(name, compress(b"payload")) == ([(inner, b"payload")], [])


def test_sevenzip_members_nested():
    data = sevenz_of({"s.txt": b"seven", "in.jar": INNER})
    got, warnings = walk("/x.7z", data)
    assert dict(got) == {"/x.7z!/s.txt": b"seven", "/x.7z!/in.jar": INNER, "/x.7z!/in.jar!/app/.env": b"TOKEN=x",
                         "/x.7z!/in.jar!/a.class": b"\xca\xfe\xba\xbe"}
    assert warnings == []


def test_not_an_archive_yields_nothing_and_text_is_not_taken_for_one():
    for data in (b"plain text", b"BZh9 is how this line starts", b"PK\x03", b""):
        assert walk("/f", data) == ([], [])
    assert not is_archive("/f", b"BZh91AY&S")  # bzip2 needs its block magic
    assert kind_of("/f", bz2.compress(b"x")) == "bzip2"


def test_a_stream_source_and_a_prefixed_jar():
    got, _ = walk("/s.tar.gz", io.BytesIO(tar_of({"a": b"1"}, "w:gz")))
    assert got == [("/s.tar.gz!/a", b"1")]
    launcher = b"#!/bin/sh\nexec java -jar \"$0\" \"$@\"\n" + zip_of({"x.properties": b"k=v"})
    assert walk("/app.jar", launcher)[0] == [("/app.jar!/x.properties", b"k=v")]
    assert walk("/app.bin", launcher) == ([], [])  # only a zip's name lets a prefix pass


def test_want_and_sniff_spare_reads():
    data = tar_of({"lib/in.jar": INNER, "lib/other.bin": zip_of({"deep.jar": INNER})}, "w:gz")
    got, _ = walk("/t.tgz", data, want=lambda n: n.endswith(".jar"), sniff=False)
    # other.bin is a zip, but its name does not say so: without sniffing it is not opened
    assert [p for p, _ in got] == ["/t.tgz!/lib/in.jar"]
    got, _ = walk("/t.tgz", data, want=lambda n: n.endswith(".jar"))
    assert [p for p, _ in got] == ["/t.tgz!/lib/in.jar", "/t.tgz!/lib/other.bin!/deep.jar"]


def test_depth_limit():
    data = b"core"
    for level in range(7):
        data = zip_of({f"l{level}.zip": data})
    got, warnings = walk("/d.zip", data, ArchiveLimits(max_depth=3))
    assert [p.count("!/") for p, _ in got] == [1, 2, 3]
    assert warnings == ["/d.zip!/l6.zip!/l5.zip!/l4.zip: archive nested deeper than 3 levels (archives.max_depth);"
                        " not opened"]
    assert walk("/d.zip", data, ArchiveLimits(max_depth=0)) == ([], ["/d.zip: archive nested deeper than 0 levels"
                                                                     " (archives.max_depth); not opened"])


def test_member_size_limit_declared_and_streamed():
    big = b"x" * 5000
    got, warnings = walk("/m.zip", zip_of({"big": big, "small": b"s"}), ArchiveLimits(max_member_bytes=4096))
    assert got == [("/m.zip!/big", None), ("/m.zip!/small", b"s")]
    assert warnings == ["/m.zip!/big: declares 5000 bytes, larger than 4096 (archives.max_member_bytes); not read"]
    got, warnings = walk("/m.gz", gzip.compress(big), ArchiveLimits(max_member_bytes=4096))
    assert got == [("/m.gz!/m", None)]
    assert warnings == ["/m.gz!/m: larger than 4096 bytes (archives.max_member_bytes); not read"]


def test_a_zip_header_that_lies_about_the_size_cannot_inflate_past_it():
    data = bytearray(zip_of({"a": b"A" * 100_000}))
    central = data.rindex(b"PK\x01\x02")
    data[central + 24:central + 28] = (10).to_bytes(4, "little")  # directory says 10 bytes
    got, warnings = walk("/l.zip", bytes(data), ArchiveLimits(max_member_bytes=1000))
    assert got == [("/l.zip!/a", None)]
    assert len(warnings) == 1 and warnings[0].startswith("/l.zip!/a: ")


def test_member_count_limit_stops_the_walk():
    got, warnings = walk("/c.zip", zip_of({f"f{i}": b"x" for i in range(10)}), ArchiveLimits(max_members=4))
    assert len(got) == 4
    assert warnings == ["/c.zip: more than 4 archive members (archives.max_members); the rest not read"]


def test_total_limit_counts_every_level():
    inner = zip_of({f"f{i}": bytes([i]) * 1000 for i in range(5)})
    outer = zip_of({"a.zip": inner, "b.zip": inner})
    got, warnings = walk("/t.zip", outer, ArchiveLimits(max_total_bytes=4000))
    read = [p for p, d in got if d is not None]
    assert sum(len(d) for _, d in got if d is not None) <= 4000
    assert "/t.zip!/b.zip!/f4" not in read
    assert warnings == ["/t.zip: archive contents exceed 4000 bytes (archives.max_total_bytes); the rest not read"]


def test_gzip_bomb_member_is_cut_by_ratio_while_streaming():
    bomb = gzip.compress(b"\0" * (64 << 20))  # 64 MiB of zeros in about 64 KB
    got, warnings = walk("/b.tar", tar_of({"logs/bomb.gz": bomb, "after.txt": b"still read"}),
                         ArchiveLimits(ratio_floor=1 << 20))
    assert ("/b.tar!/logs/bomb.gz!/bomb", None) in got and ("/b.tar!/after.txt", b"still read") in got
    assert warnings == ["/b.tar!/logs/bomb.gz: compression ratio over 200:1 (archives.max_ratio, decompression"
                        " bomb?); the rest not read"]


def test_zip_bomb_member_is_refused_before_inflating():
    bomb = zip_of({"zeros": b"\0" * (16 << 20)})
    got, warnings = walk("/z.zip", bomb)
    assert got == [("/z.zip!/zeros", None)]
    assert warnings == ["/z.zip!/zeros: compression ratio over 200:1 (archives.max_ratio, zip bomb?); not read"]


def test_zip_of_zips_bomb_is_bounded_and_its_warnings_capped():
    layer = zip_of({"z": b"\0" * (1 << 20)})
    for i in range(6):  # 2^6 copies of 1 MiB each, nested six deep: 64 MiB from a few KB
        layer = zip_of({f"a{i}.zip": layer, f"b{i}.zip": layer})
    got, warnings = walk("/42.zip", layer, ArchiveLimits(max_total_bytes=8 << 20, max_depth=10))
    assert sum(len(d) for _, d in got if d is not None) <= 8 << 20
    assert "/42.zip: archive contents exceed 8388608 bytes (archives.max_total_bytes); the rest not read" in warnings
    got, warnings = walk("/42.zip", layer, ArchiveLimits(max_depth=3))
    assert len(warnings) == 8 and all("(archives.max_depth); not opened" in w for w in warnings)
    many = zip_of({f"f{i}": b"x" * 100 for i in range(32)})
    got, warnings = walk("/w.zip", many, ArchiveLimits(max_member_bytes=10))
    assert len(warnings) == 21 and warnings[-1] == "/w.zip: 12 more archive limit warning(s) not shown"


def test_recursive_nesting_is_not_opened_again():
    inner = zip_of({"x": b"1"})
    w = _Walk(ArchiveLimits(), [], None, True)
    # as in a zip quine: the member's bytes are those of an archive it is nested in
    got = [m.path for m in w.container("/q.zip!/self.zip", _Blob(inner, None), 1, (hashlib.sha1(inner).digest(),))]
    assert got == [] and w.warnings == ["/q.zip!/self.zip: contains an archive it is nested in (recursive nesting);"
                                        " not opened again"]


def test_huge_pax_header_is_refused_before_it_is_read():
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        ti = tarfile.TarInfo("a")
        ti.pax_headers = {"comment": "c" * 200_000}
        ti.size = 1
        tf.addfile(ti, io.BytesIO(b"1"))
    got, warnings = walk("/p.tar", buf.getvalue(), ArchiveLimits(max_member_bytes=100_000))
    assert got == []
    assert len(warnings) == 1 and "tar header of" in warnings[0] and "(archives.max_member_bytes)" in warnings[0]


def test_damaged_containers_cost_only_themselves():
    good = zip_of({"ok": b"1"})
    torn = tar_of({"a": b"x" * 3000, "b": b"y"}, "w:gz")[:-10]
    got, warnings = walk("/d.zip", zip_of({"t.tar.gz": torn, "g.zip": good, "bad.jar": b"PK\x03\x04 torn"}))
    assert ("/d.zip!/g.zip!/ok", b"1") in got
    assert [w for w in warnings if w.startswith("/d.zip!/t.tar.gz")] == [
        "/d.zip!/t.tar.gz: corrupt compressed data (Compressed file ended before the end-of-stream marker"
        " was reached); the rest not read"]
    assert any(w.startswith("/d.zip!/bad.jar: not a readable zip archive") for w in warnings), warnings


def test_limits_from_policy():
    limits = ArchiveLimits.from_policy({"archives": {"max_depth": 2, "max_ratio": 50}}, max_total_bytes=10)
    assert (limits.max_depth, limits.max_ratio, limits.max_total_bytes) == (2, 50.0, 10)
    with pytest.raises(ValueError, match="archives.max_depth: expected a number >= 0"):
        ArchiveLimits.from_policy({"archives": {"max_depth": "deep"}})


def test_policy_schema_knows_the_archives_section():
    from stowaway.ingest.policy_schema import validate

    assert validate({"archives": {"max_depth": 0, "max_ratio": 50.5, "max_total_bytes": 1 << 20}}) == []
    assert validate({"archives": {"max_depth": -1, "max_members": "many"}}) == [
        "error: archives.max_depth: expected an integer >= 0, got -1",
        "error: archives.max_members: expected an integer, got a string"]


def test_a_zip_directory_too_large_to_hold_is_not_opened():
    many = zip_of({f"c/C{i}.class": b"" for i in range(3000)})  # about 130 KB of directory
    got, warnings = walk("/many.jar", many, ArchiveLimits(max_member_bytes=256 << 10))
    assert got == [] and len(warnings) == 1
    assert warnings[0].startswith("/many.jar: zip directory of ") and "members not read" in warnings[0]
    assert len(walk("/many.jar", many)[0]) == 3000


def test_sevenzip_bomb_refused_by_declared_ratio_and_members_capped():
    bomb = sevenz_of({"zeros": bytes(32 << 20)})
    got, warnings = walk("/b.7z", bomb)
    assert got == [] and warnings == ["/b.7z: compression ratio over 200:1 (archives.max_ratio); members not read"]
    data = sevenz_of({"big": bytes(range(256)) * 40, "small": b"s"})
    got, warnings = walk("/m.7z", data, ArchiveLimits(max_member_bytes=4096))
    assert dict(got) == {"/m.7z!/big": None, "/m.7z!/small": b"s"}
    assert warnings == ["/m.7z!/big: larger than 4096 bytes (archives.max_member_bytes); not read"]


@pytest.mark.parametrize("name, make", [
    ("/f.tar.gz", lambda: tar_of({"lib/in.jar": INNER}, "w:gz")),
    ("/f.zip", lambda: zip_of({"lib/in.jar": INNER})),
    ("/f.7z", lambda: sevenz_of({"lib/in.jar": INNER})),
])
def test_a_large_file_is_read_in_place_from_its_spool(name, make, tmp_path):
    import tempfile

    data = make()
    with tempfile.TemporaryFile() as spool:  # what the layer walker hands over for a large file
        spool.write(data)
        got, warnings = walk(name, spool)
    assert got == walk(name, data)[0] and [p for p, _ in got] == [f"{name}!/lib/in.jar", f"{name}!/lib/in.jar!/app/.env",
                                                                   f"{name}!/lib/in.jar!/a.class"]
    assert warnings == []


# --- cpio, rpm, and what is recognised but not opened ----------------------------------------------

@pytest.fixture(scope="session")
def rpms() -> dict:
    """Real rpm packages built by rpmbuild, one per payload compression, holding a jar, a file and a symlink."""
    from archive_vectors import RPM_PAYLOADS, rpm_of

    out = {kind: rpm_of({"/opt/demo/inner.jar": INNER, "/opt/demo/.env": b"TOKEN=x\n"}, kind, symlink="/opt/demo/link")
           for kind in RPM_PAYLOADS}
    if None in out.values():
        pytest.skip("rpmbuild (Debian's rpm package) is not installed")
    return out


@pytest.mark.parametrize("kind", ["gzip", "xz", "zstd", "bzip2"])
def test_rpm_payloads_every_compression_and_nested_members(rpms, kind):
    data = rpms[kind]
    assert kind_of("/demo.rpm", data[:600]) == "rpm"
    got, warnings = walk("/demo.rpm", data)
    assert dict(got) == {"/demo.rpm!/opt/demo/inner.jar": INNER, "/demo.rpm!/opt/demo/.env": b"TOKEN=x\n",
                         "/demo.rpm!/opt/demo/inner.jar!/app/.env": b"TOKEN=x",
                         "/demo.rpm!/opt/demo/inner.jar!/a.class": b"\xca\xfe\xba\xbe"}, warnings
    assert warnings == []


def test_rpm_limits_and_damage(rpms):
    data = rpms["gzip"]
    got, warnings = walk("/demo.rpm", data, ArchiveLimits(max_member_bytes=4))
    assert [p for p, c in got if c is not None] == []
    assert any("inner.jar: " in w and "archives.max_member_bytes" in w for w in warnings)
    got, warnings = walk("/demo.rpm", data[:200])
    assert got == [] and any("damaged rpm package" in w or "truncated rpm" in w for w in warnings)
    got, warnings = walk("/demo.rpm", data[:-40])  # the payload cut short
    assert warnings and all("/demo.rpm" in w for w in warnings)


@pytest.mark.parametrize("fmt", ["newc", "crc", "odc"])
def test_cpio_formats_written_by_gnu_cpio(fmt):
    from archive_vectors import cpio_of

    data = cpio_of({"etc/a.conf": b"password=hunter2\n", "lib/in.jar": INNER, "odd/len": b"abc"}, fmt)
    if data is None:
        pytest.skip("GNU cpio is not installed")
    got, warnings = walk("/boot/initrd.cpio", data)
    assert dict(got) == {"/boot/initrd.cpio!/etc/a.conf": b"password=hunter2\n", "/boot/initrd.cpio!/lib/in.jar": INNER,
                         "/boot/initrd.cpio!/odd/len": b"abc", "/boot/initrd.cpio!/lib/in.jar!/app/.env": b"TOKEN=x",
                         "/boot/initrd.cpio!/lib/in.jar!/a.class": b"\xca\xfe\xba\xbe"}
    assert warnings == []
    # as initramfs images are: gzip-compressed, a member read or not, in one pass
    got, _ = walk("/boot/initrd.img", gzip.compress(data), want=lambda n: n.endswith(".conf"))
    assert got == [("/boot/initrd.img!/etc/a.conf", b"password=hunter2\n")]
    got, warnings = walk("/x.cpio", data[: len(data) // 2])
    assert any("cpio" in w and ("truncated" in w or "damaged" in w) for w in warnings)
    got, warnings = walk("/x.cpio", data, ArchiveLimits(max_total_bytes=20))
    assert any("archives.max_total_bytes" in w for w in warnings)


def test_what_no_reader_opens_is_said_not_opened():
    from stowaway.ingest.archives import not_opened

    rar = b"Rar!\x1a\x07\x01\x00" + bytes(64)  # RAR 5 signature (rarlab's technote)
    cab = b"MSCF\x00\x00\x00\x00" + bytes(64)  # Microsoft cabinet header signature
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("ok.txt", b"fine")
        zf.writestr("old.txt", b"imploded")
    raw = bytearray(buf.getvalue())
    # mark the second member as PKWARE implode (method 6) in its local header and its directory entry
    local = raw.index(b"PK\x03\x04", 1)
    raw[local + 8:local + 10] = (6).to_bytes(2, "little")
    central = raw.index(b"PK\x01\x02", raw.index(b"PK\x01\x02") + 1)
    raw[central + 10:central + 12] = (6).to_bytes(2, "little")
    warnings: list[str] = []
    for name, data in (("/a.rar", rar), ("/b.cab", cab), ("/c.zip", bytes(raw)), ("/d.tar", tar_of({"in.rar": rar}))):
        assert is_archive(name, data[:600])
        got = [(m.path, m.read()) for m in iter_members(name, data, warnings=warnings)]
        if name == "/c.zip":
            assert got == [("/c.zip!/ok.txt", b"fine"), ("/c.zip!/old.txt", None)]
    assert not_opened([f"layer 0: secrets: {w}" for w in warnings]) == [
        {"path": "/a.rar", "format": "rar archive", "reason": "not opened: rar archive (no reader for this format here);"
                                                              " its members are not checked"},
        {"path": "/b.cab", "format": "cab archive", "reason": "not opened: cab archive (no reader for this format here);"
                                                              " its members are not checked"},
        {"path": "/c.zip!/old.txt", "format": "implode-compressed zip member",
         "reason": "not opened: implode-compressed zip member (no reader for this method here)"},
        {"path": "/d.tar!/in.rar", "format": "rar archive", "reason": "not opened: rar archive (no reader for this format"
                                                                      " here); its members are not checked"}]


def test_a_large_nested_archive_is_walked_from_a_spool(monkeypatch):
    """Past SPOOL_OVER a nested archive's bytes go to an unnamed temporary file before its members are
    walked (memory holds one large member at a time); what is found is the same."""
    import tempfile

    from stowaway.ingest import archives

    data = tar_of({"lib/in.jar": INNER, "lib/b.tar.gz": tar_of({"x/in.jar": INNER}, "w:gz")})
    expected, _ = walk("/x.tar", data)
    spooled = []
    real = tempfile.TemporaryFile

    def counting(*a, **kw):
        spooled.append(kw.get("prefix"))
        return real(*a, **kw)

    monkeypatch.setattr(archives, "SPOOL_OVER", 100)
    monkeypatch.setattr(tempfile, "TemporaryFile", counting)
    got, warnings = walk("/x.tar", data)
    assert got == expected and warnings == []
    assert spooled.count("stowaway-member-") == 3  # lib/in.jar, lib/b.tar.gz and its x/in.jar
