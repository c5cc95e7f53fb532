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


async def fetch(db, report: str, pairs, image_id=None, repository: str | None = None,
                latest_only: bool = False, scope: list[str] | tuple[str, ...] = ()) -> tuple[list[str], list[tuple]]:
    """The rows to export; `scope` adds SQL conditions the plugin built itself (the dashboard's registry)."""
    view = REPORTS[report]["view"]
    view_columns = [d[0] for d in (await db.execute(f"SELECT * FROM [{view}] LIMIT 0")).description]
    where, params = filters(report, view_columns, pairs)
    where = list(scope) + where

    def run(conn):  # an export may take longer than the page time limit; execute_fn has none
        return shared.rows(conn, report, [image_id] if image_id is not None else None, repository or None,
                           latest_only, where, params)

    return await db.execute_fn(run)


def render(report: str, fmt: str, columns, rows) -> bytes:
    return shared.render(report, fmt, columns, rows)
