"""The evaluate stage: image-level judgement, split between where the layers were read and the writer.

`Evaluator` runs, in their declared order, the `stage = "evaluate"` analyzers an image's result names
(its `analyzers`): configuration baselines, software compliance, vulnerability matching against the
advisory store and the base-image comparison; then it redacts the image config (secrets in Env,
Labels, Cmd and history are masked) -- always, whatever was selected.

Two places, one order:

* `evaluate_where_read` runs right after apply, where the layers were read (this process, a local
  worker or a Dask worker): every evaluator that needs no database (`needs_db = False` and consuming
  no evaluator that does) on the applied image, then the redaction. The result that leaves the worker
  is already judged and masked, and no longer carries the filesystem, the entry lists or the owned
  files: the single writer neither unpickles nor evaluates them.
* `evaluate` runs in the writer with its database (read only): the evaluators that consult it
  (advisories, stored images) and any that consume one of them, on the image's spec, OS, packages,
  findings and facts.

A worker never needs the database. A failed redaction fails the scan (ScanError) before anything of
the image leaves the worker, so no raw value is ever stored or sent.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable

from stowaway.analyzers.base import Analyzer, ImageContext, _dependencies, load, ordered

from .model import ScanError

if TYPE_CHECKING:
    from .analysis import ImageResult


class Evaluator:
    """Evaluates images for the analyzers each result names (its `analyzers`); instances are cached
    (`instances`: analyzers already built for this policy, reused)."""

    def __init__(self, policy: dict | None = None, instances: Iterable[Analyzer] = ()):
        self.policy = policy or {}
        self._instances: dict[str, Analyzer] = {a.name: a for a in instances}
        self._scanner: Any = None
        self._placed: dict[tuple, tuple[list[Analyzer], list[Analyzer]]] = {}

    def analyzers_for(self, names) -> list[Analyzer]:
        registry = load(names)
        classes = ordered([registry[n] for n in names if n in registry and registry[n].stage == "evaluate"])
        out = []
        for cls in classes:
            if cls.name not in self._instances:
                self._instances[cls.name] = cls(self.policy)
            out.append(self._instances[cls.name])
        return out

    def placement(self, names) -> tuple[list[Analyzer], list[Analyzer]]:
        """(evaluators that run where the layers were read, evaluators that run in the writer), each in
        the declared order: the writer's are those that need the database and those that consume them."""
        key = tuple(sorted(names))
        if key not in self._placed:
            analyzers = self.analyzers_for(names)
            chosen = {type(a).name: type(a) for a in analyzers}
            in_writer: set[str] = set()
            for a in analyzers:  # dependency order: a dependency is placed before its consumer
                if a.needs_db or _dependencies(type(a), chosen, strict_names=False) & in_writer:
                    in_writer.add(a.name)
            self._placed[key] = ([a for a in analyzers if a.name not in in_writer],
                                 [a for a in analyzers if a.name in in_writer])
        return self._placed[key]

    def needs_writer(self, names) -> list[Analyzer]:
        return self.placement(names)[1]

    def evaluate_where_read(self, res: "ImageResult", ctx: ImageContext, records: dict[str, list[list[dict]]]) -> None:
        """Right after apply, where the layers were read (ctx: the applied image, no database): the
        evaluators that need no database, then the redaction. Fills res from ctx and keeps only what
        the writer's evaluators still need (their per-layer records). Raises ScanError on failure."""
        from .apply import run_collect  # here, not at import: a rescan of an unchanged image evaluates nothing

        here, there = self.placement(res.analyzers)
        run_collect(here, ctx, records)
        res.warnings += ctx.warnings
        res.os, res.packages, res.findings, res.facts = ctx.os, ctx.packages, ctx.findings, ctx.facts
        self.redact(res)
        res.records = {a.name: records[a.name] for a in there if a.name in records}
        res.fs, res.layer_entries, res.owned_files = None, [], set()
        res.evaluated = "worker"

    def evaluate(self, database, res: "ImageResult") -> None:
        """In the writer: fills res (findings, facts, warnings) by the evaluators that need the database
        (all of them, and the redaction, for a result nobody evaluated yet); raises ScanError on failure.
        Evaluates a result once: a second call (a batch written again image by image) does nothing."""
        if res.evaluated == "writer":
            return
        from .apply import run_collect

        analyzers = self.needs_writer(res.analyzers) if res.evaluated == "worker" else self.analyzers_for(res.analyzers)
        # on copies: a failed evaluation leaves res as it was (a batch written again image by image)
        ctx = ImageContext(spec=res.spec, fs=res.fs, policy=self.policy, db=database, os=res.os,
                           packages=list(res.packages), findings=list(res.findings), facts=dict(res.facts),
                           layer_entries=res.layer_entries, owned_files=res.owned_files)
        run_collect(analyzers, ctx, res.records)
        if res.evaluated != "worker":
            self.redact(res)
        res.warnings += ctx.warnings
        res.os, res.packages, res.findings, res.facts = ctx.os, ctx.packages, ctx.findings, ctx.facts
        res.evaluated = "writer"

    def redact(self, res: "ImageResult") -> None:
        from stowaway.analyzers.secrets import redaction
        from stowaway.analyzers.secrets.analyzer import SecretScanner

        try:
            if self._scanner is None:
                self._scanner = SecretScanner(self.policy)
            redaction.redact(res.spec, self._scanner)
        except Exception as exc:
            # the message of the exception may quote the very value being masked: not repeated
            raise ScanError(f"{res.reference}: the image config could not be redacted ({exc.__class__.__name__});"
                            " nothing of this image was stored") from None
