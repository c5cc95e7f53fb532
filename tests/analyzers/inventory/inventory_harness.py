"""Real analyzers run over layers built in code (layer walker, then the applier: squash, collect in
declared order), without a database: what the OS and application inventory tests share."""
from __future__ import annotations

import io
from dataclasses import dataclass, field

from imagebuilder import layer_tar

from stowaway.analyzers.base import ImageContext, load_all, ordered
from stowaway.ingest.apply import Applier, IndexedLayer
from stowaway.ingest.layers import walk
from stowaway.ingest.model import Package
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
    """Every layer through the real layer walker, then the real applier (squash, the named analyzers'
    collect in their declared order, package de-duplication)."""
    registry = load_all()
    analyzers = [cls(policy or {}) for cls in ordered([registry[n] for n in names])]
    indexed, warnings = [], []
    for index, spec in enumerate(layers):
        result = walk(io.BytesIO(layer_tar(spec)), index, analyzers, Limits(), f"layer {index}")
        warnings += result.warnings
        indexed.append(IndexedLayer(index, "", result.entries, result.records))
    return Inspected(Applier(analyzers, policy or {}).apply(None, indexed), warnings)
