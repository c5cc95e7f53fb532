"""The dashboard's plotly figures, built in Python and drawn by the locally served plotly.min.js.

Traces are plain dicts and the figures skip plotly's validation: validating three small figures took
70 ms of a page that must answer within Datasette's 200 ms facet budget.
"""
from __future__ import annotations

import plotly.graph_objects as go

from stowaway.ingest.model import SEVERITIES

COLORS = {"critical": "#7b1fa2", "high": "#d32f2f", "medium": "#f57c00", "low": "#fbc02d", "negligible": "#9e9e9e",
          "unknown": "#607d8b"}


def _figure(traces, title, **kw):
    layout = {"title": {"text": title}, "legend": {"traceorder": "normal"}, "height": 420,
              "margin": {"l": 60, "r": 20, "t": 50, "b": 120}, **kw}
    return go.Figure(traces, layout, _validate=False)


def per_image(rows, images_total):
    """The worst images (the query picks them), one stacked bar per image."""
    rows = [r for r in rows if any(r[s] for s in SEVERITIES)]
    names = [r["image"] for r in rows]
    traces = [{"type": "bar", "name": sev, "x": names, "y": [r[sev] for r in rows], "marker": {"color": COLORS[sev]}}
              for sev in SEVERITIES]
    shown = f" (the {len(rows)} worst of {images_total})" if images_total > len(rows) else ""
    return _figure(traces, "Failing findings per severity per image" + shown, barmode="stack")


def top_packages(rows):
    labels = [f"{r['package']} ({r['ecosystem']})" if r["ecosystem"] else r["package"] for r in rows]
    traces = [{"type": "bar", "x": [r["n"] for r in rows][::-1], "y": labels[::-1], "orientation": "h",
               "text": [f"{r['images']} image(s)" for r in rows][::-1], "marker": {"color": "#d32f2f"}}]
    return _figure(traces, "Top vulnerable packages (vulnerabilities across current scans)",
                   height=max(300, 28 * len(rows) + 100), margin={"l": 260, "r": 20, "t": 50, "b": 40})


def trend(rows):
    scans = sorted({(r["scan_id"], r["finished_at"], r["reference"]) for r in rows})
    x = [f"{finished} · scan {scan_id}" for scan_id, finished, _ in scans]
    traces = []
    for sev in SEVERITIES:
        counts = {r["scan_id"]: r["n"] for r in rows if r["severity"] == sev}
        if counts:
            traces.append({"type": "scatter", "name": sev, "x": x, "y": [counts.get(s[0], 0) for s in scans],
                           "mode": "lines+markers", "stackgroup": "one", "line": {"color": COLORS[sev]},
                           "text": [s[2] for s in scans], "hovertemplate": "%{text}: %{y}"})
    # one category per scan: scans of one minute would otherwise pile up on a time axis
    return _figure(traces, f"Failing findings recorded by each of the last {len(scans)} scans",
                   xaxis={"type": "category", "showticklabels": len(scans) <= 30})


def dashboard(data) -> list[dict]:
    """[{id, title, json, empty}] for the template; an empty chart says so instead of drawing axes."""
    out = []
    per_image_rows = [r for r in data["per_image"] if any(r[s] for s in SEVERITIES)]
    for chart_id, title, rows, build in (("per-image", "Findings per severity per image", per_image_rows,
                                          lambda rows: per_image(rows, data["images_total"])),
                                         ("top-packages", "Top vulnerable packages", data["top_packages"], top_packages),
                                         ("trend", "Trend over scans", data["trend"], trend)):
        out.append({"id": chart_id, "title": title, "empty": not rows, "json": build(rows).to_json() if rows else None})
    return out
