"""`stowaway export baseline --db DB --format csv|xlsx [--image REF] [-o FILE]`: the unsafe-settings
results (baseline, SSH, weak passwords, password policy) as a table an auditor can take: one row per
check result per image, from each image's latest scan."""
from __future__ import annotations

import csv
import io
import sys

from stowaway.ingest.cli import _add_db, command
from stowaway.ingest.model import ScanError

COLUMNS = ["image", "manifest_digest", "os", "scan_id", "scanned_at", "category", "check_id", "title", "severity",
           "result", "target", "path", "line", "layer_index", "evidence", "benchmark", "description", "suggestion"]
WIDTHS = {"image": 28, "check_id": 34, "title": 48, "evidence": 70, "benchmark": 40, "description": 60,
          "suggestion": 60, "target": 28, "path": 32}
RESULT_FILLS = {"fail": "F8CBAD", "pass": "C6EFCE", "not_applicable": "EDEDED"}


def export_group(sub):
    """The `export` command's KIND subparsers, created by the first module that exports something."""
    parser = sub.choices.get("export")
    if parser is None:
        parser = sub.add_parser("export", help="export results as files (baseline, ...)")
        parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])
        parser.kinds = parser.add_subparsers(dest="export_kind", metavar="KIND", parser_class=type(parser))
    return parser.kinds


@command
def add(sub):
    p = export_group(sub).add_parser(
        "baseline", help="unsafe-settings check results (one row per check per image) as CSV or XLSX")
    _add_db(p)
    p.add_argument("--format", choices=["csv", "xlsx"], default="csv", help="csv (default) or xlsx")
    p.add_argument("--image", metavar="REF", help="only this image (reference or digest); default: every image")
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE (required for xlsx); default: stdout")
    p.set_defaults(func=run)


def rows(database, ref: str | None = None) -> list[dict]:
    """The rows of the export, from each image's latest finished scan, in a stable order."""
    from stowaway.ingest.report import find_image

    if ref:
        image_id, scan_id = find_image(database, ref)
        where, params = "s.id = ?", [scan_id]
    else:
        where, params = "s.id IN (SELECT id FROM latest_scans)", []
    cur = database.execute(
        "SELECT i.reference AS image, i.manifest_digest, TRIM(COALESCE(i.os_family, '') || ' ' || COALESCE(i.os_version, ''))"
        " AS os, s.id AS scan_id, s.finished_at AS scanned_at, d.*, f.title, f.severity, f.status, f.path, f.layer_index"
        " FROM findings f JOIN scans s ON s.id = f.scan_id JOIN images i ON i.id = f.image_id"
        " JOIN setting_details d ON d.finding_id = f.id"
        f" WHERE f.kind = 'unsafe_setting' AND {where}"
        " ORDER BY i.reference, i.manifest_digest, d.category, d.check_id, d.target", params)
    names = [c[0] for c in cur.description]
    out = []
    for values in cur.fetchall():
        r = dict(zip(names, values))
        r["result"] = r.get("result") or r["status"]
        out.append({c: r.get(c) for c in COLUMNS})
    return out


def to_csv(table: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(table)
    return buf.getvalue()


def to_xlsx(table: list[dict], path: str) -> None:
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font, PatternFill
    from openpyxl.utils import get_column_letter

    wb = Workbook()
    ws = wb.active
    ws.title = "checks"
    ws.append(COLUMNS)
    for cell in ws[1]:
        cell.font = Font(bold=True)
    result_col = COLUMNS.index("result") + 1
    for r in table:
        ws.append([r[c] for c in COLUMNS])
        fill = RESULT_FILLS.get(r["result"])
        if fill:
            ws.cell(row=ws.max_row, column=result_col).fill = PatternFill("solid", fgColor=fill)
    for i, name in enumerate(COLUMNS, 1):
        ws.column_dimensions[get_column_letter(i)].width = WIDTHS.get(name, 14)
        if name in ("evidence", "description", "suggestion"):
            for (cell,) in ws.iter_rows(min_row=2, min_col=i, max_col=i):
                cell.alignment = Alignment(wrap_text=True, vertical="top")
    ws.freeze_panes = "A2"
    ws.auto_filter.ref = ws.dimensions

    summary = wb.create_sheet("summary")
    summary.append(["image", "os", "category", "fail", "pass", "not_applicable"])
    for cell in summary[1]:
        cell.font = Font(bold=True)
    counts: dict[tuple, dict] = {}
    for r in table:
        key = (r["image"], r["os"], r["category"])
        counts.setdefault(key, {"fail": 0, "pass": 0, "not_applicable": 0})[r["result"]] += 1
    for (image, os_name, category), c in counts.items():
        summary.append([image, os_name, category, c["fail"], c["pass"], c["not_applicable"]])
    summary.column_dimensions["A"].width = 30
    summary.column_dimensions["C"].width = 18
    wb.save(path)


def run(args) -> int:
    from stowaway.ingest.cli import open_db

    if args.format == "xlsx" and not args.output:
        raise ScanError("export baseline --format xlsx needs -o FILE (a workbook is not text)")
    table = rows(open_db(args.db, write=False), args.image)
    if args.format == "xlsx":
        to_xlsx(table, args.output)
    elif args.output:
        with open(args.output, "w", encoding="utf-8", newline="") as fh:
            fh.write(to_csv(table))
    else:
        sys.stdout.write(to_csv(table))
    if args.output:
        print(f"{len(table)} rows written to {args.output}", file=sys.stderr)
    return 0
