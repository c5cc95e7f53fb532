"""One convention across commands: help on every option, listings as table or JSON, warnings printed
in full once, `-q`, `--set` with TOML keys."""
from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys

from imagebuilder import File, ImageBuilder

STOWAWAY = str(pathlib.Path(sys.executable).parent / "stowaway")


def run(*args, cwd=None, stdin=None):
    return subprocess.run([STOWAWAY, *args], capture_output=True, text=True, cwd=cwd, timeout=120, input=stdin)


def _parsers(parser, path=()):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _parsers(child, path + (name,))


def test_every_option_of_every_command_has_help():
    from stowaway.ingest import cli

    cli._load_command_modules()
    ap = cli.build_parser()
    cli._add_common_options(ap)
    missing = []
    for path, parser in _parsers(ap):
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)):
                continue
            if not action.help:
                missing.append(" ".join(path) + " " + (action.option_strings[0] if action.option_strings else action.dest))
    assert missing == []


def test_a_builtin_command_parses_with_the_same_parser_as_in_the_full_one():
    """`stowaway scan ...` builds only the built-in commands' parsers (not the thirty others): each must be
    the one the full parser holds, option for option, and its help the same text."""
    from stowaway.ingest import cli

    cli._load_command_modules()
    full, only = cli.build_parser(), cli.build_parser("scan")
    for ap in (full, only):
        cli._add_common_options(ap)
    children = {name: dict(_parsers(ap)) for name, ap in (("full", full), ("only", only))}
    assert set(children["only"]) == {(), *((c,) for c in cli.BUILTIN_COMMANDS)}
    assert len(children["full"]) > len(children["only"]) + 10
    for name in cli.BUILTIN_COMMANDS:
        a, b = children["full"][(name,)], children["only"][(name,)]
        assert a.format_help() == b.format_help()
        assert [x.option_strings or x.dest for x in a._actions] == [x.option_strings or x.dest for x in b._actions]
    args = ["scan", "docker-archive:x.tar", "--db", "d.db", "--risk", "secrets", "-q", "--set", "a.b=1"]
    assert vars(full.parse_args(args)) == vars(only.parse_args(args))
    # through main(): `scan` still knows every option; another command still finds its own parser
    assert run("scan", "--help").stdout == cli_help_of(full, "scan")
    r = run("rematch", "--help")
    assert r.returncode == 0 and "rematch" in r.stdout


def cli_help_of(ap, name: str) -> str:
    return dict(_parsers(ap))[(name,)].format_help()


def test_help_lists_every_source_transport():
    from stowaway.ingest.sources import TRANSPORTS

    out = run("--help").stdout + run("scan", "--help").stdout
    for transport in TRANSPORTS:
        assert f"  {transport}:" in out, transport
    assert "https://HOST[:PORT]" in out and "130" in out


def test_listings_table_and_json_warnings_and_quiet(tmp_path):
    img = ImageBuilder().layer({"etc/os-release": "ID=alpine\nVERSION_ID=3.19.1\n", "a/b": File(b"1")})
    path = img.write_docker_archive(tmp_path / "i.tar", ref="conv/app:1")
    db = str(tmp_path / "c.db")
    r = run("scan", f"docker-archive:{path}", "--db", db, "--approved-base", "missing/base:1", "--no-progress")
    assert r.returncode == 0, r.stderr
    warning = ("stowaway: warning: conv/app:1: base-image: approved base missing/base:1 is not in the database;"
               " scan it before the images built on it")
    assert r.stderr.splitlines().count(warning) == 1, r.stderr
    r = run("scan", f"docker-archive:{path}", "--db", db, "--approved-base", "missing/base:1", "-q")
    assert r.returncode == 0 and r.stderr == "" and r.stdout == ""
    r = run("-q", "scan", "docker-archive:/nonexistent.tar", "--db", db)
    assert r.returncode == 1 and r.stderr.startswith("stowaway: scan of ") and r.stderr.count("\n") == 1

    r = run("images", "--db", db)
    header, row = r.stdout.splitlines()
    assert header.split()[:3] == ["REFERENCE", "PLATFORM", "OS"] and row.startswith("conv/app:1")
    r = run("images", "--db", db, "--format", "json")
    assert json.loads(r.stdout)["reference"] == "conv/app:1"
    r = run("scans", "--db", db, "--format", "json")
    scans = [json.loads(line) for line in r.stdout.splitlines()]
    assert [s["status"] for s in scans] == ["failed", "done", "done"]
    assert run("scans", "--db", db).stdout.split()[:3] == ["ID", "STATUS", "REFERENCE"]
    for command in (["tasks"], ["synced"], ["schedule", "list"], ["db", "status"]):
        r = run(*command, "--db", db, "--format", "table")
        assert r.returncode == 0, (command, r.stderr)
        first = r.stdout.splitlines()[0]
        assert first.isupper() or first.startswith("no advisories in the store"), (command, r.stdout)
        assert run(*command, "--db", db, "--format", "json").returncode == 0


def test_set_takes_toml_keys_or_refuses():
    r = run("policy", "check", "--set", 'registries."127.0.0.1:5000".insecure=true', "--show")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["registries"] == {"127.0.0.1:5000": {"insecure": True}}
    r = run("policy", "check", "--set", "registries.127.0.0.1:5000.insecure=true")
    assert r.returncode == 2 and "not a valid key" in r.stderr and r.stderr.count("\n") == 1
    r = run("policy", "check", "--set", "limits.max_ratio=500", "--show")
    assert json.loads(r.stdout)["limits"]["max_ratio"] == 500


def test_registry_written_as_users_type_it():
    from stowaway.ingest.sources.registry import parse_reference, parse_registry

    assert parse_registry("https://localhost:5000/") == ("localhost:5000", "https")
    assert parse_registry("http://reg.example") == ("reg.example", "http")
    assert parse_registry("reg.example:443") == ("reg.example:443", "")
    ref = parse_reference("http://localhost:5000/team/app:1")
    assert (ref.host, ref.repository, ref.tag, ref.scheme) == ("localhost:5000", "team/app", "1", "http")
    r = run("sync", "ftp://x", "--db", "/nonexistent/x.db")
    assert r.returncode == 2 and "expected a registry as HOST[:PORT]" in r.stderr


def _on_a_terminal(argv, cwd=None):
    import os
    import pty

    pid, fd = pty.fork()
    if pid == 0:
        import fcntl
        import struct
        import termios

        fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 100, 0, 0))  # a 100-column terminal
        if cwd:
            os.chdir(cwd)
        os.execv(STOWAWAY, [STOWAWAY, *argv])
    chunks = []
    while True:
        try:
            data = os.read(fd, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), b"".join(chunks).decode(errors="replace")


def test_db_import_counts_records_on_a_terminal_only(tmp_path):
    feed = tmp_path / "osv"
    feed.mkdir()
    for i in range(50):
        (feed / f"GHSA-{i}.json").write_text(json.dumps({
            "id": f"GHSA-{i}", "modified": "2024-01-01T00:00:00Z",
            "affected": [{"package": {"ecosystem": "PyPI", "name": f"p{i}"},
                          "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}]}]}]}))
    code, out = _on_a_terminal(["db", "import", str(feed), "--db", str(tmp_path / "a.db")])
    assert code == 0 and "import: " in out and "records/s" in out and "imported 50 records" in out, out
    code, out = _on_a_terminal(["db", "import", str(feed), "--db", str(tmp_path / "b.db"), "--no-progress"])
    assert code == 0 and "records/s" not in out and "imported 50 records" in out
    r = run("db", "import", str(feed), "--db", str(tmp_path / "c.db"))  # not a terminal: no bar
    assert r.returncode == 0 and r.stderr.startswith("imported 50 records")


def test_scan_progress_counts_layers_and_bytes():
    import io

    from tqdm import tqdm

    from stowaway.ingest.output import scan_progress
    from stowaway.ingest.sources import LayerBlob

    events = [LayerBlob(key="l0", open=lambda: io.BytesIO(b"x" * 300_000)),
              LayerBlob(key="l1", stream=io.BytesIO(b"y" * 200_000)), "image"]
    got = []
    screen = io.StringIO()
    bar = tqdm(file=screen, desc="scan app.tar", unit="B", unit_scale=True, unit_divisor=1024, mininterval=0)
    for ev in scan_progress(iter(events), True, "docker-archive:app.tar", bar=bar):
        if isinstance(ev, LayerBlob):
            raw = ev.open() if ev.open else ev.stream
            got.append(len(raw.read(1000)) + len(raw.read()))
        else:
            got.append(ev)
    assert got == [300_000, 200_000, "image"]  # the bytes pass through unchanged
    assert bar.n == 500_000
    shown = screen.getvalue()
    assert "scan app.tar" in shown and "layer 2" in shown and "488k" in shown and "B/s" in shown
    assert list(scan_progress(iter(events[2:]), False, "x")) == ["image"]


def test_scan_shows_a_byte_bar_on_a_terminal_only(tmp_path):
    img = ImageBuilder().layer({"etc/os-release": "ID=alpine\nVERSION_ID=3.19.1\n", "srv/blob": File(b"z" * 300_000)})
    path = img.write_docker_archive(tmp_path / "p.tar", ref="conv/progress:1")
    code, out = _on_a_terminal(["scan", f"docker-archive:{path}", "--db", str(tmp_path / "a.db"), "--risk", "files"])
    assert code == 0 and f"scan docker-archive:{path}"[-40:] in out and "B/s" in out, out
    code, out = _on_a_terminal(["scan", f"docker-archive:{path}", "--db", str(tmp_path / "b.db"), "--risk", "files",
                                "--no-progress", "--format", "json"])
    assert code == 0 and "B/s" not in out
    r = run("scan", f"docker-archive:{path}", "--db", str(tmp_path / "c.db"), "--risk", "files")
    assert r.returncode == 0 and "B/s" not in r.stderr and r.stdout == ""
