"""The example notebook runs from top to bottom (nbclient, a kernel of this interpreter) and shows
its figures; its outputs are not committed; the public surface is importable."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

import tracetool
from tests.conftest import ROOT

NOTEBOOK = ROOT / "examples" / "balloon_postcopy.ipynb"


def test_notebook_is_committed_without_outputs():
    nb = json.loads(NOTEBOOK.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code and all(not c["outputs"] and c["execution_count"] is None for c in code)


def test_notebook_executes(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    # A kernelspec that starts this interpreter (the venv under test), found via JUPYTER_PATH.
    spec = tmp_path / "kernels" / "tracetool-test"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": "tracetool test", "language": "python"})
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        kernel_name="tracetool-test",
        timeout=300,
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},  # a cwd below the repository
    )
    client.execute()  # raises CellExecutionError naming the cell on any error
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    pngs = [o for o in outputs if "image/png" in o.get("data", {})]
    figure_cells = sum("trace.plot." in c.source for c in nb.cells if c.cell_type == "code")
    assert len(pngs) == figure_cells == 5
    html = [o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    assert any("Top events" in h for h in html)  # Trace._repr_html_
    assert any("fidelity" in h for h in html)  # ReplayResult._repr_html_


def test_public_surface():
    for name in tracetool.__all__:
        assert getattr(tracetool, name) is not None, name
    assert Path(tracetool.__file__).parent.name == "tracetool"
    with pytest.raises(AttributeError):
        tracetool.no_such_name  # noqa: B018
