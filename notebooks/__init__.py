"""Notebook helpers: DataFrames over the database (data), plotly figures (figures), the ScanPanel (panel).

    from stowaway.notebooks import data, figures, ScanPanel
"""
from . import data, figures  # noqa: F401


def __getattr__(name):
    # ipywidgets is only imported when the panel is asked for
    if name == "ScanPanel":
        from .panel import ScanPanel

        return ScanPanel
    raise AttributeError(name)
