"""ScanPanel: ipywidgets to pick a source, choose risk types, set concurrency and a rate limit, press
Scan, watch the progress and the task table, and see the new findings.

It runs the same task machinery as `stowaway scan` (ingest/tasks.py), so a scan started here shows up
in `stowaway tasks` and in Datasette like any other. Testable without a browser: set `.value` on the
widgets and call `panel.scan_button.click()`.
"""
from __future__ import annotations

import html

import ipywidgets as w
import pandas as pd

from stowaway.ingest.model import RISK_TYPES

from . import data

SOURCE_KINDS = [
    ("docker save archive (docker-archive:PATH)", "docker-archive"),
    ("OCI image layout (oci:DIR[:REF])", "oci"),
    ("registry (registry:HOST/REPO:TAG)", "registry"),
    ("local Docker engine (docker:REF)", "docker"),
]


class ScanPanel:
    def __init__(self, db_path: str, location: str = "", kind: str = "docker-archive", policy: dict | None = None):
        self.db_path = db_path
        self.policy = dict(policy or {})
        self.kind = w.Dropdown(options=SOURCE_KINDS, value=kind, description="Source")
        self.location = w.Text(value=location, description="Location", placeholder="path, DIR:REF or HOST/REPO:TAG",
                               layout=w.Layout(width="60%"))
        self.risks = w.SelectMultiple(options=list(RISK_TYPES), value=list(RISK_TYPES), description="Risk types",
                                      rows=len(RISK_TYPES))
        self.concurrency = w.BoundedIntText(value=1, min=1, max=16, description="Concurrency")
        self.rate_limit = w.BoundedIntText(value=0, min=0, max=100000, description="Images/hour",
                                           tooltip="per registry; 0 means no limit")
        self.scan_button = w.Button(description="Scan", button_style="primary", icon="search")
        self.progress = w.IntProgress(value=0, min=0, max=1, description="Progress")
        self.status = w.HTML()
        self.tasks = w.HTML()
        self.results = w.Output()
        self.last_outcomes: list = []
        self.last_findings = pd.DataFrame()
        self.scan_button.on_click(self._on_scan)
        self.widget = w.VBox([
            w.HBox([self.kind, self.location]),
            w.HBox([self.risks, w.VBox([self.concurrency, self.rate_limit, self.scan_button])]),
            self.progress, self.status, self.tasks, self.results,
        ])

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)

    @property
    def source(self) -> str:
        return f"{self.kind.value}:{self.location.value.strip()}"

    def _policy(self) -> dict:
        from stowaway.ingest.tasks import registry_of

        policy = dict(self.policy)
        host = registry_of(self.source)
        if self.rate_limit.value and host:
            registries = dict(policy.get("registries") or {})
            registries[host] = {**registries.get(host, {}), "images_per_hour": int(self.rate_limit.value)}
            policy["registries"] = registries
        return policy

    def _show_tasks(self, database) -> None:
        rows = database.execute("SELECT id, kind, state, total, done, failed, waiting, progress, created_at"
                                " FROM tasks ORDER BY id DESC LIMIT 5").fetchall()
        head = "".join(f"<th>{h}</th>" for h in ("task", "kind", "state", "images", "done", "failed", "waiting",
                                                  "progress", "created"))
        body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c if c is not None else ''))}</td>" for c in r) + "</tr>"
                       for r in rows)
        self.tasks.value = f"<table><tr>{head}</tr>{body}</table>"

    def _on_scan(self, _button=None) -> None:
        from stowaway.ingest.db import connect
        from stowaway.ingest.tasks import TaskRunner, create_task

        if not self.location.value.strip():
            self.status.value = "<b>Enter a location to scan.</b>"
            return
        self.scan_button.disabled = True
        database = connect(self.db_path)
        try:
            before = {r[0] for r in database.execute("SELECT id FROM scans")}
            task_id = create_task(database, [self.source], risks=list(self.risks.value),
                                  concurrency=self.concurrency.value)
            self.progress.value, self.progress.max = 0, 1
            self.status.value = f"scanning <code>{html.escape(self.source)}</code> (task {task_id})…"
            self._show_tasks(database)

            def on_item(item_id, state, error):
                if state in ("done", "failed"):
                    self.progress.value = min(self.progress.max, self.progress.value + 1)
                self._show_tasks(database)

            summary = TaskRunner(database, self._policy(), on_item=on_item).run(task_id)
            self.progress.value = self.progress.max
            self.last_outcomes = summary.outcomes
            self._show_tasks(database)
            new_scans = [o.scan_id for o in summary.outcomes if o.scan_id not in before]
            failed = [o for o in summary.outcomes if o.status == "failed"]
            waiting = f", {summary.waiting} deferred by the rate limit" if summary.waiting else ""
            self.status.value = (f"task {task_id}: {len(summary.outcomes) - len(failed)} image(s) scanned, "
                                 f"{len(failed)} failed{waiting}" +
                                 "".join(f"<br>failed: {html.escape(o.reference)}: {html.escape(o.error)}" for o in failed))
            frame = data.findings(database)
            self.last_findings = frame[frame["scan_id"].isin(new_scans)].reset_index(drop=True)
            self.results.clear_output()
            with self.results:
                from IPython.display import display

                display(self.last_findings)
        finally:
            self.scan_button.disabled = False
            database.conn.close()
