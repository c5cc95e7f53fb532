#!/usr/bin/env python3
"""Precision and recall of the secret scanner, before and after: this tree against an older commit.

    .venv/bin/python tests/bench/bench_secret_precision.py [--old REV]      # REV default: the first commit
                                                                           # of issue 18's secrets work's parent

Precision: findings on the false-positive trap corpus of tests/analyzers/secrets/secret_corpus.py
(lockfile hashes, minified JS, base64 images, UUIDs, documented examples, public endpoints, git SHAs,
checksums, with real secrets planted among them) plus the `fps` lines of gitleaks's rule generators:
precision = true findings / all findings; a finding is true when it overlaps a planted secret.
Recall: the `tps` lines of gitleaks's rule generators (tests/data/secrets/gitleaks_examples.json,
MIT, see that file): the share of examples with at least one finding. The built-in catalogue is
measured on the examples of the gitleaks rules it covers (BUILTIN_COVERS); the built-in catalogue
plus the real gitleaks catalogue (../shared/rules/secrets/gitleaks, when present) on all of them.

The old commit's code is exported with `git archive` into a temporary directory and measured in a
child process, with the same corpus and examples, so both numbers come from one run.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
GITLEAKS = ROOT.parent / "shared" / "rules" / "secrets" / "gitleaks" / "gitleaks.toml"
EXAMPLES = ROOT / "tests" / "data" / "secrets" / "gitleaks_examples.json"
CORPUS_DIR = ROOT / "tests" / "analyzers" / "secrets"
BUILTIN_COVERS = (
    "aws-access-token", "github-pat", "github-fine-grained-pat", "github-oauth", "github-app-token",
    "github-refresh-token", "gitlab-pat", "gitlab-ptt", "gitlab-deploy-token", "slack-bot-token", "slack-user-token",
    "slack-app-token", "stripe-access-token", "gcp-api-key", "npm-access-token", "pypi-upload-token", "jwt",
    "private-key", "generic-api-key",
)
OLD_DEFAULT = "92f90b0"  # main before issue 18's secret work


def measure(with_gitleaks: bool) -> dict:
    sys.path.insert(0, str(CORPUS_DIR))
    from secret_corpus import build, is_true

    from stowaway.analyzers.secrets import gitleaks
    from stowaway.analyzers.secrets.rules import BUILTIN, Catalogue

    rules = list(BUILTIN)
    allow = {}
    if with_gitleaks:
        more, global_allow, _ = gitleaks.load(str(GITLEAKS))
        rules += more
        allow = {str(GITLEAKS): global_allow}
    cat = Catalogue(rules, allow)
    examples = json.loads(EXAMPLES.read_text())["rules"]
    t0 = time.perf_counter()
    tp = fp = 0
    trap_fp = 0
    false_by_category: dict[str, int] = {}
    planted = found_planted = 0
    for doc in build():
        hits = cat.scan(doc.text.encode(), doc.path)
        for h in hits:
            if is_true(h.secret, doc):
                tp += 1
            else:
                fp += 1
                key = f"{doc.category}:{h.rule.id}"
                false_by_category[key] = false_by_category.get(key, 0) + 1
        for p in doc.planted:
            planted += 1
            found_planted += any(is_true(h.secret, doc.__class__(doc.category, doc.path, "", (p,))) for h in hits)
    trap_fp = fp
    for rid, ex in sorted(examples.items()):
        for text in ex["fps"]:
            hits = cat.scan(text.encode(), "/src/example.txt")
            fp += len(hits)
            if hits:
                key = f"gitleaks-fps:{rid}"
                false_by_category[key] = false_by_category.get(key, 0) + len(hits)
    wanted = [r for r in examples if with_gitleaks or r in BUILTIN_COVERS]
    total = detected = 0
    missed: dict[str, int] = {}
    for rid in wanted:
        for text in examples[rid]["tps"]:
            total += 1
            if cat.scan(text.encode(), "/src/example.txt"):
                detected += 1
            else:
                missed[rid] = missed.get(rid, 0) + 1
    return {"catalogue": "builtin+gitleaks" if with_gitleaks else "builtin", "rules": len(rules),
            "findings": tp + fp, "true": tp, "false": fp, "precision": round(tp / max(1, tp + fp), 4),
            "trap_precision": round(tp / max(1, tp + trap_fp), 4), "trap_false": trap_fp, "fps_false": fp - trap_fp,
            "planted_found": f"{found_planted}/{planted}", "recall": round(detected / max(1, total), 4),
            "examples": total, "false_by_category": false_by_category,
            "missed_most": dict(sorted(missed.items(), key=lambda kv: -kv[1])[:8]),
            "seconds": round(time.perf_counter() - t0, 2)}


def run_old(rev: str, with_gitleaks: bool) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        pkg = pathlib.Path(tmp) / "stowaway"
        pkg.mkdir()
        (pkg / "__init__.py").write_text("")
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "analyzers", "ingest"], check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(pkg)], input=archive, check=True)
        env = dict(os.environ, PYTHONPATH=tmp)
        args = [sys.executable, __file__, "--child"] + (["--gitleaks"] if with_gitleaks else [])
        out = subprocess.run(args, env=env, check=True, capture_output=True, text=True).stdout
        return json.loads(out)


def show(label: str, r: dict) -> None:
    print(f"  {label:6} precision {r['precision']:.3f} ({r['true']} true / {r['findings']} findings; trap corpus "
          f"{r['trap_precision']:.3f} with {r['trap_false']} false, gitleaks fps lines {r['fps_false']} false), "
          f"recall {r['recall']:.3f} on {r['examples']} gitleaks examples, planted found {r['planted_found']}, "
          f"{r['rules']} rules, {r['seconds']} s")
    if r["false_by_category"]:
        print("         false: " + ", ".join(f"{k} {v}" for k, v in sorted(r["false_by_category"].items())))
    if r["missed_most"]:
        print("         most missed: " + ", ".join(f"{k} {v}" for k, v in r["missed_most"].items()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--old", default=OLD_DEFAULT, help="the commit to compare with (default: %(default)s)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--gitleaks", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(measure(args.gitleaks)))
        return
    for with_gitleaks in (False, True):
        if with_gitleaks and not GITLEAKS.exists():
            print(f"{GITLEAKS} absent: builtin+gitleaks not measured")
            continue
        print(f"catalogue {'builtin + ../shared gitleaks' if with_gitleaks else 'builtin'}:")
        show("before", run_old(args.old, with_gitleaks))
        show("after", measure(with_gitleaks))


if __name__ == "__main__":
    main()
