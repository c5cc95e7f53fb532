"""The analyzer protocol and registry.

An analyzer has two stages:

* per layer (`required` + `analyze`): the layer walker hands it every file of a layer that it asks
  for, once, as bytes; it returns JSON-serializable records. These are cached in the database per
  (layer diff_id, analyzer name, version, fingerprint), so a layer shared by many images is read once.
* per image (`collect`): it turns the records of all the image's layers (cached or fresh) into
  `Package`, `Finding`, `OSInfo` or `Fact` objects, with the squashed filesystem at hand to tell which
  files are still visible. Image-level evaluators (vulnerability matching, baselines, base image)
  have no per-layer stage: they only `collect`, from what earlier analyzers produced, so re-evaluating
  stored images never opens an image.

Analyzers run their `collect` in `order` (inventory first, evaluators last).
"""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from typing import Any, Iterable

from stowaway.ingest.model import RISK_TYPES, FileInfo, Finding, LayerFile, OSInfo, Package


@dataclass(frozen=True)
class Fact:
    """An image-level result that is neither a package nor a finding (file statistics, OS, ...)."""

    name: str
    value: Any


class Analyzer:
    name: str = ""
    version: int = 1
    risk: str = ""  # which of RISK_TYPES it serves
    order: int = 50  # collect order: 10 OS, 20 inventory, 50 content checks, 90 evaluators
    reads_layers: bool = True

    def __init__(self, policy: dict | None = None):
        self.policy = policy or {}

    def fingerprint(self) -> str:
        """Folded into the cache key: a digest of the policy settings that change per-layer records."""
        return ""

    def required(self, path: str, info: FileInfo) -> bool:
        return False

    def size_cap(self, path: str) -> int | None:
        """The largest copy of `path` this analyzer reads, or None for the walker's own read limit.
        A wanted file over its cap is not handed over, and the scan says so (never a silent skip)."""
        return None

    def analyze(self, file: LayerFile) -> Iterable[dict]:
        return ()

    def collect(self, ctx: "ImageContext", layers: list[list[dict]]) -> Iterable[Package | Finding | OSInfo | Fact]:
        return ()


@dataclass
class ImageContext:
    """What an analyzer's `collect` sees: the image, its squashed filesystem and what ran before it."""

    spec: Any  # ImageSpec
    fs: Any  # squash.Filesystem
    policy: dict
    db: Any = None  # sqlite_utils.Database, read-only use (base images, advisories)
    os: OSInfo = field(default_factory=OSInfo)
    packages: list[Package] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def warn(self, message: str) -> None:
        self.warnings.append(message)


_REGISTRY: dict[str, type[Analyzer]] = {}


class RegistryError(Exception):
    pass


def register(cls: type[Analyzer]) -> type[Analyzer]:
    """Class decorator. A second analyzer with a taken name is an error, not a silent override."""
    if not cls.name or not isinstance(cls.version, int):
        raise RegistryError(f"{cls.__qualname__}: an analyzer needs a name and an integer version")
    if cls.risk and cls.risk not in RISK_TYPES:
        raise RegistryError(f"{cls.name}: unknown risk type {cls.risk!r}")
    other = _REGISTRY.get(cls.name)
    if other is not None and other is not cls:
        if (other.__module__, other.__qualname__) != (cls.__module__, cls.__qualname__):
            raise RegistryError(f"analyzer name {cls.name!r} is already registered by {other.__module__}")
    _REGISTRY[cls.name] = cls
    return cls


_loaded = False


def load_all() -> dict[str, type[Analyzer]]:
    """Imports every module under stowaway.analyzers so that their @register decorators run."""
    global _loaded
    if not _loaded:
        import stowaway.analyzers as pkg

        for mod in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
            if mod.name.rsplit(".", 1)[-1].startswith("_"):
                continue
            importlib.import_module(mod.name)
        _loaded = True
    return dict(_REGISTRY)


def select(risks: Iterable[str] | None = None, names: Iterable[str] | None = None) -> list[type[Analyzer]]:
    """Analyzers for the chosen risk types. Vulnerabilities and compliance need the software inventory."""
    registry = load_all()
    if names:
        missing = set(names) - set(registry)
        if missing:
            raise RegistryError(f"unknown analyzer(s): {', '.join(sorted(missing))}")
        # analyzers of no risk type (OS identification, redaction of secrets in the image config)
        # always run: without them a hand-picked set would store raw ENV values, or no OS
        chosen = [registry[n] for n in names] + [c for c in registry.values() if c.risk == "" and c.name not in names]
    else:
        wanted = set(risks or RISK_TYPES)
        if wanted & {"vulnerabilities", "compliance", "unsafe_settings", "base_image"}:
            wanted.add("software")
        unknown = wanted - set(RISK_TYPES)
        if unknown:
            raise RegistryError(f"unknown risk type(s): {', '.join(sorted(unknown))}; choose from {', '.join(RISK_TYPES)}")
        chosen = [cls for cls in registry.values() if cls.risk in wanted or cls.risk == ""]
    return sorted(chosen, key=lambda c: (c.order, c.name))
