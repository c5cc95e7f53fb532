"""The layer walker's own parser of plain tar headers must read every header exactly as tarfile does."""
from __future__ import annotations

import io
import tarfile

import pytest

from stowaway.ingest.layers import CappedTarInfo, ForwardReader, iter_members
from stowaway.ingest.model import HARDLINK, REG

FIELDS = ("name", "mode", "uid", "gid", "size", "mtime", "chksum", "type", "linkname", "uname", "gname",
          "devmajor", "devminor", "offset", "offset_data", "pax_headers", "sparse")


def _entry(name, kind=tarfile.REGTYPE, data=b"", **attrs):
    ti = tarfile.TarInfo(name)
    ti.type, ti.size, ti.mtime, ti.mode = kind, len(data), 1700000000, 0o640
    for k, v in attrs.items():
        setattr(ti, k, v)
    return ti, (io.BytesIO(data) if kind in (tarfile.REGTYPE, tarfile.AREGTYPE) else None)


def _tar(fmt, entries) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt, encoding="utf-8") as tf:
        for ti, fh in entries:
            tf.addfile(ti, fh)
    return buf.getvalue()


def _entries():
    return [
        _entry("etc/passwd", data=b"root:x:0:0::/root:/bin/sh\n", uid=0, gid=0, uname="root", gname="root"),
        _entry("srv/empty", data=b""),
        _entry("srv/dir/", tarfile.DIRTYPE, mode=0o755),
        _entry("srv/link", tarfile.SYMTYPE, linkname="../etc/passwd"),
        _entry("srv/hard", tarfile.LNKTYPE, linkname="etc/passwd"),
        _entry("dev/null", tarfile.CHRTYPE, devmajor=1, devminor=3),
        _entry("dev/sda", tarfile.BLKTYPE, devmajor=8, devminor=0),
        _entry("run/fifo", tarfile.FIFOTYPE),
        _entry("a/" + "deep/" * 30 + "file.txt", data=b"x" * 700),  # ustar prefix, or a long name
        _entry("l" * 150, tarfile.SYMTYPE, linkname="t" * 150),  # long link target
        _entry("srv/caf\u00e9.txt", data=b"non-ascii name"),
        _entry("srv/big-ids", data=b"1234", uid=0o7777777 + 5, gid=2 ** 30),  # base-256 (GNU) or pax numbers
        _entry("srv/after", data=b"y" * 513),
    ]


def _parse(data: bytes, tarinfo) -> list[tuple]:
    reader = ForwardReader(io.BytesIO(data))
    tf = tarfile.open(fileobj=reader, mode="r:", tarinfo=tarinfo)
    out = []
    for m in iter_members(tf):
        fh = tf.extractfile(m) if m.isreg() else None
        out.append(tuple(getattr(m, f) for f in FIELDS) + ((fh.read() if fh else None),))
    return out


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_every_header_as_tarfile_reads_it(fmt):
    entries = _entries()
    if fmt == tarfile.USTAR_FORMAT:  # no long names, no big numbers, ASCII only
        entries = [e for e in entries if len(e[0].linkname) <= 100 and e[0].uid < 0o7777777
                   and e[0].name.isascii() and len(e[0].name) <= 255]
    data = _tar(fmt, entries)
    assert _parse(data, CappedTarInfo) == _parse(data, tarfile.TarInfo)
    assert len(_parse(data, CappedTarInfo)) == len(entries)


def test_plain_headers_take_the_fast_path_and_others_do_not():
    plain = _tar(tarfile.USTAR_FORMAT, [_entry("etc/hosts", data=b"127.0.0.1 localhost\n")])
    tf = tarfile.open(fileobj=io.BytesIO(plain), mode="r:")
    tf.fileobj.seek(512)  # as just after reading the header
    fast = CappedTarInfo._fast(plain[:512], tf)
    assert fast is not None and (fast.name, fast.size, fast.offset_data) == ("etc/hosts", 20, 512)
    assert tf.offset == 1024  # the next header, after one block of data
    longname = _tar(tarfile.GNU_FORMAT, [_entry("n" * 200, data=b"z")])
    assert CappedTarInfo._fast(longname[:512], tf) is None  # a GNU long-name header: tarfile's parser
    assert CappedTarInfo._fast(b"\0" * 512, tf) is None  # end of archive: tarfile says so


def test_signed_checksum_and_v7_directory_read_as_tarfile_reads_them():
    data = bytearray(_tar(tarfile.USTAR_FORMAT, [_entry("srv/\u00ff\u00fe".encode("latin-1").decode("latin-1"),
                                                        data=b"q")]))
    # some old tars sum header bytes as signed chars: rewrite the checksum that way
    header = data[:512]
    signed = 256 + sum((b - 256 if b > 127 else b) for i, b in enumerate(header) if not 148 <= i < 156)
    data[148:156] = b"%06o\0 " % signed
    v7 = bytearray(_tar(tarfile.USTAR_FORMAT, [_entry("old/dir/", data=b"")]))
    v7[156:157] = b"\0"  # AREGTYPE with a trailing slash: a directory in the v7 format
    v7[148:156] = b"%06o\0 " % (256 + sum(b for i, b in enumerate(v7[:512]) if not 148 <= i < 156))
    for blob in (bytes(data), bytes(v7)):
        assert _parse(blob, CappedTarInfo) == _parse(blob, tarfile.TarInfo)
    assert _parse(bytes(v7), CappedTarInfo)[0][7] == tarfile.DIRTYPE


@pytest.mark.parametrize("offset", [0, 100, 124, 148, 156, 300, 600])
def test_a_corrupt_header_fails_as_tarfile_fails(offset):
    data = bytearray(_tar(tarfile.USTAR_FORMAT, [_entry("a", data=b"x" * 10), _entry("b", data=b"y")]))
    data[offset] ^= 0x5A

    def outcome(tarinfo):
        try:
            return ("ok", _parse(bytes(data), tarinfo))
        except tarfile.TarError as exc:
            return (type(exc).__name__, str(exc))

    assert outcome(CappedTarInfo) == outcome(tarfile.TarInfo)


def _normalize_reference(name: str) -> str | None:
    """normalize() without its shortcut for plain names: posixpath.normpath and the climb check."""
    import posixpath

    name = name.replace("\\", "/") if "\\" in name and "/" not in name else name
    path = posixpath.normpath("/" + name.lstrip("/"))
    if path.startswith("//"):
        path = "/" + path.lstrip("/")
    depth = 0
    for part in name.split("/"):
        if part in ("", "."):
            continue
        depth += -1 if part == ".." else 1
        if depth < 0:
            return None
    return path


def test_normalize_shortcut_agrees_with_normpath():
    import itertools
    import random

    from stowaway.ingest.layers import normalize

    parts = ["usr", "bin", ".", "..", "", ".wh.x", ".hidden", "a\\b", "x.", "..y", "é"]
    names = {"/".join(p) for n in range(1, 4) for p in itertools.product(parts, repeat=n)}
    rnd = random.Random(5)
    names |= {"".join(rnd.choice("ab./\\") for _ in range(rnd.randint(1, 12))) for _ in range(20000)}
    names |= {"./" + n for n in list(names)[:5000]}
    for name in names:
        assert normalize(name) == _normalize_reference(name), name


def test_forward_reader_reads_and_skips_across_chunks_as_a_file_does(monkeypatch):
    import random

    monkeypatch.setattr(ForwardReader, "CHUNK", 7)  # every read and skip crosses chunk boundaries
    rnd = random.Random(3)
    data = bytes(rnd.randrange(256) for _ in range(5000))
    ours, ref = ForwardReader(io.BytesIO(data)), io.BytesIO(data)
    while ref.tell() < len(data):
        if rnd.random() < 0.5:
            n = rnd.choice([0, 1, 6, 7, 8, 13, 512, 600])
            assert ours.read(n) == ref.read(n)
        else:
            to = min(len(data), ref.tell() + rnd.choice([0, 1, 7, 30, 700]))
            assert ours.seek(to) == ref.seek(to)
        assert ours.tell() == ref.tell()
    assert ours.read(10) == b"" and ours.read() == b""
    with pytest.raises(EOFError):
        ours.seek(len(data) + 1)
    whole = ForwardReader(io.BytesIO(data))
    assert whole.read(3) == data[:3] and whole.read() == data[3:]


def test_background_hash_is_the_hash_of_the_stream_and_its_thread_ends():
    import gc
    import hashlib
    import threading

    from stowaway.ingest.streams import BackgroundHash, HashingReader

    data = bytes(range(256)) * 40000
    reader = HashingReader(io.BytesIO(data), background=True)
    while reader.read(1 << 16):
        pass
    assert reader.digest() == "sha256:" + hashlib.sha256(data).hexdigest()
    assert not [t for t in threading.enumerate() if t.name == "stowaway-hash"]
    # a reader dropped half-way (a layer that failed) does not leave its thread waiting
    dropped = BackgroundHash("sha256")
    dropped.update(data[:100000])
    thread = dropped._thread
    del dropped
    gc.collect()
    assert thread is not None
    thread.join(5)
    assert not thread.is_alive()


def test_a_plain_tar_member_is_read_at_its_offset(tmp_path):
    from stowaway.ingest.sources.archive import Tree, _Region
    from stowaway.ingest.streams import Limits

    blob = bytes(range(256)) * 5000
    path = tmp_path / "a.tar"
    path.write_bytes(_tar(tarfile.USTAR_FORMAT, [_entry("x/layer.tar", data=blob), _entry("manifest.json", data=b"[]")]))
    tree = Tree(str(path), Limits())
    fh = tree.open("x/layer.tar")
    assert isinstance(fh, _Region)
    assert fh.read(10) == blob[:10] and fh.read(2 << 20) == blob[10:] and fh.read(5) == b""
    with tree.open("manifest.json") as small:
        assert small.read() == b"[]"


class _Everything:
    """An analyzer that asks for every file and keeps what it was handed."""

    name = "everything"

    def required(self, path, info):
        return True

    def size_cap(self, path):
        return None

    def analyze(self, lf):
        return [{"path": lf.path, "data": lf.data}]


@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_walk_reads_plain_and_extended_entries_as_tarfile_does(fmt):
    from stowaway.ingest.layers import walk
    from stowaway.ingest.streams import Limits

    entries = _entries() + [_entry("z/" + "long-" * 40 + "end.txt", data=b"after a long name"),
                            _entry("z/plain-after", data=b"plain again" * 100)]
    data = _tar(fmt, entries) + b"\0" * 1024
    got = walk(io.BytesIO(data), 0, [_Everything()], Limits(), "test")
    want_files = {}
    want_entries = []
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        for m in tf:
            path = "/" + m.name
            if m.isreg():
                want_files[path] = tf.extractfile(m).read()
            want_entries.append((path, m.size if m.isreg() else None, m.mode & 0o7777, m.uid, m.gid))
    assert [(e[0], e[2] if e[1] == REG else None, e[3], e[4], e[5]) for e in got.entries
            if e[1] != HARDLINK] == [w for w in want_entries if w[0] != "/srv/hard"]
    files = {r["path"]: r["data"] for r in got.records["everything"]}
    assert {p: d for p, d in files.items() if p != "/srv/hard"} == want_files
    assert files["/srv/hard"] == want_files["/etc/passwd"]  # a hard link hands over its target's content
    assert not got.warnings


@pytest.mark.parametrize("data", [b"\0" * 1024, b"\0" * 10240])
def test_walk_of_an_empty_layer(data):
    from stowaway.ingest.layers import walk
    from stowaway.ingest.streams import Limits

    assert walk(io.BytesIO(data), 0, [_Everything()], Limits(), "test").entries == []


def test_file_info_made_through_its_slots_is_a_file_info():
    from stowaway.ingest.layers import _file_info
    from stowaway.ingest.model import FileInfo

    made = _file_info("/etc/passwd", REG, 12, 0o644, 1, 2, "", 1700000000)
    assert made == FileInfo("/etc/passwd", REG, 12, 0o644, 1, 2, "", 1700000000)
    assert hash(made) == hash(FileInfo("/etc/passwd", REG, 12, 0o644, 1, 2, "", 1700000000))
    with pytest.raises(AttributeError):
        made.size = 3  # still frozen


def test_read_ahead_hands_over_the_stream_its_errors_and_stops_when_closed():
    from stowaway.ingest.model import ScanError
    from stowaway.ingest.streams import ReadAhead

    data = bytes(range(256)) * 20000
    ahead = ReadAhead(io.BytesIO(data), chunk=1000)
    assert ahead.read(10) == data[:10] and ahead.read(5000) == data[10:1000]  # at most one chunk a read
    assert ahead.read() == data[1000:] and ahead.read(7) == b""

    class Failing(io.RawIOBase):
        def __init__(self):
            self.calls = 0

        def read(self, n=-1):
            self.calls += 1
            if self.calls > 2:
                raise ScanError("layer: decompressed size exceeds the limit")
            return b"x" * n

    failing = ReadAhead(Failing(), chunk=10)
    assert failing.read(10) == b"x" * 10 and failing.read(10) == b"x" * 10
    with pytest.raises(ScanError, match="exceeds the limit"):
        failing.read(10)  # raised here, in the reader's thread

    endless = ReadAhead(io.BytesIO(b"y" * 10_000_000), chunk=1000)
    assert endless.read(3) == b"yyy"
    endless.close()  # abandoned half-way: the thread stops and nothing reads the stream any more
    assert not endless._thread.is_alive()


def test_gc_paused_restores_the_collector_as_it_was():
    import gc

    from stowaway.ingest.layers import gc_paused

    assert gc.isenabled()
    with gc_paused():
        assert not gc.isenabled()
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the inner pause does not end the outer one
    assert gc.isenabled()
    with pytest.raises(ValueError):
        with gc_paused():
            raise ValueError
    assert gc.isenabled()


class _Nothing:
    """An analyzer that wants no file and says so only by `required` (the walker must ask it about each)."""

    name = "nothing"

    def __init__(self):
        self.asked = []

    def required(self, path, info):
        self.asked.append(path)
        return False


class _Prefixed(_Nothing):
    """Wants no file; declares /usr/ and /opt/x/ passed over, so the walker's skim may skip those."""

    def skipped_prefixes(self):
        return ("/usr/", "/opt/x/")


class _Named(_Nothing):
    def wanted_paths(self):
        return frozenset({"/usr/lib/os-release"})


def _varied_tar() -> bytes:
    kinds = [
        _entry("usr/", tarfile.DIRTYPE, mode=0o755),
        *[_entry(f"usr/share/doc/f{i}.txt", data=b"d" * (i * 37 % 1500)) for i in range(60)],
        _entry("usr/lib/os-release", data=b"ID=x\n"),
        _entry("./usr/bin/env", data=b"#!"),
        _entry("usr/bin/.hidden", data=b"h"),
        _entry("usr/bin/.wh.gone"),
        _entry("usr/share/.wh..wh..opq"),
        _entry("usr/lib/caf\u00e9", data=b"non-ascii"),
        _entry("usr/lib/new\nline", data=b"newline in the name"),
        _entry("usr/lib/link", tarfile.SYMTYPE, linkname="../bin/env"),
        _entry("usr/lib/hard", tarfile.LNKTYPE, linkname="usr/bin/env"),
        _entry("usr/lib/../../escape", data=b"out"),
        _entry("/usr/abs", data=b"absolute"),
        _entry("usr//double", data=b"x"),
        _entry("opt/x/y", data=b"z" * 3000),
        _entry("opt/xy", data=b"w"),
        _entry("etc/passwd", data=b"root:x:0:0::/root:/bin/sh\n", uid=7, gid=8, uname="u", gname="g"),
        _entry("dev/null", tarfile.CHRTYPE, devmajor=1, devminor=3),
        _entry("usr/share/" + "deep/" * 25 + "f", data=b"prefix field"),
        *[_entry(f"usr/share/more/m{i}", data=b"m" * (i * 91 % 2000), uid=i % 3) for i in range(40)],
    ]
    return _tar(tarfile.GNU_FORMAT, kinds) + b"\0" * 1024


def _walk_outcome(data, analyzers):
    from stowaway.ingest.layers import walk
    from stowaway.ingest.model import ScanError
    from stowaway.ingest.streams import Limits

    try:
        got = walk(io.BytesIO(data), 0, analyzers, Limits(), "test")
        return got.entries, got.warnings
    except ScanError as exc:
        return "error", str(exc)


@pytest.mark.parametrize("chunk", [700, 4096, 1 << 20])
def test_skimmed_entries_are_those_of_the_general_path(monkeypatch, chunk):
    """The skim (entries nobody reads, indexed a chunk at a time) and the general path index every entry
    alike, and fail alike on a damaged header, whatever the chunk boundaries."""
    monkeypatch.setattr(ForwardReader, "CHUNK", chunk)
    data = _varied_tar()
    general = _walk_outcome(data, [_Nothing()])
    assert general[0] != "error" and len(general[0]) > 100
    for analyzers in ([], [_Prefixed()], [_Named()], [_Prefixed(), _Named()]):
        assert _walk_outcome(data, analyzers) == general
    # damage one byte of a header in the skimmed stretch, with its checksum left or made right again:
    # both paths must say the same
    first = data.index(b"usr/share/doc/f30.txt")
    for field in (0, 100, 108, 124, 136, 148, 156, 265, 329, 345):
        for flip, fixed in ((0x11, False), (0x11, True), (0x4A, True)):
            bad = bytearray(data)
            bad[first + field] ^= flip
            if fixed:
                _checksum(bad, first)
            assert _walk_outcome(bytes(bad), [_Prefixed()]) == _walk_outcome(bytes(bad), [_Nothing()]), field
    # a mode with file-type bits (some writers keep them): masked alike
    odd = bytearray(data)
    odd[first + 100:first + 108] = b"0100644\0"
    _checksum(odd, first)
    assert _walk_outcome(bytes(odd), [_Prefixed()]) == _walk_outcome(bytes(odd), [_Nothing()])


def test_skim_checksum_of_headers_with_high_bytes_is_the_general_paths(monkeypatch):
    """The skim sums an ASCII header in one pass modulo 65521 (its sum is below that); a header with bytes
    over 127 is the general path's: valid, it is indexed alike; with a checksum off by exactly 65521 (what a
    sum modulo 65521 cannot tell from the right one), it fails alike."""
    data = _varied_tar()
    first = data.index(b"usr/share/doc/f30.txt")
    high = bytearray(data)
    high[first + 265:first + 272] = "us\u00e9r".encode() + b"\0\0"  # a non-ASCII user name, checksum made right
    _checksum(high, first)
    got = _walk_outcome(bytes(high), [_Prefixed()])
    assert got[0] != "error" and got == _walk_outcome(bytes(high), [_Nothing()])
    off = bytearray(data)
    name_end = off.index(b"\0", first)
    off[name_end + 1:first + 100] = b"\xff" * (first + 100 - name_end - 1)  # after the name's NUL: not read
    off[first + 157:first + 257] = b"\xff" * 100  # a regular file's link name: not read either
    off[first + 265:first + 329] = (b"\xff" * 31 + b"\0") * 2  # user and group names
    off[first + 500:first + 512] = b"\xff" * 12  # the block's padding
    _checksum(off, first)
    assert _walk_outcome(bytes(off), [_Prefixed()]) == _walk_outcome(bytes(off), [_Nothing()])
    right = int(off[first + 148:first + 154], 8)
    assert right > 65521
    off[first + 148:first + 156] = b"%06o\0 " % (right - 65521)
    got = _walk_outcome(bytes(off), [_Prefixed()])
    assert got[0] == "error" and got == _walk_outcome(bytes(off), [_Nothing()])


def _checksum(block: bytearray, at: int) -> None:
    header = block[at:at + 512]
    block[at + 148:at + 156] = b"%06o\0 " % (256 + sum(b for i, b in enumerate(header) if not 148 <= i < 156))


def test_the_walker_asks_analyzers_about_every_file_their_prefixes_do_not_cover():
    from stowaway.ingest.layers import quick_skip, walk
    from stowaway.ingest.streams import Limits

    prefixed, named = _Prefixed(), _Named()
    walk(io.BytesIO(_varied_tar()), 0, [prefixed, named], Limits(), "test")
    asked = set(prefixed.asked)
    assert asked == set(named.asked)
    assert "/usr/lib/os-release" in asked  # a named path under a skipped prefix
    assert "/usr/lib/new\nline" in asked  # '*' does not cross a newline: the prefix test does not either
    assert "/opt/xy" in asked and "/etc/passwd" in asked
    assert not [p for p in asked if p.startswith("/usr/share/doc/")]
    # the prefixes every analyzer skips; one analyzer with none: no skipping at all
    assert quick_skip([_Prefixed(), _Named()]) == (("/opt/x/", "/usr/"), frozenset({"/usr/lib/os-release"}))
    assert quick_skip([_Prefixed(), _Nothing()]) is None
    assert quick_skip([]) == (("",), frozenset())
