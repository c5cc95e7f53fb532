"""Helpers for the unsafe-settings tests: an image's final filesystem built from a dict, as the
squash layer builds it, and the checks evaluated on it through the same code the pipeline runs."""
from __future__ import annotations

import pytest
from imagebuilder import Dir, File, Symlink

from stowaway.analyzers.base import ImageContext
from stowaway.analyzers.settings import configs
from stowaway.analyzers.settings.env import Env
from stowaway.analyzers.settings.model import baseline_of, catalog, run_checks
from stowaway.analyzers.settings.verdict_cache import forget_memory
from stowaway.ingest.model import DIR, REG, SYMLINK, ImageSpec, OSInfo, Package
from stowaway.ingest.squash import Filesystem


def build_env(files: dict, family: str = "debian", version: str = "11", runtime: dict | None = None,
              history: list[str] = (), packages: list[Package] = (), id_like: tuple = ()) -> Env:
    entries, texts = [], {}
    for path, spec in files.items():
        if isinstance(spec, (str, bytes)):
            spec = File(spec)
        if isinstance(spec, File):
            data = spec.data.encode() if isinstance(spec.data, str) else spec.data
            entries.append((path, REG, len(data), spec.mode, spec.uid, spec.gid, ""))
            if configs.wanted(path):
                texts[path] = (data.decode("utf-8", "replace"), 0)
        elif isinstance(spec, Symlink):
            entries.append((path, SYMLINK, 0, 0o777, 0, 0, spec.target))
        elif isinstance(spec, Dir):
            entries.append((path, DIR, 0, spec.mode, 0, 0, ""))
    fs = Filesystem.build([entries])
    config = {"config": runtime if runtime is not None else {"User": "app", "Healthcheck": {"Test": ["CMD", "true"]}},
              "history": [{"created_by": h} for h in history]}
    spec = ImageSpec("test/image:1", "test", "sha256:m", "sha256:c", config, [])
    ctx = ImageContext(spec=spec, fs=fs, policy={}, os=OSInfo(family, version, id_like=tuple(id_like)),
                       packages=list(packages))
    return Env(ctx, texts, baseline_of(ctx.os))


def results(env: Env, check_id: str) -> list:
    """The findings one check gives on an environment (its warnings fail the test: a check must not crash)."""
    found = list(run_checks(env, [catalog()[check_id]], env.baseline))
    assert not env.ctx.warnings, env.ctx.warnings
    return found


def verdict(env: Env, check_id: str) -> str:
    got = results(env, check_id)
    assert len(got) == 1, [f.detail for f in got]
    return got[0].status


@pytest.fixture(autouse=True)
def own_verdict_cache(tmp_path, monkeypatch):
    """Each test its own verdict cache and key, and no verdicts remembered from an earlier test (a
    module that imports this fixture gets it for every test)."""
    monkeypatch.setenv("STOWAWAY_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("STOWAWAY_DATA_DIR", str(tmp_path / "data"))
    forget_memory()
    yield
    forget_memory()
