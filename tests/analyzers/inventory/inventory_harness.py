"""Real analyzers run over layers built in code (layer walker, squash, collect in order), without a
database: what the OS and application inventory tests share."""
from __future__ import annotations

import io
from dataclasses import dataclass, field

from imagebuilder import layer_tar

from stowaway.analyzers.base import Fact, ImageContext, load_all
from stowaway.ingest.layers import walk
from stowaway.ingest.model import Finding, OSInfo, Package
from stowaway.ingest.squash import Filesystem
from stowaway.ingest.streams import Limits


@dataclass
class Inspected:
    ctx: ImageContext
    layer_warnings: list[str] = field(default_factory=list)

    @property
    def packages(self) -> list[Package]:
        return self.ctx.packages

    def by_name(self, ecosystem: str | None = None) -> dict[str, Package]:
        return {p.name: p for p in self.ctx.packages if ecosystem is None or p.ecosystem == ecosystem}


    def keyed(self, ecosystem: str | None = None) -> dict[tuple[str, str, str], Package]:
        return {(p.name, p.version, p.path): p for p in self.ctx.packages if ecosystem in (None, p.ecosystem)}


def inspect(layers: list[dict], names=("os-release", "dpkg", "rpm", "apk"), policy: dict | None = None) -> Inspected:
    """Every layer through the real layer walker, squash and the named analyzers' collect, in order."""
    registry = load_all()
    analyzers = sorted((registry[n](policy or {}) for n in names), key=lambda a: (a.order, a.name))
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
            elif isinstance(item, OSInfo):
                ctx.os = item
            elif isinstance(item, Finding):
                ctx.findings.append(item)
            elif isinstance(item, Fact):
                ctx.facts[item.name] = item.value
    return Inspected(ctx, warnings)
