"""Facets that know what the columns mean: severity in severity order, CVSS buckets, fix or no fix,
layer with the command that made it, finding kind in report order.

Each subclasses Datasette's Facet through suggest() and facet_results() only (the constructor
changed between 0.65 and 1.0: `metadata=` became `table_config=`), and selects rows with Datasette's
own filters (`severity=high`, `cvss_score__gte=7`, `fixed_version__notblank=1`), so a selected facet
value is an ordinary, bookmarkable table URL.
"""
from __future__ import annotations

from datasette.database import QueryInterrupted
from datasette.facets import Facet
from datasette.utils import escape_sqlite, path_with_added_args, path_with_removed_args

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
                "results": values, "truncated": False,
            })
        return results, timed_out

    async def query(self, sql):
        return (await self.ds.execute(self.database, sql, self.params, truncate=False,
                                      custom_time_limit=self.ds.setting("facet_time_limit_ms"))).rows

    async def buckets(self, column: str, columns: list[str]) -> list[tuple[str, object, int, list[tuple[str, str]]]]:
        raise NotImplementedError


class SeverityFacet(_Base):
    """critical -> high -> medium -> low -> negligible -> unknown, never by count."""

    type = "severity"
    column_hint = ("severity",)

    async def buckets(self, column, columns):
        col = escape_sqlite(column)
        rows = await self.query(f"select {col} as value, count(*) as n from ({self.sql}) where {col} is not null"
                                f" group by {col}")
        counts = {r["value"]: r["n"] for r in rows}
        order = list(SEVERITIES) + sorted(str(v) for v in counts if v not in SEVERITIES)
        return [(v, v, counts[v], [(column, v)]) for v in order if v in counts]


class CvssFacet(_Base):
    type = "cvss"
    column_hint = ("cvss_score",)

    async def buckets(self, column, columns):
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
        col = escape_sqlite(column)
        row = (await self.query(f"select sum(coalesce({col}, '') <> ''), sum(coalesce({col}, '') = '')"
                                f" from ({self.sql})"))[0]
        out = []
        if row[0]:
            out.append(("fix available", "yes", row[0], [(column + "__notblank", "1")]))
        if row[1]:
            out.append(("no fix yet", "no", row[1], [(column + "__isblank", "1")]))
        return out


class LayerFacet(_Base):
    """Layer position with the command that created it; where there is no text column, joins image_layers."""

    type = "layer"
    column_hint = ("layer_index",)

    async def buckets(self, column, columns):
        col = escape_sqlite(column)
        if "layer_created_by" in columns:
            rows = await self.query(
                f"select {col} as value, layer_created_by as cmd, count(*) as n from ({self.sql})"
                f" where {col} is not null group by {col}, layer_created_by order by {col}, n desc"
                f" limit {self.get_facet_size()}")
            return [(_label(r["value"], r["cmd"], 1), r["value"], r["n"],
                     [(column, str(r["value"]))] + ([("layer_created_by", r["cmd"])] if r["cmd"] is not None else []))
                    for r in rows]
        if "image_id" in columns:
            rows = await self.query(
                f"select t.{col} as value, min(il.created_by) as cmd, count(distinct il.created_by) as cmds,"
                f" count(*) as n from ({self.sql}) t left join image_layers il on il.image_id = t.image_id"
                f" and il.position = t.{col} where t.{col} is not null group by t.{col} order by t.{col}"
                f" limit {self.get_facet_size()}")
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
        col = escape_sqlite(column)
        rows = await self.query(f"select {col} as value, count(*) as n from ({self.sql}) where {col} is not null"
                                f" group by {col}")
        counts = {r["value"]: r["n"] for r in rows}
        order = list(KINDS) + sorted(str(v) for v in counts if v not in KINDS)
        return [(KIND_LABELS.get(v, v), v, counts[v], [(column, v)]) for v in order if v in counts]


FACET_CLASSES = [SeverityFacet, CvssFacet, FixFacet, LayerFacet, KindFacet]
