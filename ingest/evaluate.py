"""The evaluate stage: image-level judgement in the writer process, with the database.

`Evaluator.evaluate` takes what the index and apply stages produced for one image (an `ImageResult`,
from this process, a local worker or a Dask worker alike) and runs, in their declared order, the
`stage = "evaluate"` analyzers: configuration baselines, vulnerability matching against the advisory
store, software compliance and the base-image comparison, which consult `ctx.db`. Then it redacts the
image config (secrets in Env, Labels, Cmd and history are masked) — always, whatever was selected.

Workers never need the database: everything here reads the writer's. A failed redaction fails the
scan (ScanError) before anything of the image is written, so no raw value is ever stored.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stowaway.analyzers.base import Analyzer, ImageContext, load_all, ordered

from .apply import run_collect
from .model import ScanError

if TYPE_CHECKING:
    from .analysis import ImageResult


class Evaluator:
    """Evaluates images for the analyzers each result names (its `analyzers`); instances are cached."""

    def __init__(self, policy: dict | None = None):
        self.policy = policy or {}
        self._instances: dict[str, Analyzer] = {}
        self._scanner: Any = None

    def analyzers_for(self, names) -> list[Analyzer]:
        registry = load_all()
        classes = ordered([registry[n] for n in names if n in registry and registry[n].stage == "evaluate"])
        out = []
        for cls in classes:
            if cls.name not in self._instances:
                self._instances[cls.name] = cls(self.policy)
            out.append(self._instances[cls.name])
        return out

    def evaluate(self, database, res: "ImageResult") -> None:
        """Fills res (findings, facts, warnings) and redacts res.spec; raises ScanError on failure."""
        ctx = ImageContext(spec=res.spec, fs=res.fs, policy=self.policy, db=database, os=res.os,
                           packages=res.packages, findings=res.findings, facts=res.facts,
                           layer_entries=res.layer_entries, owned_files=res.owned_files)
        run_collect(self.analyzers_for(res.analyzers), ctx, res.records)
        res.warnings += ctx.warnings
        res.os, res.packages, res.findings, res.facts = ctx.os, ctx.packages, ctx.findings, ctx.facts
        self.redact(res)

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
