"""The vulnerability report and the baseline report as CSV or XLSX.

Scope: every image's current scan, one image (`image=ID|REF`), or the rows of a filtered table page:
the table's own querystring (`severity=high&cvss_score__gte=7`) is applied with Datasette's Filters,
so "export what I am looking at" is the same URL arguments with another path.
"""
from __future__ import annotations

import csv
import io

from datasette.filters import Filters

from . import queries, schema
from .masking import mask_command

REPORTS = {
    "vulnerabilities": {
        "view": "vulnerabilities_view",
        "columns": ["image", "vulnerability_id", "aliases", "severity", "cvss_score", "cvss_vector", "package",
                    "ecosystem", "installed_version", "fixed_version", "fix_available", "path", "layer_index",
                    "layer_created_by", "published", "title", "solution", "ignored", "ignore_reason"],
        "order": "image, severity_rank, cvss_score DESC, vulnerability_id, package",
        "sheet": "Vulnerabilities",
    },
    "baseline": {
        "view": "unsafe_settings_view",
        "columns": ["image", "category", "check_id", "title", "severity", "result", "target", "evidence",
                    "description", "suggestion", "benchmark", "path", "layer_index", "ignored", "ignore_reason"],
        "order": "image, result <> 'fail', severity_rank, category, check_id, target",
        "sheet": "Baseline",
    },
}


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
    view_sql = schema.source(await queries.tables(db), spec["view"])
    view_columns = [d[0] for d in (await db.execute(f"SELECT * FROM {view_sql} LIMIT 0")).description]
    sql, params = _query(report, view_sql, view_columns, pairs, image_id)

    def run(conn):  # an export may take longer than the page time limit; execute_fn has none
        return conn.execute(sql, params).fetchall()

    got = await db.execute_fn(run)
    masked = spec["columns"].index("layer_created_by") if "layer_created_by" in spec["columns"] else None
    out = []
    for row in got:
        row = list(row)
        if masked is not None:
            row[masked] = mask_command(row[masked])
        out.append(tuple(row))
    return spec["columns"], out


def to_csv(columns, rows) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(columns)
    writer.writerows(rows)
    return buf.getvalue().encode("utf-8")


def to_xlsx(columns, rows, sheet: str) -> bytes:
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font

    wb = Workbook(write_only=True)
    ws = wb.create_sheet(sheet)
    header = []
    for name in columns:
        cell = WriteOnlyCell(ws, value=name)
        cell.font = Font(bold=True)
        header.append(cell)
    ws.append(header)
    for row in rows:
        ws.append([_xlsx_safe(v) for v in row])
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def _xlsx_safe(value):
    # openpyxl stores a string starting with '=' as a formula: image content must never become one
    if isinstance(value, str) and value.startswith("="):
        return "'" + value
    return value
