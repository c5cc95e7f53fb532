"""The vulnerability report and the baseline report as CSV or XLSX: one implementation for the command
line (`stowaway export vulnerabilities|baseline`) and the Datasette plugin's export URLs.

The columns, their order, the SELECT each report reads (every image's current scan), the masking of
layer commands and the writers are here; the plugin adds only its URL filters (Datasette's Filters over
its materialized copy of the same SELECT), the command line only its image / repository / latest
scopes.
"""
from __future__ import annotations

import csv
import io
import json
import re
from typing import Any

from . import readmodel

# the read model's SELECTs (ingest/readmodel.py): the same rows the Datasette tables hold
SELECTS = {"vulnerabilities": readmodel.SELECTS["vulnerabilities_view"],
           "baseline": readmodel.SELECTS["unsafe_settings_view"]}

REPORTS: dict[str, dict[str, Any]] = {
    "vulnerabilities": {
        "view": "vulnerabilities_view",
        "columns": ["image", "vulnerability_id", "aliases", "severity", "cvss_score", "cvss_vector", "package",
                    "ecosystem", "installed_version", "fixed_version", "fix_available", "path", "layer_index",
                    "layer_created_by", "published", "title", "solution", "suppressed", "suppressed_reason"],
        "order": "image, severity_rank, cvss_score DESC, vulnerability_id, package",
        "sheet": "Vulnerabilities",
    },
    "baseline": {
        "view": "unsafe_settings_view",
        "columns": ["image", "category", "check_id", "title", "severity", "result", "target", "evidence",
                    "description", "suggestion", "benchmark", "path", "layer_index", "suppressed", "suppressed_reason"],
        "order": "image, result <> 'fail', severity_rank, category, check_id, target",
        "sheet": "Baseline",
    },
}
# spreadsheet column widths (characters); the rest get 14
WIDTHS = {"image": 28, "vulnerability_id": 20, "aliases": 28, "cvss_vector": 30, "package": 30, "path": 40,
          "layer_created_by": 50, "title": 48, "solution": 40, "suppressed_reason": 30, "check_id": 34, "evidence": 60,
          "description": 60, "suggestion": 60, "benchmark": 40, "target": 28, "installed_version": 16,
          "fixed_version": 16}
TEXT_COLUMNS = {"aliases", "vulnerability_id", "installed_version", "fixed_version", "check_id", "target"}
RESULT_FILLS = {"fail": "F8CBAD", "pass": "C6EFCE", "not_applicable": "EDEDED"}


def finish(report: str, rows) -> list[tuple]:
    """Rows as every export shows them: layer commands masked (ENV values, URL credentials)."""
    from .masking import mask_command

    columns = REPORTS[report]["columns"]
    masked = columns.index("layer_created_by") if "layer_created_by" in columns else None
    out = []
    for row in rows:
        row = list(row)
        if masked is not None:
            row[masked] = mask_command(row[masked])
        out.append(tuple(row))
    return out


def rows(database, report: str, image_ids: list[int] | None = None, repository: str | None = None,
         latest_only: bool = False, where: list[str] | tuple[str, ...] = (),
         params: dict[str, Any] | None = None) -> tuple[list[str], list[tuple]]:
    """The export's rows, from the read model's report tables: every image's current
    scan, or only `image_ids`, one repository, each repository's newest image. `where` adds SQL
    conditions over the report table's columns with named `params` (the plugin's URL filters,
    built by Datasette's Filters); `database` is anything with sqlite3's `execute`."""
    spec = REPORTS[report]
    clauses = list(where)
    args: dict[str, Any] = dict(params or {})
    if image_ids is not None:
        names = [f"_image{n}" for n in range(len(image_ids))]
        clauses.append(f"image_id IN ({', '.join(':' + n for n in names) or 'NULL'})")
        args.update(zip(names, image_ids))
    if repository:
        clauses.append("image_id IN (SELECT id FROM images WHERE coalesce(repository, reference) = :_repository)")
        args["_repository"] = repository
    if latest_only:
        clauses.append("image_id IN (SELECT id FROM (SELECT id, ROW_NUMBER() OVER (PARTITION BY"
                       f" coalesce(repository, reference) ORDER BY {readmodel.LATEST_ORDER}) AS n FROM images"
                       " WHERE last_scan_id IS NOT NULL) WHERE n = 1)")
    cols = ", ".join(f"[{c}]" for c in spec["columns"])
    sql = (f"SELECT {cols} FROM [{spec['view']}]" + (" WHERE " + " AND ".join(clauses) if clauses else "")
           + f" ORDER BY {spec['order']}")
    return spec["columns"], finish(report, database.execute(sql, args).fetchall())


CONTENT_TYPES = {"csv": "text/csv; charset=utf-8",
                 "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}


def render(report: str, fmt: str, columns, rows) -> bytes:
    """The file's bytes: CSV, or the formatted XLSX sheet (the same for the CLI and the plugin)."""
    if fmt == "xlsx":
        return to_xlsx(columns, rows, REPORTS[report]["sheet"])
    if fmt == "csv":
        return to_csv(columns, rows)
    raise ValueError(f"{fmt}: not an export format (csv or xlsx)")


def to_csv(columns, rows) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(columns)
    writer.writerows(rows)
    return buf.getvalue().encode("utf-8")


def _aliases(value) -> str:
    if isinstance(value, str) and value.startswith("["):
        try:
            return ", ".join(str(v) for v in json.loads(value))
        except ValueError:
            return value
    return value


def to_xlsx(columns, rows, sheet: str) -> bytes:
    """One sheet: bold frozen header, autofilter over every row, column widths, identifiers and versions as
    text (Excel must not read 1.10 as a number or a date), results coloured in the baseline."""
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font, PatternFill
    from openpyxl.utils import get_column_letter

    wb = Workbook(write_only=True)
    ws = wb.create_sheet(sheet)
    for i, name in enumerate(columns, 1):
        ws.column_dimensions[get_column_letter(i)].width = WIDTHS.get(name, 14)
    ws.freeze_panes = "A2"
    ws.auto_filter.ref = f"A1:{get_column_letter(max(1, len(columns)))}{len(rows) + 1}"
    header = []
    for name in columns:
        cell = WriteOnlyCell(ws, value=name)
        cell.font = Font(bold=True)
        header.append(cell)
    ws.append(header)
    fills = {k: PatternFill("solid", fgColor=v) for k, v in RESULT_FILLS.items()}
    for row in rows:
        out = []
        for name, value in zip(columns, row):
            if name == "aliases":
                value = _aliases(value)
            cell = WriteOnlyCell(ws, value=_xlsx_safe(value))
            if name in TEXT_COLUMNS and value is not None:
                cell.value = _xlsx_safe(str(value))
                cell.number_format = "@"
            if name == "result" and value in fills:
                cell.fill = fills[value]
            out.append(cell)
        ws.append(out)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def _xlsx_safe(value):
    # openpyxl stores a string starting with '=' as a formula: image content must never become one
    if isinstance(value, str) and value.startswith("="):
        return "'" + value
    return value


def default_file_name(report: str, images: list[str], fmt: str) -> str:
    """stowaway-vulnerabilities-corpus_shop_1.0.xlsx for one image, stowaway-vulnerabilities.xlsx for more."""
    stem = f"stowaway-{report}"
    if len(images) == 1:
        stem += "-" + re.sub(r"[^A-Za-z0-9._-]+", "_", images[0]).strip("_.")[:80]
    return f"{stem}.{fmt}"
