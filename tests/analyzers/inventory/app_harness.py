"""Helpers for the application-inventory tests: archives built in memory, and real analyzers run over
layers built in code (layer walker, squash, collect in order), without a database."""
from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass, field

from imagebuilder import layer_tar

from stowaway.analyzers.base import ImageContext, load_all
from stowaway.ingest.layers import walk
from stowaway.ingest.model import Package
from stowaway.ingest.squash import Filesystem
from stowaway.ingest.streams import Limits


def zip_bytes(files: dict, compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as z:
        for name, data in files.items():
            z.writestr(name, data.encode() if isinstance(data, str) else data)
    return buf.getvalue()


def pom(group: str, artifact: str, version: str) -> str:
    return f"#Created by Apache Maven\nversion={version}\ngroupId={group}\nartifactId={artifact}\n"


def manifest(**fields) -> str:
    return "Manifest-Version: 1.0\r\n" + "".join(f"{k.replace('_', '-')}: {v}\r\n" for k, v in fields.items()) + "\r\n"


@dataclass
class Inspected:
    ctx: ImageContext
    layer_warnings: list[str] = field(default_factory=list)

    @property
    def packages(self) -> list[Package]:
        return self.ctx.packages

    def keyed(self, ecosystem: str | None = None) -> dict[tuple[str, str, str], Package]:
        return {(p.name, p.version, p.path): p for p in self.ctx.packages if ecosystem in (None, p.ecosystem)}


def inspect(layers: list[dict], names) -> Inspected:
    registry = load_all()
    analyzers = sorted((registry[n]({}) for n in names), key=lambda a: (a.order, a.name))
    entries, records, warnings = [], {a.name: [] for a in analyzers}, []
    for index, spec in enumerate(layers):
        result = walk(io.BytesIO(layer_tar(spec)), index, analyzers, Limits(), f"layer {index}")
        entries.append(result.entries)
        warnings += result.warnings
        for a in analyzers:
            records[a.name].append(result.records.get(a.name, []))
    ctx = ImageContext(spec=None, fs=Filesystem.build(entries), policy={})
    ctx.layer_entries = entries
    for a in analyzers:
        for item in a.collect(ctx, records[a.name]) or ():
            if isinstance(item, Package):
                ctx.packages.append(item)
    return Inspected(ctx, warnings)
