"""A rescan of an unchanged image (ingest/reuse.py) is mostly the start of a process: it must not load what
only reading layers or analyzing needs, and its message must say what was read, per source type. Each case
runs the CLI twice in processes of their own and records the modules the rescan imported (no timing)."""
from __future__ import annotations

import re

import pytest
from cli_modules import LAYER_READING, heavy, run_recording_modules
from imagebuilder import File, ImageBuilder

SECRET = "ghp_" + "Zq7Xr2Lm9Vb4Nc8Kd1Fg6Hj3Tw5Ys0Pa1Qe2"


def app() -> ImageBuilder:
    img = ImageBuilder().layer({"etc/os-release": 'ID=debian\nVERSION_ID="11"\n',
                                "bin/sh": File(b"\x7fELF" + b"s" * 300, mode=0o755)}, created_by="ADD rootfs /")
    return img.layer({"app/config.env": f"GITHUB_TOKEN={SECRET}\n"}, created_by="COPY app /app")


ARCHIVE_UNCHANGED = "(archive unchanged: inode, size, mtime, ctime and first/last MiB as recorded, nothing read)"
CASES = {
    "docker-archive": (lambda img, p: img.write_docker_archive(p / "a.tar", ref="demo/app:1"), ARCHIVE_UNCHANGED),
    "docker-archive-gzip": (lambda img, p: img.write_docker_archive(p / "a.tar.gz", ref="demo/app:1",
                                                                    compress_with="gzip"), ARCHIVE_UNCHANGED),
    "oci-archive": (lambda img, p: img.write_oci_layout(p / "o.tar", ref="demo/app:1", as_tar=True),
                    ARCHIVE_UNCHANGED),
    "oci": (lambda img, p: img.write_oci_layout(p / "layout", ref="demo/app:1"), "(manifest and config read)"),
}


def scanned_line(stderr: str) -> str:
    return next((ln for ln in stderr.splitlines() if ln.startswith("scanned ")), stderr[-500:])


@pytest.mark.parametrize("kind", list(CASES))
def test_a_rescan_loads_no_analyzer_and_says_what_it_read(tmp_path, kind):
    import time

    write, said = CASES[kind]
    path = write(app(), tmp_path)
    time.sleep(0.1)  # a file's times are trusted once outside the clock tick they were recorded in
    transport = "oci-archive" if kind == "oci-archive" else kind.removesuffix("-gzip")
    args = ("scan", f"{transport}:{path}", "--db", str(tmp_path / "r.db"), "--no-progress")
    first, loaded = run_recording_modules(tmp_path, *args)
    assert first.returncode == 0, first.stderr
    assert "stowaway.analyzers.secrets" in loaded and "yara" in loaded  # the recording sees what a scan loads
    again, modules = run_recording_modules(tmp_path, *args)
    assert again.returncode == 0, again.stderr
    line = scanned_line(again.stderr)
    assert re.fullmatch(r"scanned demo/app:1 \(scan 2: 0 layers read, 2 cached; unchanged since scan 1 "
                        + re.escape(said) + r", its results copied forward\)", line), line
    assert heavy(modules, ("stowaway.ingest.render",)) == []  # the renderers: only when a --format is printed
    assert sorted(m for m in modules if m in LAYER_READING) == []  # a layout's manifest and config need no walk
    # a changed file is never taken for the same: read again in full
    write(app().layer({"app/more": "x"}), tmp_path)
    time.sleep(0.1)
    changed, _ = run_recording_modules(tmp_path, *args)
    assert changed.returncode == 0 and "copied forward" not in changed.stderr, changed.stderr
    assert "(scan 3: 1 layers read, 2 cached" in scanned_line(changed.stderr)


def test_help_loads_no_command_machinery(tmp_path):
    """`stowaway --help` and `stowaway scan --help` (what CI pays before any work) import no analyzer, no
    HTTP stack and no database-side machinery beyond the parser's."""
    for args in (("--help",), ("scan", "--help")):
        proc, modules = run_recording_modules(tmp_path, *args)
        assert proc.returncode == 0 and "usage: stowaway" in proc.stdout
        assert heavy(modules, ("requests", "urllib3", "stowaway.ingest.tasks", "stowaway.ingest.writer",
                               "stowaway.ingest.render")) == []
