"""Facets that know what the columns mean: severity in severity order, CVSS buckets, fix or no fix,
layer with the command that made it, finding kind in report order.

Each subclasses Datasette's Facet through suggest() and facet_results() only (the constructor
changed between 0.65 and 1.0: `metadata=` became `table_config=`), and selects rows with Datasette's
own filters (`severity=high`, `cvss_score__gte=7`, `fixed_version__notblank=1`), so a selected facet
value is an ordinary, bookmarkable table URL.

On the big tables (report tables of 1,000,000 findings) a facet over the whole table, or over the rows
of one selected value of a few-valued column (`severity=low`, `fixed_version__notblank=1`, `kind=secret`,
`suppressed=0`), or of one layer or one CVSS bucket as those facets link to them, is read from the counts
the read model keeps (readmodel.COUNTED_FACETS) instead of a GROUP BY over every row; any other selection
counts the rows. `values` is Datasette's column facet (values by count) with that shortcut. On a table
without a command column (findings, packages) the layer facet counts rows per layer and image (an index
reads them) before it joins the commands.
"""
from __future__ import annotations

import json
import re

from datasette.database import QueryInterrupted
from datasette.facets import Facet
from datasette.filters import Filters
from datasette.utils import escape_sqlite, path_with_added_args, path_with_removed_args

from stowaway.ingest import readmodel
from stowaway.ingest.model import KINDS, SEVERITIES

KIND_LABELS = {
    "vulnerability": "Vulnerabilities", "malware": "Malicious files", "secret": "Sensitive information",
    "unsafe_setting": "Unsafe settings", "compliance": "Software compliance", "base_image": "Base image",
}

# (label, filters that select the bucket); NVD's qualitative rating scale for CVSS v3.
CVSS_BUCKETS = [
    ("critical (9.0-10.0)", {"__gte": "9"}),
    ("high (7.0-8.9)", {"__gte": "7", "__lt": "9"}),
    ("medium (4.0-6.9)", {"__gte": "4", "__lt": "7"}),
    ("low (0.1-3.9)", {"__gt": "0", "__lt": "4"}),
    ("none (0.0)", {"__exact": "0"}),
    ("not scored", {"__isnull": "1"}),
]


class _Base(Facet):
    """Shared plumbing: one facet block per configured column, values in a fixed meaningful order."""

    column_hint: tuple[str, ...] = ()  # columns this facet is suggested for
    truncated = False

    async def suggest(self):
        columns = await self.get_columns(self.sql, self.params)
        enabled = {c["config"].get("simple") or c["config"].get("column") for c in self.get_configs()}
        return [{"name": col, "type": self.type,
                 "toggle_url": self.ds.absolute_url(self.request, self.ds.urls.path(
                     path_with_added_args(self.request, {f"_facet_{self.type}": col})))}
                for col in columns if col in self.column_hint and col not in enabled]

    async def facet_results(self):
        results, timed_out = [], []
        pairs = self.get_querystring_pairs()
        for source_and_config in self.get_configs():
            config = source_and_config["config"]
            column = config.get("column") or config["simple"]
            try:
                columns = await self.get_columns(self.sql, self.params)
                if column not in columns:
                    continue
                self.truncated = False  # a bucket list cut at the facet size says so
                buckets = await self.buckets(column, columns)
            except QueryInterrupted:
                timed_out.append(column)
                continue
            values = []
            for label, value, count, filters in buckets:
                selected = all(pair in pairs for pair in filters)
                path = (path_with_removed_args(self.request, dict(filters)) if selected
                        else path_with_added_args(self.request, dict(filters)))
                values.append({"value": value, "label": label, "count": count, "selected": selected,
                               "toggle_url": self.ds.absolute_url(self.request, self.ds.urls.path(path))})
            results.append({
                "name": column, "type": self.type, "hideable": source_and_config["source"] != "metadata",
                "toggle_url": self.ds.urls.path(path_with_removed_args(self.request, {f"_facet_{self.type}": column})),
                "results": values, "truncated": self.truncated,
            })
        return results, timed_out

    async def query(self, sql):
        return (await self.ds.execute(self.database, sql, self.params, truncate=False,
                                      custom_time_limit=self.ds.setting("facet_time_limit_ms"))).rows

    async def kept(self, column: str, top: int | None = None) -> dict | None:
        """{value: rows} of this facet over the page's rows, from the read model's kept counts, when the
        page shows the whole table or the rows of one counted value (see the module's docstring); None
        when it does not (or the database has no kept counts): then the facet counts the rows. TOP: only
        the TOP values with the most rows (ties by value), chosen in SQL (10,000 images are 10,000 counts)."""
        key = f"{self.type}:{column}"
        if key not in (readmodel.COUNTED_FACETS.get(self.table) or readmodel.COUNTED_BASE.get(self.table) or {}):
            return None
        selection = await self._selection()
        if selection is None:
            return None
        if not await self._has_counts():  # an older database served as it is
            return None
        if selection[0].startswith("="):  # a base table's rows of one value: this facet's own column only
            if (readmodel.COUNTED_BASE.get(self.table) or {}).get(key) != selection[0][1:]:
                return None
            rows = (await self.ds.execute(
                self.database, "select value, n from report_facet_counts where tbl = ? and filter = ''"
                " and filter_value = '' and facet = ? and value = ? and n > 0", [self.table, key, selection[1]])).rows
            return {r[0]: r[1] for r in rows}
        order = f" order by n desc, value limit {int(top)}" if top is not None else ""
        chosen = "json_array(?, ?)" if isinstance(selection[1], tuple) else "?"  # a layer: as the counts write it
        values = list(selection[1]) if isinstance(selection[1], tuple) else [selection[1]]
        rows = (await self.ds.execute(
            self.database, "select value, n from report_facet_counts where tbl = ? and filter = ?"
            f" and filter_value = {chosen} and facet = ? and n > 0{order}",
            [self.table, selection[0], *values, key])).rows
        return {r[0]: r[1] for r in rows}

    async def value_counts(self, column: str) -> dict:
        """{value: rows} of COLUMN over the page's rows: the kept counts when they answer, else one GROUP BY."""
        counts = await self.kept(column)
        if counts is None:
            col = escape_sqlite(column)
            rows = await self.query(f"select {col} as value, count(*) as n from ({self.sql}) where {col} is not null"
                                    f" group by {col}")
            counts = {r["value"]: r["n"] for r in rows}
        return counts

    async def _has_counts(self) -> bool:
        known = self.ds.__dict__.setdefault("_stowaway_facet_counts", set())
        if self.database not in known:
            if not (await self.ds.execute(self.database, "select 1 from sqlite_master where type = 'table'"
                                                         " and name = 'report_facet_counts'")).rows:
                return False
            known.add(self.database)
        return True

    async def _selection(self) -> tuple[str, object] | None:
        """('', '') for the whole table, (column, value) for the rows of one counted value, ('=column', value)
        for a base table's rows of one value, else None.
        The page's SQL must be exactly what Datasette makes of its filter arguments alone (no _where,
        _search, _through, or _next position), so the counts are of the same rows."""
        pairs = sorted((k, v) for k in self.request.args for v in self.request.args.getlist(k)
                       if not (k.startswith("_") and "__" not in k))
        clauses, params = Filters(pairs).build_where_clauses(self.table)
        where = f"where {' and '.join(clauses)} " if clauses else ""
        if not self.sql.endswith(f" from {escape_sqlite(self.table)} {where}") or dict(self.params) != params:
            return None
        if not pairs:
            return "", ""
        if self.table in readmodel.COUNTED_BASE and len(pairs) == 1 and pairs[0][0].partition("__")[2] in ("", "exact"):
            # ('=column', value): the rows of one value of a base table (text columns), whose facet on that
            # very column is that value's whole-table count
            return "=" + pairs[0][0].partition("__")[0], pairs[0][1]
        if self.table not in readmodel.COUNTED_FILTERS:
            return None
        chosen = _expression_selection(pairs)  # one layer's rows, one CVSS bucket: the facets' own links
        if chosen is not None:
            return chosen if chosen[0] in readmodel.COUNTED_FILTERS[self.table] else None
        suffix = ""
        if len(pairs) == 2 and OPEN_PAIR in pairs:  # one value among the unsuppressed rows
            pairs = [p for p in pairs if p != OPEN_PAIR]
            suffix = readmodel.OPEN
        if len(pairs) != 1:
            return None
        key, value = pairs[0]
        column, _, lookup = key.partition("__")
        if column == "fixed_version" and lookup in ("notblank", "isblank"):
            column, value, lookup = "fix_available", "yes" if lookup == "notblank" else "no", ""
        if lookup not in ("", "exact") or column + suffix not in readmodel.COUNTED_FILTERS[self.table]:
            return None
        if column in INTEGER_COLUMNS:  # compared as a number, as SQLite's column affinity does
            return (column + suffix, int(value)) if INTEGER.fullmatch(value) else None
        return column + suffix, value

    async def buckets(self, column: str, columns: list[str]) -> list[tuple[str, object, int, list[tuple[str, str]]]]:
        raise NotImplementedError


class SeverityFacet(_Base):
    """critical -> high -> medium -> low -> negligible -> unknown, never by count."""

    type = "severity"
    column_hint = ("severity",)

    async def buckets(self, column, columns):
        counts = await self.value_counts(column)
        order = list(SEVERITIES) + sorted(str(v) for v in counts if v not in SEVERITIES)
        return [(v, v, counts[v], [(column, v)]) for v in order if v in counts]


class CvssFacet(_Base):
    type = "cvss"
    column_hint = ("cvss_score",)

    async def buckets(self, column, columns):
        counts = await self.kept(column)
        if counts is not None:
            row = [counts.get(label) for label, _ in CVSS_BUCKETS]
        else:
            col = escape_sqlite(column)
            row = (await self.query(
                f"select sum({col} >= 9), sum({col} >= 7 and {col} < 9), sum({col} >= 4 and {col} < 7),"
                f" sum({col} > 0 and {col} < 4), sum({col} = 0), sum({col} is null) from ({self.sql})"))[0]
        out = []
        for (label, filters), n in zip(CVSS_BUCKETS, row):
            if n:
                out.append((label, label, n, [(column + op, v) for op, v in filters.items()]))
        return out


class FixFacet(_Base):
    """Whether a fixed version exists: the first question when deciding what to patch."""

    type = "fix"
    column_hint = ("fixed_version",)

    async def buckets(self, column, columns):
        counts = await self.kept(column)
        if counts is not None:
            row = [counts.get("yes"), counts.get("no")]
        else:
            col = escape_sqlite(column)
            row = (await self.query(f"select sum(coalesce({col}, '') <> ''), sum(coalesce({col}, '') = '')"
                                    f" from ({self.sql})"))[0]
        # the stored yes/no column where the table has one (an index answers its pages: count and first
        # rows), else Datasette's blank tests on the column itself
        if "fix_available" in columns:
            choose = [[("fix_available", "yes")], [("fix_available", "no")]]
        else:
            choose = [[(column + "__notblank", "1")], [(column + "__isblank", "1")]]
        out = []
        if row[0]:
            out.append(("fix available", "yes", row[0], choose[0]))
        if row[1]:
            out.append(("no fix yet", "no", row[1], choose[1]))
        return out


class LayerFacet(_Base):
    """Layer position with the command that created it; where there is no text column, joins image_layers."""

    type = "layer"
    column_hint = ("layer_index",)

    async def buckets(self, column, columns):
        col = escape_sqlite(column)
        counts = await self.kept(column) if "layer_created_by" in columns else None
        if counts is not None:
            pairs = sorted(((*json.loads(v), n) for v, n in counts.items()), key=lambda r: (r[0], -r[2]))
            return [(_label(index, cmd, 1), index, n,
                     [(column, str(index))] + ([("layer_created_by", cmd)] if cmd is not None else []))
                    for index, cmd, n in pairs[:self.get_facet_size()]]
        if "layer_created_by" in columns:
            rows = await self.query(
                f"select {col} as value, layer_created_by as cmd, count(*) as n from ({self.sql})"
                f" where {col} is not null group by {col}, layer_created_by order by {col}, n desc"
                f" limit {self.get_facet_size()}")
            return [(_label(r["value"], r["cmd"], 1), r["value"], r["n"],
                     [(column, str(r["value"]))] + ([("layer_created_by", r["cmd"])] if r["cmd"] is not None else []))
                    for r in rows]
        if "image_id" in columns:
            # the rows counted per layer and image first (an index on the selection's column, the layer and
            # the image reads them in that order, without the table), then each group joined to its command
            rows = await self.query(
                f"select g.value, min(il.created_by) as cmd, count(distinct il.created_by) as cmds, sum(g.n) as n"
                f" from (select {col} as value, image_id, count(*) as n from ({self.sql}) where {col} is not null"
                f" group by {col}, image_id) g left join image_layers il on il.image_id = g.image_id"
                f" and il.position = g.value group by g.value order by g.value limit {self.get_facet_size()}")
        else:
            rows = await self.query(f"select {col} as value, null as cmd, 0 as cmds, count(*) as n from ({self.sql})"
                                    f" where {col} is not null group by {col} order by {col}"
                                    f" limit {self.get_facet_size()}")
        return [(_label(r["value"], r["cmd"], r["cmds"]), r["value"], r["n"], [(column, str(r["value"]))]) for r in rows]


def _label(index, command, commands) -> str:
    if not command:
        return f"layer {index}"
    command = " ".join(command.replace("/bin/sh -c #(nop) ", "").replace("/bin/sh -c ", "RUN ").split())
    if len(command) > 70:
        command = command[:67] + "..."
    more = f" (+{commands - 1} other commands)" if commands and commands > 1 else ""
    return f"layer {index}: {command}{more}"


class KindFacet(_Base):
    """Finding kinds in the order of the security report's sections, with their section names."""

    type = "kind"
    column_hint = ("kind",)

    async def buckets(self, column, columns):
        counts = await self.value_counts(column)
        order = list(KINDS) + sorted(str(v) for v in counts if v not in KINDS)
        return [(KIND_LABELS.get(v, v), v, counts[v], [(column, v)]) for v in order if v in counts]


class ValuesFacet(_Base):
    """Datasette's column facet (the most frequent values first), answered from the kept counts on the
    big tables (`{"values": "image"}` in a table's facets)."""

    type = "values"

    async def buckets(self, column, columns):
        size = self.get_facet_size()
        counts = await self.kept(column, top=size + 1)
        if counts is not None:
            top = sorted(counts.items(), key=lambda vn: (-vn[1], str(vn[0])))
        else:
            col = escape_sqlite(column)
            top = [(r["value"], r["n"]) for r in await self.query(
                f"select {col} as value, count(*) as n from ({self.sql}) where {col} is not null group by {col}"
                f" order by n desc, value limit {size + 1}")]
        self.truncated = len(top) > size
        return [(str(v), v, n, [(column, str(v))]) for v, n in top[:size]]


# integer columns among the counted filters: a URL's value is compared with them as a number
INTEGER_COLUMNS = {"suppressed"}
OPEN_PAIR = ("suppressed", "0")
INTEGER = re.compile(r"0|-?[1-9][0-9]*")
# a CVSS bucket's link selects these filters (Datasette's own): {frozenset(pairs): bucket label}
CVSS_SELECTIONS = {frozenset(("cvss_score" + op, v) for op, v in filters.items()): label
                   for label, filters in CVSS_BUCKETS}


def _expression_selection(pairs: list[tuple[str, str]]) -> tuple[str, object] | None:
    """The filter counted under a value of several columns (readmodel.FILTER_VALUES) that PAIRS select
    exactly, with the value the counts hold it under: ('layer', (index, command)) for the layer facet's link
    (`layer_index=N&layer_created_by=COMMAND`; a layer without a command selects every command at its
    position, which no count holds), ('cvss', label) for a CVSS bucket's; else None."""
    args = dict(pairs)
    if len(pairs) == 2 and set(args) == {"layer_index", "layer_created_by"}:
        return ("layer", (int(args["layer_index"]), args["layer_created_by"])) \
            if INTEGER.fullmatch(args["layer_index"]) else None
    label = CVSS_SELECTIONS.get(frozenset(pairs))
    return ("cvss", label) if label is not None and len(args) == len(pairs) else None

FACET_CLASSES = [SeverityFacet, CvssFacet, FixFacet, LayerFacet, KindFacet, ValuesFacet]
