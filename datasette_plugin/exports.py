"""The vulnerability report and the baseline report as CSV or XLSX: the plugin's URLs over
stowaway.ingest.exports, the one implementation `stowaway export` uses too (columns, SELECT, masking,
scopes and the formatted XLSX writer all live there).

Scope: every image's current scan, one image (`image=ID|REF`), one repository (`repository=NAME`),
each repository's newest image (`latest=1`), or the rows of a filtered table page: the table's own
querystring (`severity=high&cvss_score__gte=7`) becomes extra conditions through Datasette's Filters,
so "export what I am looking at" is the same URL arguments with another path.
"""
from __future__ import annotations

from datasette.filters import Filters

from stowaway.ingest import exports as shared
from stowaway.ingest.exports import CONTENT_TYPES, REPORTS, default_file_name  # noqa: F401  (one implementation)

# the plugin's own arguments, not column filters
SCOPE_ARGS = {"image", "repository", "registry", "latest", "format", "db"}


class ExportError(ValueError):
    pass


def filters(report: str, view_columns: list[str], pairs: list[tuple[str, str]]) -> tuple[list[str], dict]:
    """The table page's filters (column=value, column__op=value) as SQL conditions; a column the report
    table does not have is refused with one sentence."""
    usable = []
    for key, value in pairs:
        if key.startswith("_") or key in SCOPE_ARGS:
            continue
        column = key.rsplit("__", 1)[0] if "__" in key else key
        if column not in view_columns:
            raise ExportError(f"unknown column {column!r} in the filter {key}={value}")
        usable.append((key, value))
    where, params = Filters(sorted(usable)).build_where_clauses(REPORTS[report]["view"])
    return where, params


def render(report: str, fmt: str, columns, rows) -> bytes:
    return shared.render(report, fmt, columns, rows)


# --- many images: a CSV streamed a batch of images at a time, a spreadsheet capped ------------------
# The export of every image (10,000 images are 810,000 vulnerability rows, 300 MB of CSV) is neither read
# into memory nor built whole: the images are taken in the export's order (by reference) STREAM_IMAGES
# at a time, each batch's rows sorted as the whole export sorts them, so the bytes are the same as one
# query's. A spreadsheet cannot be streamed (a zip) and openpyxl writes about 3,000 rows a second: at
# most MAX_XLSX_ROWS rows, and when there are more, a last row and a header say so.
STREAM_IMAGES = 200
MAX_XLSX_ROWS = 50_000


async def image_batches(db, image_id=None) -> list[list[int]]:
    """The ids of the images with a current scan in the export's order, STREAM_IMAGES a batch (images of
    the same reference never split across batches)."""
    if image_id is not None:
        return [[int(image_id)]]
    got = (await db.execute("SELECT id, reference FROM images WHERE last_scan_id IS NOT NULL"
                            " ORDER BY reference, id")).rows
    batches: list[list[int]] = []
    last = object()
    for image, reference in got:
        if not batches or (len(batches[-1]) >= STREAM_IMAGES and reference != last):
            batches.append([])
        batches[-1].append(image)
        last = reference
    return batches


async def fetch_batch(db, report: str, where: list[str], params: dict, ids: list[int], repository, latest_only):
    def run(conn):
        return shared.rows(conn, report, ids, repository or None, latest_only, where, params)

    return await db.execute_fn(run)


async def prepare(db, report: str, pairs, scope=()) -> tuple[list[str], dict]:
    """The filters' SQL, checked before anything is sent (an unknown column is a 400, not half a file)."""
    view = REPORTS[report]["view"]
    view_columns = [d[0] for d in (await db.execute(f"SELECT * FROM [{view}] LIMIT 0")).description]
    where, params = filters(report, view_columns, pairs)
    return list(scope) + where, params


def csv_stream(db, report: str, where, params, batches, repository, latest_only):
    """An AsgiStream body writer: the header, then each batch's rows as they are read."""
    import csv
    import io

    async def write(out):
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(REPORTS[report]["columns"])
        for ids in batches:
            _columns, rows = await fetch_batch(db, report, where, params, ids, repository, latest_only)
            writer.writerows(rows)
            if buf.tell():
                await out.write(buf.getvalue())
                buf.seek(0)
                buf.truncate()
        if buf.tell():
            await out.write(buf.getvalue())

    return write


async def capped_rows(db, report: str, where, params, batches, repository, latest_only,
                      cap: int | None = None) -> tuple[list[str], list[tuple], bool]:
    """(columns, at most CAP rows (MAX_XLSX_ROWS), whether the export holds more): batches are read
    until one row past the cap, no further."""
    cap = MAX_XLSX_ROWS if cap is None else cap
    columns, kept = REPORTS[report]["columns"], []
    for ids in batches:
        columns, rows = await fetch_batch(db, report, where, params, ids, repository, latest_only)
        kept += rows
        if len(kept) > cap:
            return columns, kept[:cap], True
    return columns, kept, False
