"""Go binaries: the main module, its dependencies and the Go version from the embedded build info.

The linker leaves a 32-byte header starting '\\xff Go buildinf:' (in the `.go.buildinfo` section,
16-byte aligned). Go 1.18+ writes the version and module strings inline after it as varint-length
strings (flag bit 2); older binaries store pointers to Go string headers, resolved here through the
ELF program headers. Pure Python, the same reading as Go's own debug/buildinfo.
"""
from __future__ import annotations

import mmap
import struct

from ..base import Analyzer, register
from ._app import collect_packages, package, warning

MAGIC = b"\xff Go buildinf:"
ELF = b"\x7fELF"
MAX_SIZE = 256 << 20
MIN_SIZE = 1024
MAX_STRING = 1 << 20  # a module list longer than this is not a real build info
BIN_DIRS = ("/bin/", "/sbin/", "/libexec/")


class BuildInfoError(ValueError):
    pass


class _Elf:
    def __init__(self, data: bytes):
        if data[:4] != ELF or len(data) < 64:
            raise BuildInfoError("not an ELF file")
        self.data = data
        self.is64 = data[4] == 2
        self.end = "<" if data[5] != 2 else ">"
        e = self.end
        if self.is64:
            phoff, shoff = struct.unpack_from(e + "QQ", data, 0x20)
            phentsize, phnum, shentsize, shnum, shstrndx = struct.unpack_from(e + "HHHHH", data, 0x36)
        else:
            phoff, shoff = struct.unpack_from(e + "II", data, 0x1C)
            phentsize, phnum, shentsize, shnum, shstrndx = struct.unpack_from(e + "HHHHH", data, 0x2A)
        self.loads: list[tuple[int, int, int]] = []  # (vaddr, offset, filesz)
        for i in range(min(phnum, 256)):
            at = phoff + i * phentsize
            if at + (56 if self.is64 else 32) > len(data):
                break
            if self.is64:
                ptype, _, off, vaddr, _, filesz = struct.unpack_from(e + "IIQQQQ", data, at)
            else:
                ptype, off, vaddr, _, filesz = struct.unpack_from(e + "IIIII", data, at)
            if ptype == 1:  # PT_LOAD
                self.loads.append((vaddr, off, filesz))
        self.sections: dict[str, tuple[int, int]] = {}  # name -> (offset, size)
        headers = []
        for i in range(min(shnum, 4096)):
            at = shoff + i * shentsize
            if at + (64 if self.is64 else 40) > len(data):
                break
            if self.is64:
                name, _, _, _, off, size = struct.unpack_from(e + "IIQQQQ", data, at)
            else:
                name, _, _, _, off, size = struct.unpack_from(e + "IIIIII", data, at)
            headers.append((name, off, size))
        if 0 <= shstrndx < len(headers):
            strtab_off, strtab_size = headers[shstrndx][1], headers[shstrndx][2]
            strtab = data[strtab_off:strtab_off + strtab_size]
            for name, off, size in headers:
                end = strtab.find(b"\0", name)
                self.sections[strtab[name:end if end >= 0 else None].decode("ascii", "replace")] = (off, size)

    def read(self, vaddr: int, n: int) -> bytes:
        if n < 0 or n > MAX_STRING:
            raise BuildInfoError("string length out of range")
        for start, off, size in self.loads:
            if start <= vaddr and vaddr + n <= start + size:
                at = off + vaddr - start
                return self.data[at:at + n]
        raise BuildInfoError(f"address {vaddr:#x} is in no loaded segment")

    def buildinfo_offset(self) -> int:
        section = self.sections.get(".go.buildinfo")
        if section and self.data[section[0]:section[0] + len(MAGIC)] == MAGIC:
            return section[0]
        # no section headers: search, 16-byte aligned as written, a window at a time, so that a memory
        # map of a large binary gives each searched window's pages back before the next
        window = 16 << 20
        for start in range(0, len(self.data), window):
            end = min(start + window + len(MAGIC), len(self.data))
            at = self.data.find(MAGIC, start, end)
            while at >= 0 and at % 16:
                at = self.data.find(MAGIC, at + 1, end)
            if hasattr(self.data, "madvise"):
                self.data.madvise(mmap.MADV_DONTNEED, start - start % mmap.PAGESIZE, min(window, len(self.data) - start))
            if at >= 0:
                return at
        return -1


def _uvarint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while at < len(data) and shift < 64:
        b = data[at]
        at += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, at
        shift += 7
    raise BuildInfoError("bad varint")


def read_build_info(data: bytes) -> tuple[str, str] | None:
    """(go version, module info text) of a Go ELF binary; None when it has no build info."""
    elf = _Elf(data)
    at = elf.buildinfo_offset()
    if at < 0:
        return None
    header = data[at:at + 32]
    if len(header) < 32:
        raise BuildInfoError("truncated build info header")
    ptr_size, flags = header[14], header[15]
    if flags & 2:
        n, pos = _uvarint(data, at + 32)
        version = data[pos:pos + n]
        n2, pos2 = _uvarint(data, pos + n)
        if n > MAX_STRING or n2 > MAX_STRING:
            raise BuildInfoError("string length out of range")
        mod = data[pos2:pos2 + n2]
    else:
        if ptr_size not in (4, 8):
            raise BuildInfoError(f"pointer size {ptr_size}")
        end = ">" if flags & 1 else "<"
        fmt = end + ("Q" if ptr_size == 8 else "I")

        def string_at(addr: int) -> bytes:
            hdr = elf.read(addr, 2 * ptr_size)
            ptr, length = struct.unpack_from(fmt, hdr, 0)[0], struct.unpack_from(fmt, hdr, ptr_size)[0]
            return elf.read(ptr, length) if length else b""

        version = string_at(struct.unpack_from(fmt, header, 16)[0])
        mod = string_at(struct.unpack_from(fmt, header, 16 + ptr_size)[0])
    # the module text is framed by 16-byte sentinels
    if len(mod) >= 33 and mod[-17:-16] == b"\n":
        mod = mod[16:-16]
    return version.decode("utf-8", "replace"), mod.decode("utf-8", "replace")


def parse_modinfo(text: str) -> tuple[str, list[tuple[str, str]], tuple[str, str] | None, dict[str, str]]:
    """(main package path, [(module, version)] of deps after replacements, main module, build settings)."""
    path, main, deps, settings = "", None, [], {}
    for line in text.splitlines():
        parts = line.split("\t")
        kind = parts[0]
        if kind == "path" and len(parts) > 1:
            path = parts[1]
        elif kind == "mod" and len(parts) > 2:
            main = (parts[1], parts[2])
        elif kind == "dep" and len(parts) > 2:
            deps.append((parts[1], parts[2]))
        elif kind == "=>" and len(parts) > 2 and deps:
            deps[-1] = (parts[1], parts[2])  # a replace directive: the replacement is what was built
        elif kind == "build" and len(parts) > 1 and "=" in parts[1]:
            k, _, v = parts[1].partition("=")
            settings[k] = v
    return path, deps, main, settings


@register
class GoBinaries(Analyzer):
    name = "go-binary"
    version = 1
    risk = "software"
    consumes = ("owned_files",)
    produces = ("packages",)

    def required(self, path, info):
        if not (MIN_SIZE <= info.size <= MAX_SIZE):
            return False
        if not (info.mode & 0o111 or any(d in path for d in BIN_DIRS)):
            return False
        base = path[path.rfind("/") + 1:]
        return ".so" not in base and not base.endswith((".sh", ".py", ".pl", ".rb", ".js", ".txt", ".jar"))

    def analyze(self, file):
        data = file.view  # a memory map for a large binary: only the headers and build info are read
        if data[:4] != ELF:
            return []
        try:
            found = read_build_info(data)
        except (BuildInfoError, struct.error, IndexError) as exc:
            if data.find(MAGIC) >= 0:
                return [warning(file.path, f"{file.path}: unreadable Go build info ({exc})")]
            return []
        if not found:
            return []
        go_version, modinfo = found
        path, deps, main, settings = parse_modinfo(modinfo)
        meta = {"go_version": go_version, "main_path": path}
        if settings.get("GOARCH"):
            meta["goarch"] = settings["GOARCH"]
        out = []
        if main:
            out.append(package("go", main[0], main[1], file.path, metadata={**meta, "main_module": True}))
        for mod, version in deps:
            out.append(package("go", mod, version, file.path, metadata=meta))
        if go_version.startswith("go"):
            out.append(package("go", "stdlib", go_version, file.path, metadata=meta))
        return out

    def collect(self, ctx, layers):
        return collect_packages(ctx, layers, self.name)
