"""The analyzer protocol and registry.

A scan has three stages (see docs/DEVELOPING.md):

* index, per layer (`required` + `analyze`): the layer walker hands an analyzer every file of a layer
  that it asks for, once, as bytes; it returns JSON-serializable records. These are cached in the
  database per (layer diff_id, analyzer name, version, fingerprint), so a shared layer is read once.
* apply, once per image (ingest/apply.py): the layers' entry lists become the squashed filesystem
  (whiteouts, visibility, the layer that added each path); then every `stage = "index"` analyzer's
  `collect` turns the records of all the image's layers into `Package`, `Finding`, `OSInfo` or `Fact`
  objects, and the applier de-duplicates packages and fills their package URLs. This runs where the
  layers were read (this process, a worker process or a Dask worker) and never needs the database.
* evaluate, once per image (ingest/evaluate.py): every `stage = "evaluate"` analyzer's `collect`
  (vulnerability matching, baselines, compliance, base image) and the redaction of the image config.
  Evaluators that need no database (`needs_db = False`: baselines, compliance) run with the
  redaction where the layers were read, right after apply, so the single writer only writes; those
  that consult the database (`needs_db = True`: advisories, stored images), and any evaluator that
  consumes one of them, run in the writer process with it and see the image's spec, OS, packages,
  findings and facts (its filesystem and entry lists stay where the layers were read). `rescan` and
  the Dask path go through the same code.

Order is declared, not numbered: `consumes` names products (fields of ImageContext that analyzers
fill, see PRODUCTS) or analyzer names that must be complete before this analyzer's `collect`;
`produces` names the products it fills. Analyzers run in topological order within their stage
(evaluate after index); a cycle, or an index analyzer consuming what only an evaluator produces, is
refused when the analyzer is registered.
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


# What analyzers produce for one another: ImageContext fields filled by `collect`.
PRODUCTS = ("os", "packages", "owned_files", "findings", "facts")
STAGES = ("index", "evaluate")


class Analyzer:
    name: str = ""
    version: int = 1
    risk: str = ""  # which of RISK_TYPES it serves
    stage: str = "index"  # "index": collect where the layers were read; "evaluate": after every index collect
    needs_db: bool = False  # an evaluator that reads ctx.db: runs in the writer (see the module's docstring)
    consumes: tuple[str, ...] = ()  # products (PRODUCTS) or analyzer names needed before collect
    produces: tuple[str, ...] = ()  # products its collect fills
    reads_layers: bool = True
    # True when `analyze` keeps nothing that later files or `collect` rely on (its records are all it
    # leaves): a layer may then be walked in a forked process and its records sent back (ingest/parallel.py)
    forkable: bool = False

    def __init__(self, policy: dict | None = None):
        self.policy = policy or {}

    def fingerprint(self) -> str:
        """Folded into the cache key: a digest of the policy settings that change per-layer records."""
        return ""

    def required(self, path: str, info: FileInfo) -> bool:
        return False

    def skipped_prefixes(self) -> tuple[str, ...]:
        """Path prefixes under which `required` is False for every file whose path holds no newline
        ('/usr/' for a check that excludes /usr/*). The layer walker passes over such files without a
        FileInfo or a call (ingest/layers.py `_skim`); () when there are none."""
        return ()

    def wanted_paths(self) -> frozenset[str] | None:
        """When not None, the only paths for which `required` can be True (see `skipped_prefixes`)."""
        return None

    def size_cap(self, path: str) -> int | None:
        """The largest copy of `path` this analyzer reads, or None for the walker's own read limit.
        A wanted file over its cap is not handed over, and the scan says so (never a silent skip)."""
        return None

    def analyze(self, file: LayerFile) -> Iterable[dict]:
        return ()

    def settle(self, layers: list[list[dict]]) -> None:
        """Completes records whose work `analyze` started in the background (weak-password guessing).
        The applier calls it once per image where the layers were read, after the index stage's
        `collect` and before the records leave the process (stored, pickled, or evaluated in the
        writer); `collect` may call it first."""

    def collect(self, ctx: "ImageContext", layers: list[list[dict]]) -> Iterable[Package | Finding | OSInfo | Fact]:
        return ()


@dataclass(slots=True)
class ImageContext:
    """What an analyzer's `collect` sees: the image, its applied filesystem and what ran before it.

    Every field is declared here (slots: setting any other attribute raises). The applier fills
    `spec`, `fs`, `layer_entries` and `policy`; analyzers fill the PRODUCTS fields by what `collect`
    yields (`os`, `packages`, `findings`, `facts`) or, for `owned_files`, by adding to the set.
    """

    spec: Any  # ImageSpec
    fs: Any  # squash.Filesystem: whiteouts applied; visible(path, layer), walk(), the layer of each path
    policy: dict
    # the writer's database (sqlite_utils.Database, read only) for an evaluator with needs_db; else None
    db: Any = None
    os: OSInfo = field(default_factory=OSInfo)
    packages: list[Package] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    # per layer (bottom first), the walker's entry tuples (path, type, size, mode, uid, gid, linkname)
    layer_entries: list[list[tuple]] = field(default_factory=list)
    # per layer, what the walker's skim indexed of its entries (apply.IndexedLayer.skimmed), or None
    layer_skims: list[Any] = field(default_factory=list)
    # paths (as the package database writes them, '/usr/bin/x') installed by an OS package manager
    owned_files: set[str] = field(default_factory=set)

    def warn(self, message: str) -> None:
        self.warnings.append(message)


_REGISTRY: dict[str, type[Analyzer]] = {}


class RegistryError(Exception):
    pass


def register(cls: type[Analyzer]) -> type[Analyzer]:
    """Class decorator. A second analyzer with a taken name is an error, not a silent override; so is
    an unknown stage or product, and a dependency cycle."""
    if not cls.name or not isinstance(cls.version, int):
        raise RegistryError(f"{cls.__qualname__}: an analyzer needs a name and an integer version")
    if cls.risk and cls.risk not in RISK_TYPES:
        raise RegistryError(f"{cls.name}: unknown risk type {cls.risk!r}")
    if cls.stage not in STAGES:
        raise RegistryError(f"{cls.name}: unknown stage {cls.stage!r}; choose from {', '.join(STAGES)}")
    unknown = [p for p in cls.produces if p not in PRODUCTS]
    if unknown:
        raise RegistryError(f"{cls.name}: produces unknown product(s) {', '.join(unknown)}; known: {', '.join(PRODUCTS)}")
    other = _REGISTRY.get(cls.name)
    if other is not None and other is not cls:
        if (other.__module__, other.__qualname__) != (cls.__module__, cls.__qualname__):
            raise RegistryError(f"analyzer name {cls.name!r} is already registered by {other.__module__}")
    candidate = {**_REGISTRY, cls.name: cls}
    ordered(list(candidate.values()), strict_names=False)  # raises on a cycle or a stage inversion
    _REGISTRY[cls.name] = cls
    return cls


def _dependencies(cls: type[Analyzer], chosen: dict[str, type[Analyzer]], strict_names: bool) -> set[str]:
    deps: set[str] = set()
    for item in cls.consumes:
        if item in PRODUCTS:  # its producers of this stage or an earlier one (evaluators come after index)
            deps |= {c.name for c in chosen.values() if item in c.produces and c is not cls
                     and STAGES.index(c.stage) <= STAGES.index(cls.stage)}
        elif item in chosen:
            deps.add(item)
        elif strict_names and item not in _REGISTRY:
            raise RegistryError(f"{cls.name}: consumes {item!r}, which is neither a product ({', '.join(PRODUCTS)})"
                                " nor an analyzer")
    if cls.stage == "index":
        late = sorted(d for d in deps if chosen[d].stage == "evaluate")
        if late:
            raise RegistryError(f"{cls.name}: an index analyzer cannot consume the evaluator(s) {', '.join(late)}")
    return deps


def ordered(classes: list[type[Analyzer]], strict_names: bool = True) -> list[type[Analyzer]]:
    """Index analyzers, then evaluators, each in a topological order of their declared dependencies
    (ties by name, so the order is stable). A cycle raises RegistryError naming its members."""
    chosen = {c.name: c for c in classes}
    deps = {c.name: _dependencies(c, chosen, strict_names) for c in classes}
    out: list[type[Analyzer]] = []
    done: set[str] = set()
    for stage in STAGES:
        pending = {n for n, c in chosen.items() if c.stage == stage}
        while pending:
            ready = sorted(n for n in pending if deps[n] <= done)
            if not ready:
                raise RegistryError("analyzer dependency cycle among: " + ", ".join(sorted(pending)))
            for n in ready:
                out.append(chosen[n])
                done.add(n)
                pending.discard(n)
    return out


# Where each built-in analyzer is defined, and its risk type: a scan imports only the modules of the
# analyzers it selects by risk (importing every one of them was about a tenth of a second of each scan's
# start). tests/analyzers/test_base.py checks this table against what load_all() registers.
MODULES: dict[str, tuple[str, str]] = {
    "base-image": ("stowaway.analyzers.base_image", "base_image"),
    "compliance": ("stowaway.analyzers.compliance", "compliance"),
    "files": ("stowaway.analyzers.files", "files"),
    "apk": ("stowaway.analyzers.inventory.apk", "software"),
    "composer": ("stowaway.analyzers.inventory.composer", "software"),
    "dotnet-deps": ("stowaway.analyzers.inventory.dotnet", "software"),
    "dpkg": ("stowaway.analyzers.inventory.dpkg", "software"),
    "go-binary": ("stowaway.analyzers.inventory.gobinary", "software"),
    "java-archive": ("stowaway.analyzers.inventory.java", "software"),
    "javascript-banner": ("stowaway.analyzers.inventory.javascript_banner", "software"),
    "lockfiles": ("stowaway.analyzers.inventory.lockfiles", "software"),
    "npm": ("stowaway.analyzers.inventory.npm", "software"),
    "os-release": ("stowaway.analyzers.inventory.os_release", ""),
    "python-dist": ("stowaway.analyzers.inventory.python_dist", "software"),
    "rpm": ("stowaway.analyzers.inventory.rpm", "software"),
    "ruby-gemspec": ("stowaway.analyzers.inventory.ruby", "software"),
    "malware": ("stowaway.analyzers.malware", "malicious"),
    "secrets": ("stowaway.analyzers.secrets.analyzer", "secrets"),
    "settings-files": ("stowaway.analyzers.settings.configs", "unsafe_settings"),
    "weak-passwords": ("stowaway.analyzers.settings.passwords", "unsafe_settings"),
    "vulnerabilities": ("stowaway.analyzers.vulnerabilities.evaluator", "vulnerabilities"),
}


def load(names: Iterable[str]) -> dict[str, type[Analyzer]]:
    """The registry, with the modules of the named analyzers imported (every module when a name is not
    in MODULES)."""
    names = list(names)
    if any(n not in MODULES and n not in _REGISTRY for n in names):
        return load_all()
    for module in sorted({MODULES[n][0] for n in names if n not in _REGISTRY}):
        importlib.import_module(module)
    return dict(_REGISTRY)


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
    """Analyzers for the chosen risk types. Vulnerabilities and compliance need the software inventory.
    Only the modules of the analyzers chosen by risk are imported; hand-picked names load them all."""
    if names:
        registry = load_all()
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
        registry = load(n for n, (_, risk) in MODULES.items() if risk in wanted or risk == "")
        chosen = [cls for cls in registry.values() if cls.risk in wanted or cls.risk == ""]
    return ordered(chosen)
