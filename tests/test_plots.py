"""Figures: titles, axis labels and the artists drawn (objects inspected, no pixel compare),
PNG/SVG files, skipped figures, ``trace.plot`` and the ``plot``/``analyze --plots`` commands."""

from __future__ import annotations

import gzip
import re

import numpy as np
import pytest
from matplotlib.collections import PathCollection, PolyCollection
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

import tracetool
from tests import analysis_fixtures as af
from tests.conftest import DST_EXCERPT
from tests.conftest import run_cli as run
from tracetool import plots
from tracetool.plots import PlotKind, write_plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def faked():
    """The bundled sample with the hand-made analysis results of tests/analysis_fixtures.py."""
    t = tracetool.load(DST_EXCERPT)
    af.inject(t, af.all_results())
    return t


@pytest.fixture(scope="module")
def sample():
    return tracetool.load(DST_EXCERPT)


def _bars(ax) -> list:
    """The state bars (broken_barh collections) of the phases panel."""
    return [c for c in ax.collections if isinstance(c, PolyCollection)]


def _titles(fig: Figure) -> list[str]:
    return [fig.get_suptitle(), *(ax.get_title() for ax in fig.axes)]


def test_timeline_draws_states_markers_conflicts_and_rates(faked):
    fig = plots.timeline(faked)
    ax_ph, ax_bl, ax_pc = fig.axes[:3]
    assert "Migration timeline" in fig.get_suptitle()
    assert ax_pc.get_xlabel() == "time since migration start (s)"
    assert "MiB/s" in ax_bl.get_ylabel() and "pages/s" in ax_pc.get_ylabel()
    # fixture: setup, active, postcopy-active, completed -> three states with an end, one tick
    assert len(_bars(ax_ph)) == 3
    rows = [t.get_text() for t in ax_ph.get_yticklabels()]
    assert rows == ["destination #0", "conflicts: no-inhibit"]
    marks = [c for c in ax_ph.collections if isinstance(c, PathCollection)]
    assert sum(len(c.get_offsets()) for c in marks) == 4  # the fixture's four conflicts
    # balloon: inflate 1500 pages in total -> the rate integrates back to 1500 pages (MiB)
    inflate = next(ln for ln in ax_bl.get_lines() if ln.get_label() == "inflate")
    x, y = inflate.get_xdata(), inflate.get_ydata()
    width = x[1] - x[0]
    assert np.isclose((y * width).sum(), 1500 * 4096 / 2**20)
    labels = {ln.get_label() for ln in ax_pc.get_lines()}
    assert {"requests", "placed demand", "placed background"} <= labels
    # postcopy-active (8.4 s .. 113.35 s) shaded on the rate panels
    assert len(ax_bl.patches) == len(ax_pc.patches) == 1
    assert plots._postcopy_spans(faked.analyses.result("phases")) == [(8.4, 113.35)]


def test_timeline_puts_each_conflict_on_its_policy_row(faked):
    """Conflicts of two policies, classes interleaved: each mark at its own time, on the row of
    its policy, in the colour of its class."""
    res = af.conflicts_map()
    t = res.tables["conflicts"]
    pol = ["inhibit", "no-inhibit", "inhibit", "defer"]
    res.tables["conflicts"] = t.set_column(t.column_names.index("policy"), "policy", [pol])
    af.inject(faked, {"conflicts_map": res})
    ax_ph = plots.timeline(faked).axes[0]
    rows = [x.get_text() for x in ax_ph.get_yticklabels()]
    assert rows == ["destination #0", "conflicts: inhibit", "conflicts: no-inhibit",
                    "conflicts: defer"]  # fmt: skip
    got = set()
    for c in ax_ph.collections:
        if isinstance(c, PathCollection):
            colour = tuple(np.round(c.get_facecolor()[0][:3], 3))
            got |= {(float(x), rows[int(y)], colour) for x, y in c.get_offsets()}
    from matplotlib.colors import to_rgb

    want = {
        (when, f"conflicts: {p}", tuple(np.round(to_rgb(plots.CLASS_COLOURS[k]), 3)))
        for when, p, k in zip(t["t_rel_s"].to_pylist(), pol, t["class"].to_pylist(), strict=True)
    }
    assert got == want


def test_latency_histogram_has_one_bar_per_non_empty_bucket(faked):
    fig = plots.latency_histogram(faked)
    (ax,) = fig.axes
    assert "latency" in ax.get_title().lower()
    assert "µs" in ax.get_xlabel() and ax.get_ylabel() == "host pages"
    assert ax.get_xscale() == "log"
    bars = [p for p in ax.patches if isinstance(p, Rectangle)]
    hist = af.postcopy_faults().tables["histogram"]
    assert [b.get_height() for b in bars] == hist["count"].to_pylist()
    assert [b.get_x() for b in bars] == hist["lo_us"].to_pylist()


def test_latency_cdf_marks_the_percentiles(faked):
    fig = plots.latency_cdf(faked)
    (ax,) = fig.axes
    assert ax.get_ylabel() == "fraction of requests" and "µs" in ax.get_xlabel()
    summary = af.postcopy_faults().summary
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    for p in ("p50", "p90", "p99"):
        (label,) = [k for k in lines if k.startswith(p + " ")]
        assert lines[label].get_xdata()[0] == summary[f"{p}_us"]
    (cdf,) = [ln for k, ln in lines.items() if k.endswith("requests")]
    assert sorted(cdf.get_xdata()) == sorted(
        af.postcopy_faults().tables["requests"]["latency_us"].to_pylist()
    )
    assert cdf.get_ydata()[-1] == 1.0


def test_reclaimed_has_one_line_per_policy(faked):
    fig = plots.reclaimed(faked)
    (ax,) = fig.axes
    assert ax.get_ylabel() == "reclaimed (MiB)"
    assert ax.get_xlabel() == "time since migration start (s)"
    by_label = {ln.get_label(): ln for ln in ax.get_lines()}
    assert set(by_label) == {"no-inhibit", "inhibit"}
    assert max(by_label["no-inhibit"].get_ydata()) == 1500 * 4096 / 2**20


def test_conflicts_map_places_pages_at_their_gpa(faked):
    fig = plots.conflicts_map(faked)
    ax_t, ax_n = fig.axes[:2]
    assert ax_n.get_xlabel() == "guest-physical address (GiB)"
    assert ax_n.get_ylabel() == "conflicting pages"
    xs = np.concatenate([c.get_offsets()[:, 0] for c in ax_t.collections])
    gpa = af.conflicts_map().tables["conflicts"]["gpa"].to_numpy()
    assert sorted(xs) == pytest.approx(sorted(gpa / 2**30))
    heights = [p.get_height() for p in ax_n.patches if isinstance(p, Rectangle)]
    assert sum(heights) == 4  # 3 after-place + 1 in-flight pages, stacked in one region
    assert ax_n.get_xlim()[0] == 0


def test_write_plots_writes_png_and_svg(faked, tmp_path):
    paths = write_plots(faked, tmp_path, svg=True)
    assert {p.name for p in paths} == {f"{k.value}.{e}" for k in PlotKind for e in ("png", "svg")}
    for p in paths:
        data = p.read_bytes()
        if p.suffix == ".png":
            assert data.startswith(PNG_MAGIC) and len(data) > 5000
        else:
            assert b"<svg" in data[:1000]


def test_missing_events_skip_a_figure_with_the_reason(tmp_path):
    trace_file = tmp_path / "only-state.log"
    trace_file.write_text("15155@1795630414.520618:migrate_set_state new state active\n")
    t = tracetool.load(trace_file)
    skipped: dict[str, str] = {}
    paths = write_plots(t, tmp_path / "out", skipped=skipped)
    # migrate_set_state alone: the timeline (phases) can be drawn, nothing else
    assert [p.name for p in paths] == ["timeline.png"]
    assert set(skipped) == {k.value for k in PlotKind} - {"timeline"}
    assert all("-trace enable=" in why for why in skipped.values())


def test_trace_plot_accessor_returns_figures(faked):
    assert isinstance(faked.plot.latency_cdf(), Figure)
    assert "timeline" in repr(faked.plot)


def test_real_sample_draws_every_figure(sample, tmp_path):
    skipped: dict[str, str] = {}
    paths = write_plots(sample, tmp_path, skipped=skipped)
    assert skipped == {}
    assert len(paths) == len(PlotKind)
    fig = plots.timeline(sample)
    # states from the raw lines: migrate_set_state active, postcopy-active, completed
    with gzip.open(DST_EXCERPT, "rt") as f:
        states = re.findall(r"migrate_set_state new state (\S+)", f.read())
    assert states == ["active", "postcopy-active", "completed"]
    assert len(_bars(fig.axes[0])) == len(states) - 1  # the last state has no end


def test_plot_command_writes_files(monkeypatch, capsys, tmp_path):
    code, _, err = run(monkeypatch, capsys, "plot", DST_EXCERPT, "-o", tmp_path / "f", "--svg")
    assert code == 0, err
    assert len(list((tmp_path / "f").glob("*.png"))) == len(PlotKind)
    assert len(list((tmp_path / "f").glob("*.svg"))) == len(PlotKind)
    assert f"wrote {2 * len(PlotKind)} figure files" in err


def test_analyze_plots_option(monkeypatch, capsys, tmp_path):
    code, out, _ = run(monkeypatch, capsys, "analyze", DST_EXCERPT, "--plots", tmp_path, "-q")
    assert code == 0 and "Top events" in out
    assert (tmp_path / "timeline.png").read_bytes().startswith(PNG_MAGIC)


def test_unwritable_output_is_one_line_error(monkeypatch, capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = run(monkeypatch, capsys, "plot", DST_EXCERPT, "-o", blocker / "sub")
    assert code == 2
    assert err.count("\n") == 1 and str(blocker) in err and "Traceback" not in err
