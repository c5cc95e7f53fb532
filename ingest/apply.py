"""The applier: once per image, the layers' results become one image (after Trivy's `applier`).

Input: the image's layers bottom first, each an `IndexedLayer` (the index stage's typed result: its
position, diff_id, the walker's entry list, each analyzer's records, and whether it came from the layer
cache). Output: an `ImageContext` holding

* the squashed filesystem (`fs`): whiteouts and opaque directories applied, what is still visible,
  and the layer that added each visible path;
* the entry lists themselves (`layer_entries`);
* what the index analyzers' `collect` made of their records, in their declared dependency order:
  the OS, packages (OS package managers also fill `owned_files`, the installed-file ownership the
  application inventories and compliance consume), findings and facts;
* packages de-duplicated (one per ecosystem, name, version and path) and given a package URL when
  their analyzer had none.

This runs where the layers were read (in-process, a local worker or a Dask worker) and never touches
the database. Nested archives are opened by their analyzers through one resolver (ingest/archives.py).
"""
from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from typing import Iterable

from stowaway.analyzers.base import Analyzer, Fact, ImageContext

from .model import Finding, ImageSpec, OSInfo, Package, ScanError
from .squash import Filesystem


@dataclass
class IndexedLayer:
    """The index stage's result for one layer of one image, whether read now or taken from the cache."""

    position: int  # in this image, bottom first
    diff_id: str
    entries: list[tuple]  # the walker's entry tuples (path, type, size, mode, uid, gid, linkname)
    records: dict[str, list[dict]] = field(default_factory=dict)  # analyzer name -> its records for this layer
    cached: bool = False  # True: walk and records came from the layer cache, the layer was not read
    # a layer read now: (the analyzers it was walked for, the skim's stretches of `entries`), see
    # layers.LayerResult.skim_blocks; None when unknown (a cached layer)
    skimmed: tuple[tuple[str, ...], list[tuple[int, int, int]]] | None = None


def run_collect(analyzers: Iterable[Analyzer], ctx: ImageContext, records: dict[str, list[list[dict]]]) -> None:
    """Each analyzer's `collect`, in the order given, into ctx. A ScanError fails the image; any other
    exception is that analyzer's failure only: a warning, its traceback kept as a fact."""
    for a in analyzers:
        try:
            for item in a.collect(ctx, records.get(a.name, [])) or ():
                if isinstance(item, Package):
                    ctx.packages.append(item)
                elif isinstance(item, Finding):
                    ctx.findings.append(item)
                elif isinstance(item, OSInfo):
                    ctx.os = item
                elif isinstance(item, Fact):
                    ctx.facts[item.name] = item.value
        except ScanError:
            raise
        except Exception as exc:
            ctx.warn(f"{a.name}: {exc.__class__.__name__}: {exc}")
            ctx.facts.setdefault("analyzer_errors", {})[a.name] = traceback.format_exc()[-4000:]


class Applier:
    """Applies an image's layers for a set of index-stage analyzers (in dependency order)."""

    def __init__(self, analyzers: list[Analyzer], policy: dict):
        self.analyzers = [a for a in analyzers if a.stage == "index"]
        self.policy = policy

    def apply(self, spec: ImageSpec | None, layers: list[IndexedLayer]) -> ImageContext:
        entries = [layer.entries for layer in layers]
        ctx = ImageContext(spec=spec, fs=Filesystem.build(entries), policy=self.policy, layer_entries=entries,
                           layer_skims=[layer.skimmed for layer in layers])
        records = records_by_analyzer(self.analyzers, layers)
        run_collect(self.analyzers, ctx, records)
        for a in self.analyzers:  # background work started in analyze() ends before the records leave this process
            a.settle(records.get(a.name, []))
        ctx.packages = unique_packages(ctx.packages)
        return ctx


def records_by_analyzer(analyzers: Iterable[Analyzer], layers: list[IndexedLayer]) -> dict[str, list[list[dict]]]:
    """What `collect` takes: per analyzer, its records of every layer in image order."""
    return {a.name: [layer.records.get(a.name, []) for layer in layers] for a in analyzers}


def unique_packages(packages: list[Package]) -> list[Package]:
    """One package per key, the first reported; each with a package URL when one can be made."""
    if not packages:  # nothing to name (a secrets-only scan): the package-URL module is not even loaded
        return []
    from dataclasses import replace

    from stowaway.analyzers.inventory._app import purl_of

    out: dict[tuple, Package] = {}
    for p in packages:
        if p.key in out:
            continue
        if not p.purl and p.name:
            p = replace(p, purl=purl_of(p.ecosystem, p.name, p.version))
        out[p.key] = p
    return list(out.values())
