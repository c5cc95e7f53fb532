"""The dashboard's plotly figures, built in Python and drawn by the locally served plotly.min.js."""
from __future__ import annotations

import plotly.graph_objects as go

from stowaway.ingest.model import SEVERITIES

COLORS = {"critical": "#7b1fa2", "high": "#d32f2f", "medium": "#f57c00", "low": "#fbc02d", "negligible": "#9e9e9e",
          "unknown": "#607d8b"}
MAX_IMAGES = 40  # a bar per image stops being readable beyond this: the worst ones are shown


def _layout(fig, title, **kw):
    kw = {"height": 420, "margin": {"l": 60, "r": 20, "t": 50, "b": 120}, **kw}
    fig.update_layout(title=title, legend={"traceorder": "normal"}, **kw)
    return fig


def per_image(rows):
    totals: dict[str, list[int]] = {}
    for r in rows:
        key = totals.setdefault(r["image"], [0] * len(SEVERITIES))
        rank = SEVERITIES.index(r["severity"]) if r["severity"] in SEVERITIES else len(SEVERITIES) - 1
        key[rank] += r["n"]
    worst = sorted(totals, key=lambda img: [-n for n in totals[img]] + [img])[:MAX_IMAGES]
    fig = go.Figure([go.Bar(name=sev, x=worst, y=[totals[i][rank] for i in worst], marker_color=COLORS[sev])
                     for rank, sev in enumerate(SEVERITIES)])
    shown = f" (the {len(worst)} worst of {len(totals)})" if len(totals) > len(worst) else ""
    return _layout(fig, "Findings per severity per image" + shown, barmode="stack")


def top_packages(rows):
    labels = [f"{r['package']} ({r['ecosystem']})" if r["ecosystem"] else r["package"] for r in rows]
    fig = go.Figure([go.Bar(x=[r["n"] for r in rows][::-1], y=labels[::-1], orientation="h",
                            text=[f"{r['images']} image(s)" for r in rows][::-1], marker_color="#d32f2f")])
    return _layout(fig, "Top vulnerable packages (vulnerabilities across current scans)",
                   height=max(300, 28 * len(rows) + 100), margin={"l": 260, "r": 20, "t": 50, "b": 40})


def trend(rows):
    scans = sorted({(r["scan_id"], r["finished_at"], r["reference"]) for r in rows})
    x = [f"{finished} · scan {scan_id}" for scan_id, finished, _ in scans]
    fig = go.Figure()
    for sev in SEVERITIES:
        counts = {r["scan_id"]: r["n"] for r in rows if r["severity"] == sev}
        if counts:
            fig.add_trace(go.Scatter(name=sev, x=x, y=[counts.get(s[0], 0) for s in scans], mode="lines+markers",
                                     stackgroup="one", line={"color": COLORS[sev]},
                                     text=[s[2] for s in scans], hovertemplate="%{text}: %{y}"))
    # one category per scan: scans of one minute would otherwise pile up on a time axis
    fig.update_xaxes(type="category", showticklabels=len(scans) <= 30)
    return _layout(fig, f"Failing findings recorded by each of the last {len(scans)} scans")


def dashboard(data) -> list[dict]:
    """[{id, title, json, empty}] for the template; an empty chart says so instead of drawing axes."""
    out = []
    for chart_id, title, rows, build in (("per-image", "Findings per severity per image", data["per_image"], per_image),
                                         ("top-packages", "Top vulnerable packages", data["top_packages"], top_packages),
                                         ("trend", "Trend over scans", data["trend"], trend)):
        out.append({"id": chart_id, "title": title, "empty": not rows, "json": build(rows).to_json() if rows else None})
    return out
