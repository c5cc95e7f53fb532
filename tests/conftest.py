"""Shared fixtures. Images are built in code (imagebuilder.py); ../shared/corpus is used when present."""
from __future__ import annotations

import os
import pathlib

import pytest
from imagebuilder import ImageBuilder

ROOT = pathlib.Path(__file__).resolve().parent.parent
SHARED = pathlib.Path(os.environ.get("STOWAWAY_SHARED", ROOT.parent / "shared"))
CORPUS = SHARED / "corpus"


@pytest.fixture
def builder():
    return ImageBuilder()


@pytest.fixture
def db(tmp_path):
    from stowaway.ingest.db import connect

    return connect(str(tmp_path / "test.db"))


@pytest.fixture
def scan(tmp_path):
    """scan(source, policy=None, **kw) -> (database, outcomes): runs the real pipeline into tmp_path/scan.db."""
    from stowaway.ingest.db import connect
    from stowaway.ingest.pipeline import Scanner

    database = connect(str(tmp_path / "scan.db"))

    def run(*sources, policy=None, **kw):
        scanner = Scanner(database, policy or {}, progress=False, **kw)
        return database, scanner.run(sources)

    return run


def report_of(database, ref):
    from stowaway.ingest.report import build

    return build(database, ref)


corpus = pytest.mark.skipif(not (CORPUS / "expected.json").exists(), reason="../shared/corpus not present")
