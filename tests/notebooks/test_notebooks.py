"""Every notebook runs headless, top to bottom, on a small database it builds itself (nbclient)."""
import pathlib

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = pathlib.Path(__file__).resolve().parents[2] / "notebooks"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("notebooks")


@pytest.mark.parametrize("name", ["01-scan", "02-investigate", "03-trends"])  # in order: 01 builds the database
def test_notebook_runs(name, workdir, monkeypatch):
    monkeypatch.setenv("STOWAWAY_DB", str(workdir / "stowaway.db"))
    monkeypatch.setenv("STOWAWAY_DEMO_DIR", str(workdir))
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code"), "commit notebooks without outputs"
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    text = "".join(str(o.get("data", {}).get("text/plain", "")) + str(o.get("text", ""))
                   for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    if name == "01-scan":
        assert "demo/shop:1.0" in text and "1 image(s) scanned" in text
    if name == "03-trends":
        assert "scan " in text and "->" in text
