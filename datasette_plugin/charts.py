"""The dashboard's plotly figures, built in Python and drawn by the locally served plotly.min.js.

Traces are plain dicts and the figures skip plotly's validation: validating three small figures took
70 ms of a page that must answer within Datasette's 200 ms facet budget.

Every bar and point carries, in `customdata`, the URL of the findings it counts; the page's script
follows it on a click (plotly_click), so a bar is a link to its table.
Severities are always drawn in SEVERITIES order (critical, high, medium, low, negligible, unknown): the
stack from the bottom up and the legend from the top down.
"""
from __future__ import annotations

import plotly.graph_objects as go

from stowaway.ingest.model import SEVERITIES

COLORS = {"critical": "#7b1fa2", "high": "#d32f2f", "medium": "#f57c00", "low": "#fbc02d", "negligible": "#9e9e9e",
          "unknown": "#607d8b"}
SERIES_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
                 "#17becf"]


def _figure(traces, title, **kw):
    layout = {"title": {"text": title}, "legend": {"traceorder": "normal"}, "height": 420,
              "margin": {"l": 60, "r": 20, "t": 50, "b": 120}, "hovermode": "closest", **kw}
    return go.Figure(traces, layout, _validate=False)


def per_image(rows, images_total, links):
    """The worst images (the query picks them), one stacked bar per image; each segment links to that
    image's failing findings of that severity."""
    rows = [r for r in rows if any(r[s] for s in SEVERITIES)]
    names = [r["image"] for r in rows]
    traces = [{"type": "bar", "name": sev, "x": names, "y": [r[sev] for r in rows], "marker": {"color": COLORS[sev]},
               "customdata": [links.findings(r["image_id"], sev) for r in rows],
               "hovertemplate": "%{x}<br>" + sev + ": %{y} (click for the findings)<extra></extra>"}
              for sev in SEVERITIES]
    shown = f" (the {len(rows)} worst of {images_total})" if images_total > len(rows) else ""
    return _figure(traces, "Failing findings per severity per image" + shown, barmode="stack")


def top_packages(rows, links):
    """The 20 packages with the most vulnerabilities, stacked by severity; a segment links to them."""
    totals: dict[tuple, int] = {}
    for r in rows:
        totals[(r["package"], r["ecosystem"])] = totals.get((r["package"], r["ecosystem"]), 0) + r["n"]
    order = sorted(totals, key=lambda k: (-totals[k], k[0] or "", k[1] or ""))[::-1]  # biggest on top
    labels = [f"{p} ({e})" if e else p for p, e in order]
    traces = []
    for sev in SEVERITIES:
        got = {(r["package"], r["ecosystem"]): r for r in rows if r["severity"] == sev}
        if not got:
            continue
        traces.append({"type": "bar", "orientation": "h", "name": sev, "y": labels, "marker": {"color": COLORS[sev]},
                       "x": [got[k]["n"] if k in got else 0 for k in order],
                       "customdata": [links.package(k[0], k[1], sev) for k in order],
                       "hovertemplate": "%{y}<br>" + sev + ": %{x} (click for them)<extra></extra>"})
    return _figure(traces, "Top vulnerable packages (vulnerabilities across current scans)", barmode="stack",
                   height=max(300, 28 * len(order) + 100), margin={"l": 260, "r": 20, "t": 50, "b": 40})


def trend(data, links):
    """One line per image or per registry over time; a point links to the findings its scan recorded."""
    traces = []
    for n, s in enumerate(data["series"]):
        pts = s["points"]
        traces.append({"type": "scatter", "mode": "lines+markers", "name": s["name"],
                       "x": [p["x"] for p in pts], "y": [p["n"] for p in pts],
                       "line": {"color": SERIES_COLORS[n % len(SERIES_COLORS)], "shape": "hv"},
                       "customdata": [links.scan(p["scan_id"]) for p in pts],
                       "text": [f"{p['image']} (scan {p['scan_id']}): {p['critical']} critical, {p['high']} high"
                                for p in pts],
                       "hovertemplate": "%{text}<br>%{y} failing findings<extra>" + s["name"][:40] + "</extra>"})
    what = "image" if data["by"] == "image" else "registry"
    title = f"Failing findings per {what} over the last {data['scans']} scans"
    if data["dropped"]:
        title += f" ({len(data['series'])} shown, {data['dropped']} more)"
    return _figure(traces, title, xaxis={"type": "date"}, yaxis={"rangemode": "tozero"},
                   legend={"traceorder": "normal", "orientation": "h", "y": -0.25})


def dashboard(data, links) -> list[dict]:
    """[{id, title, json, empty}] for the template; an empty chart says so instead of drawing axes."""
    out = []
    per_image_rows = [r for r in data["per_image"] if any(r[s] for s in SEVERITIES)]
    for chart_id, title, empty, build in (
            ("per-image", "Findings per severity per image", not per_image_rows,
             lambda: per_image(per_image_rows, data["images_total"], links)),
            ("top-packages", "Top vulnerable packages", not data["top_packages"],
             lambda: top_packages(data["top_packages"], links)),
            ("trend", "Trend over scans", not data["trend"]["series"], lambda: trend(data["trend"], links))):
        out.append({"id": chart_id, "title": title, "empty": empty, "json": None if empty else build().to_json()})
    return out
