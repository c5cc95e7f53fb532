"""The vulnerability report and the baseline report as CSV or XLSX (columns, rows and writers are
stowaway.ingest.exports, shared with `stowaway export`).

Scope: every image's current scan, one image (`image=ID|REF`), or the rows of a filtered table page:
the table's own querystring (`severity=high&cvss_score__gte=7`) is applied with Datasette's Filters,
so "export what I am looking at" is the same URL arguments with another path.
"""
from __future__ import annotations

from datasette.filters import Filters

from stowaway.ingest.exports import REPORTS, finish, to_csv, to_xlsx  # noqa: F401  (one implementation)


class ExportError(ValueError):
    pass


def _query(report: str, view_sql: str, view_columns: list[str], pairs: list[tuple[str, str]], image_id):
    spec = REPORTS[report]
    usable = []
    for key, value in pairs:
        if key.startswith("_") or key in ("image", "format"):
            continue
        column = key.rsplit("__", 1)[0] if "__" in key else key
        if column not in view_columns:
            raise ExportError(f"unknown column {column!r} in the filter {key}={value}")
        usable.append((key, value))
    where, params = Filters(sorted(usable)).build_where_clauses(spec["view"])
    if image_id is not None:
        where.append("image_id = :image_id")
        params["image_id"] = image_id
    clause = (" WHERE " + " AND ".join(where)) if where else ""
    cols = ", ".join(f"[{c}]" for c in spec["columns"])
    return f"SELECT {cols} FROM {view_sql}{clause} ORDER BY {spec['order']}", params


async def fetch(db, report: str, pairs, image_id=None) -> tuple[list[str], list[tuple]]:
    spec = REPORTS[report]
    view_sql = f"[{spec['view']}]"
    view_columns = [d[0] for d in (await db.execute(f"SELECT * FROM {view_sql} LIMIT 0")).description]
    sql, params = _query(report, view_sql, view_columns, pairs, image_id)

    def run(conn):  # an export may take longer than the page time limit; execute_fn has none
        return conn.execute(sql, params).fetchall()

    return spec["columns"], finish(report, await db.execute_fn(run))
