"""plotly figures over the DataFrames of data.py: where people would rather look than read."""
from __future__ import annotations

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from .data import SEVERITY_ORDER

SEVERITY_COLORS = {"critical": "#7b0000", "high": "#d62728", "medium": "#ff7f0e", "low": "#f2c12e",
                   "negligible": "#9ecae1", "unknown": "#aaaaaa"}


def _empty(title: str) -> go.Figure:
    fig = go.Figure()
    fig.update_layout(title=title, annotations=[{"text": "nothing found", "showarrow": False, "font": {"size": 16}}],
                      xaxis={"visible": False}, yaxis={"visible": False})
    return fig


def severity_by_image(findings: pd.DataFrame, title: str = "Findings per severity per image") -> go.Figure:
    """Stacked bars: how many failing findings of each severity every image carries."""
    if findings.empty:
        return _empty(title)
    counts = findings.groupby(["image", "severity"], observed=True).size().reset_index(name="findings")
    fig = px.bar(counts, x="image", y="findings", color="severity", title=title,
                 category_orders={"severity": SEVERITY_ORDER}, color_discrete_map=SEVERITY_COLORS)
    fig.update_layout(barmode="stack", xaxis_title=None)
    return fig


def top_vulnerable_packages(vulns: pd.DataFrame, n: int = 15) -> go.Figure:
    title = f"Top {n} vulnerable packages"
    if vulns.empty:
        return _empty(title)
    top = (vulns.assign(pkg=vulns["package"] + " " + vulns["installed"].fillna(""))
           .groupby(["pkg", "severity"], observed=True).size().reset_index(name="vulnerabilities"))
    order = top.groupby("pkg")["vulnerabilities"].sum().sort_values(ascending=False).head(n).index.tolist()
    top = top[top["pkg"].isin(order)]
    fig = px.bar(top, y="pkg", x="vulnerabilities", color="severity", orientation="h", title=title,
                 category_orders={"pkg": order, "severity": SEVERITY_ORDER}, color_discrete_map=SEVERITY_COLORS)
    fig.update_layout(yaxis_title=None)
    return fig


def fixable(vulns: pd.DataFrame) -> go.Figure:
    title = "Fixable vs unfixed vulnerabilities"
    if vulns.empty:
        return _empty(title)
    counts = vulns.assign(fix=vulns["fixable"].map({True: "fix available", False: "no fix yet"})) \
        .groupby(["fix", "severity"], observed=True).size().reset_index(name="vulnerabilities")
    return px.bar(counts, x="fix", y="vulnerabilities", color="severity", title=title,
                  category_orders={"severity": SEVERITY_ORDER}, color_discrete_map=SEVERITY_COLORS)


def secrets_by_type(secrets: pd.DataFrame) -> go.Figure:
    title = "Secrets by type"
    if secrets.empty:
        return _empty(title)
    counts = secrets.assign(state=secrets["visible"].map({1: "in the final image", 0: "deleted by a later layer"}))
    counts = counts.groupby(["rule_id", "state"]).size().reset_index(name="secrets")
    return px.bar(counts, x="secrets", y="rule_id", color="state", orientation="h", title=title)


def findings_by_layer(by_layer: pd.DataFrame, image: str = "") -> go.Figure:
    """Which Dockerfile step brought the findings in."""
    title = f"Findings by layer {image}".strip()
    if by_layer.empty or by_layer["total"].fillna(0).sum() == 0:
        return _empty(title)
    kinds = ["vulnerabilities", "secrets", "malicious", "unsafe_settings", "forbidden"]
    df = by_layer.copy()
    df["step"] = [f"{i}: {(c or '')[:60]}" for i, c in zip(df["layer_index"], df["layer_command"])]
    long = df.melt(id_vars=["step"], value_vars=kinds, var_name="kind", value_name="findings")
    return px.bar(long, y="step", x="findings", color="kind", orientation="h", title=title,
                  category_orders={"step": df["step"].tolist()})


def trend(trend_df: pd.DataFrame, title: str = "Findings over scans") -> go.Figure:
    if trend_df.empty:
        return _empty(title)
    fig = px.line(trend_df, x="scan_id", y="findings", color="severity", markers=True, title=title,
                  category_orders={"severity": SEVERITY_ORDER}, color_discrete_map=SEVERITY_COLORS)
    fig.update_layout(xaxis_title="scan")
    return fig


def comparison(diff: pd.DataFrame, image: str = "") -> go.Figure:
    title = f"Scan comparison {image}".strip()
    if diff.empty:
        return _empty(title)
    counts = diff.groupby(["change", "kind"]).size().reset_index(name="findings")
    return px.bar(counts, x="change", y="findings", color="kind", title=title,
                  category_orders={"change": ["new", "unchanged", "fixed"]})
