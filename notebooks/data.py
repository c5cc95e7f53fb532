"""pandas DataFrames over a Stowaway database: what the notebooks (and anyone in Jupyter) start from.

Every helper reads ingest's read model (stowaway.ingest.readmodel): each image's current scan is
images.last_scan_id, findings are failing findings (passed and not-applicable checks are check
results: `baseline()`), and counts are image_finding_counts', the same as every other surface's.
Suppressed findings are in the frames, marked (`suppressed`), and out of the counts. Secrets come out
masked because the database only ever holds the masked form.
"""
from __future__ import annotations

import sqlite3

import pandas as pd

SEVERITY_ORDER = ["critical", "high", "medium", "low", "negligible", "unknown"]


def connect(db) -> sqlite3.Connection:
    """A connection from a path, a sqlite3 connection, or a stowaway Database."""
    if isinstance(db, sqlite3.Connection):
        return db
    if hasattr(db, "conn"):
        return db.conn
    return sqlite3.connect(f"file:{db}?mode=ro", uri=True)


def _frame(db, sql: str, params=()) -> pd.DataFrame:
    return pd.read_sql_query(sql, connect(db), params=list(params))


def _severity_sorted(df: pd.DataFrame) -> pd.DataFrame:
    if "severity" in df and len(df):
        df["severity"] = pd.Categorical(df["severity"], categories=SEVERITY_ORDER, ordered=True)
    return df


FAILING = "coalesce(f.status, 'fail') NOT IN ('pass', 'not_applicable')"


def images(db) -> pd.DataFrame:
    """One row per image: reference, OS, size, last scan and failing, unsuppressed findings per kind
    (the read model's image_overview), plus how many failing findings are suppressed."""
    df = _frame(db, """
        SELECT i.id AS image_id, i.reference, i.platform, i.os_family, i.os_version, i.size, i.created,
               o.scan_id, o.last_scan, o.vulnerabilities, o.malicious_files AS malicious, o.secrets,
               o.unsafe_settings, o.compliance AS forbidden, o.packages, o.suppressed
        FROM images i JOIN image_overview o ON o.id = i.id ORDER BY i.reference""")
    return df


def counts(db) -> pd.DataFrame:
    """Per image, kind and severity: failing unsuppressed findings (`failing`) and suppressed ones
    (`suppressed`), from the read model's image_finding_counts."""
    df = _frame(db, "SELECT image_id, image AS reference, kind, severity, failing, suppressed"
                    " FROM image_finding_counts ORDER BY image, kind, severity_rank")
    return _severity_sorted(df)


def findings(db, kind: str | None = None, image: str | None = None, include_passed: bool = False) -> pd.DataFrame:
    """The narrow findings table of the latest scans, with the image and the layer command."""
    where = ["f.scan_id = i.last_scan_id"]
    params: list = []
    if kind:
        where.append("f.kind = ?")
        params.append(kind)
    if image:
        where.append("i.reference = ?")
        params.append(image)
    if not include_passed:
        where.append(FAILING)
    df = _frame(db, f"""
        SELECT f.id, i.reference AS image, f.kind, f.severity, f.title, f.rule, f.path, f.layer_index,
               il.created_by AS layer_command, f.visible, f.suppressed, f.suppressed_reason, f.scan_id
        FROM findings f JOIN images i ON i.id = f.image_id
        LEFT JOIN image_layers il ON il.image_id = f.image_id AND il.position = f.layer_index
        WHERE {' AND '.join(where)} ORDER BY f.severity_rank, i.reference, f.path""", params)
    return _severity_sorted(df)


def vulnerabilities(db, image: str | None = None) -> pd.DataFrame:
    """Vulnerabilities with their package, fix and layer."""
    params = [image] if image else []
    df = _frame(db, f"""
        SELECT i.reference AS image, d.vulnerability_id, f.severity, d.cvss_score, p.ecosystem, p.name AS package,
               p.version AS installed, d.fixed_version, d.published, d.solution, f.path, f.layer_index,
               il.created_by AS layer_command, f.suppressed, f.suppressed_reason
        FROM findings f JOIN vulnerability_details d ON d.finding_id = f.id
        JOIN images i ON i.id = f.image_id
        LEFT JOIN packages p ON p.id = f.package_id
        LEFT JOIN image_layers il ON il.image_id = f.image_id AND il.position = f.layer_index
        WHERE f.kind = 'vulnerability' AND f.scan_id = i.last_scan_id {"AND i.reference = ?" if image else ""}
        ORDER BY f.severity_rank, d.cvss_score DESC""", params)
    df["fixable"] = df["fixed_version"].notna() & (df["fixed_version"] != "")
    return _severity_sorted(df)


def secrets(db, image: str | None = None) -> pd.DataFrame:
    """Secrets, masked, with where they are and whether a later layer deleted them."""
    params = [image] if image else []
    return _frame(db, f"""
        SELECT i.reference AS image, d.rule_id, f.title, f.severity, f.path, d.line, d.masked, f.layer_index,
               f.visible, d.source
        FROM findings f JOIN secret_details d ON d.finding_id = f.id JOIN images i ON i.id = f.image_id
        WHERE f.kind = 'secret' AND f.scan_id = i.last_scan_id {"AND i.reference = ?" if image else ""}
        ORDER BY i.reference, f.path""", params)


def baseline(db, image: str | None = None) -> pd.DataFrame:
    """Every check result (fail, pass, not applicable) of the unsafe-settings item."""
    params = [image] if image else []
    return _frame(db, f"""
        SELECT i.reference AS image, d.category, d.check_id, f.title, f.severity, d.result, d.target, d.evidence,
               d.suggestion, d.benchmark
        FROM findings f JOIN setting_details d ON d.finding_id = f.id JOIN images i ON i.id = f.image_id
        WHERE f.kind = 'unsafe_setting' AND f.scan_id = i.last_scan_id {"AND i.reference = ?" if image else ""}
        ORDER BY i.reference, d.category, d.check_id""", params)


def packages(db, image: str | None = None) -> pd.DataFrame:
    params = [image] if image else []
    return _frame(db, f"""
        SELECT i.reference AS image, p.ecosystem, p.name, p.version, p.path, p.layer_index, p.purl,
               p.vulnerability_count
        FROM packages p JOIN images i ON i.id = p.image_id
        WHERE p.scan_id = i.last_scan_id
        {"AND i.reference = ?" if image else ""} ORDER BY i.reference, p.ecosystem, p.name""", params)


def findings_by_layer(db, image: str) -> pd.DataFrame:
    """Failing findings per layer of one image, with the Dockerfile step that made the layer."""
    return _frame(db, f"""
        SELECT il.position AS layer_index, il.created_by AS layer_command,
               SUM(f.kind = 'vulnerability') AS vulnerabilities, SUM(f.kind = 'secret') AS secrets,
               SUM(f.kind = 'malware') AS malicious, SUM(f.kind = 'unsafe_setting') AS unsafe_settings,
               SUM(f.kind = 'compliance') AS forbidden, COUNT(f.id) AS total
        FROM images i JOIN image_layers il ON il.image_id = i.id
        LEFT JOIN findings f ON f.image_id = i.id AND f.layer_index = il.position AND {FAILING}
             AND f.suppressed = 0 AND f.scan_id = i.last_scan_id
        WHERE i.reference = ? GROUP BY il.position ORDER BY il.position""", [image])


def scans(db, image: str | None = None) -> pd.DataFrame:
    params = [image] if image else []
    return _frame(db, f"""
        SELECT s.id AS scan_id, s.reference, s.status, s.error, s.started_at, s.seconds, s.layers_read,
               s.layers_cached
        FROM scans s {"WHERE s.reference = ?" if image else ""} ORDER BY s.id""", params)


def compare_scans(db, image: str, old_scan: int | None = None, new_scan: int | None = None) -> pd.DataFrame:
    """Findings of two scans of one image, each marked new, fixed or unchanged (by finding fingerprint).

    Without scan ids, the last two finished scans of the image are compared."""
    ids = [r[0] for r in connect(db).execute(
        "SELECT s.id FROM scans s JOIN images i ON i.id = s.image_id WHERE i.reference = ? AND s.status = 'done'"
        " ORDER BY s.id", [image])]
    if new_scan is None:
        new_scan = ids[-1] if ids else None
    if old_scan is None:
        older = [i for i in ids if new_scan is not None and i < new_scan]
        old_scan = older[-1] if older else None
    if new_scan is None:
        raise ValueError(f"{image}: no finished scan")
    sql = ("SELECT f.fingerprint, f.kind, f.severity, f.title, f.path, f.layer_index, f.suppressed FROM findings f"
           f" WHERE f.scan_id = ? AND {FAILING}")
    new = _frame(db, sql, [new_scan])
    old = _frame(db, sql, [old_scan]) if old_scan is not None else new.iloc[0:0]
    old_keys, new_keys = set(old["fingerprint"]), set(new["fingerprint"])
    rows = [new.assign(change=["unchanged" if k in old_keys else "new" for k in new["fingerprint"]]),
            old[~old["fingerprint"].isin(new_keys)].assign(change="fixed")]
    out = pd.concat(rows, ignore_index=True)
    out.attrs.update(old_scan=old_scan, new_scan=new_scan)
    return _severity_sorted(out)


def trend(db, image: str | None = None) -> pd.DataFrame:
    """Failing findings per severity for every finished scan, oldest first."""
    params = [image] if image else []
    df = _frame(db, f"""
        SELECT s.id AS scan_id, s.finished_at, i.reference AS image, f.severity, COUNT(f.id) AS findings
        FROM scans s JOIN images i ON i.id = s.image_id
        LEFT JOIN findings f ON f.scan_id = s.id AND {FAILING} AND f.suppressed = 0
        WHERE s.status = 'done' {"AND i.reference = ?" if image else ""}
        GROUP BY s.id, f.severity ORDER BY s.id""", params)
    df["severity"] = df["severity"].fillna("unknown")
    return _severity_sorted(df)
