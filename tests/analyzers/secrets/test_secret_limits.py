"""Issue 14's secret-scanner rows: a user rule with a catastrophic regex is stopped and named, not left to
hang the scan; a 19.9 MB single-line file is searched in bounded memory (windows), and secrets on
window boundaries are found once, at the right line."""
import random
import subprocess
import sys
import textwrap

import pytest
from conftest import report_of
from imagebuilder import ImageBuilder

from stowaway.analyzers.secrets import rules
from stowaway.analyzers.secrets.rules import BUILTIN, Catalogue

ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
GHP = "ghp_" + "".join(random.Random(14).choices(ALNUM, k=36))


@pytest.fixture(autouse=True)
def private_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("STOWAWAY_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("STOWAWAY_DATA_DIR", str(tmp_path / "data"))


def test_a_catastrophic_user_rule_is_stopped_named_and_the_rest_still_runs(scan, tmp_path):
    toml = tmp_path / "rules.toml"
    toml.write_text("[[rules]]\nid = 'catastrophic'\nregex = '''(a+)+$'''\nkeywords = ['aaaa']\n"
                    "[[rules]]\nid = 'acme-token'\nregex = '''acme_[a-z0-9]{16}'''\nkeywords = ['acme_']\n")
    token = "acme_" + "".join(random.Random(3).choices("abcdefghijklmnopqrstuvwxyz0123456789", k=16))
    img = ImageBuilder().layer({"opt/a.txt": "a" * 30000 + "!" + "x" * 5000 + "\n",
                                "opt/b.txt": "a" * 30000 + "!\n", "opt/conf": f"t = {token}\n"})
    img.write_oci_layout(tmp_path / "oci", ref="t:1")
    policy = {"secrets": {"gitleaks": [str(toml)], "rule_timeout": 0.3}}
    database, out = scan(f"oci:{tmp_path / 'oci'}", policy=policy, risks=["secrets"])
    assert [o.status for o in out] == ["done"]
    rep = report_of(database, "t:1")
    assert [(s["path"], s["rule"]) for s in rep["sensitive_information"]] == [("/opt/conf", "acme-token")]
    stopped = [w for w in rep["scan"]["warnings"] if "rule catastrophic exceeded its time limit of 0.3 s" in w]
    # stopped once, on the first file it hung on, and not run again on the other
    assert len(stopped) == 1 and ("/opt/a.txt" in stopped[0] or "/opt/b.txt" in stopped[0])


def test_rule_timeout_must_be_positive(tmp_path):
    from stowaway.analyzers.secrets.analyzer import Secrets
    from stowaway.ingest.model import ScanError

    with pytest.raises(ScanError, match="secrets.rule_timeout"):
        Secrets({"secrets": {"rule_timeout": 0}})


CHILD = textwrap.dedent("""
    import resource, sys
    from stowaway.analyzers.secrets.analyzer import Secrets
    from stowaway.ingest.model import FileInfo, LayerFile
    n = 19_900_000
    ghp = sys.argv[1].encode()
    # keyword-dense text (the prefilter's worst case), generic matches, BEGINs without END, a secret at the end
    part = n // 3
    data = (b"key" * (part // 3) + b"password=Zq8rT2vLp9xW;" * (part // 22)
            + b"-----BEGIN RSA PRIVATE KEY-----" * (part // 31))
    data += b" " * (n - len(data) - len(ghp) - 7) + b"token=" + ghp + b" "
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    s = Secrets({"secrets": {"fingerprint_key_file": sys.argv[2]}})
    recs = s.analyze(LayerFile(FileInfo("/app/min.js", "file", len(data)), data, 0))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print((peak - base) // 1024, [(r["rule"], r["line"]) for r in recs if r.get("rule") == "github-pat"])
""")


def test_a_19_9_mb_single_line_file_is_searched_in_bounded_memory(tmp_path):
    # the file itself is ~20 MB and is counted in `base`; before windows the search added ~350 MB
    # (yara's match records, copies of the whole line) and BEGINs without END took hours
    out = subprocess.run([sys.executable, "-c", CHILD, GHP, str(tmp_path / "k")], capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "RuntimeWarning" not in out.stderr
    grown, found = out.stdout.split(" ", 1)
    assert int(grown) < 150, out.stdout
    assert found.strip() == "[('github-pat', 1)]"


def test_windows_find_a_secret_on_a_boundary_once_at_its_line(monkeypatch):
    monkeypatch.setattr(rules, "WINDOW", 4096)
    monkeypatch.setattr(rules, "OVERLAP", 512)
    cat = Catalogue(list(BUILTIN))
    for offset in (4096 - 20, 4096 - 1, 4096, 4096 + 5, 8192 - 3, 8192 + 1):
        head = ("x" * 99 + "\n") * (offset // 100) + "y" * (offset % 100 - 1) + " "
        text = head + GHP + "\n" + "z" * 9000
        hits = cat.scan(text.encode(), "/a")
        assert [(h.rule.id, h.line, h.secret.decode()) for h in hits] == [("github-pat", head.count("\n") + 1, GHP)]
        assert text.encode()[hits[0].start:hits[0].end] == GHP.encode()
