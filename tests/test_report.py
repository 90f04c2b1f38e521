"""The HTML report: parses, every section present, images embedded, nothing external, untrusted
strings escaped; notebook HTML of Trace and AnalysisResult."""

from __future__ import annotations

import base64
import gzip
import re
from html.parser import HTMLParser

import pytest

import tracetool
from tests import analysis_fixtures as af
from tests.conftest import DST_EXCERPT
from tests.conftest import run_cli as run
from tracetool.report import Section, render, write_report

EVIL = "<script>alert(1)</script>"


class Page(HTMLParser):
    """What a browser would see: tags with attributes, and the text."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)

    def ids(self) -> list[str]:
        return [a["id"] for t, a in self.tags if t == "section"]

    def images(self) -> list[bytes]:
        out = []
        for t, a in self.tags:
            if t == "img":
                head, _, data = a["src"].partition(",")
                assert head == "data:image/png;base64"
                out.append(base64.b64decode(data))
        return out


def _self_contained(page: Page) -> None:
    tags = {t for t, _ in page.tags}
    assert "script" not in tags and "link" not in tags and "iframe" not in tags
    for _, attrs in page.tags:
        for k in ("src", "href"):
            assert k not in attrs or attrs[k].startswith("data:"), attrs


@pytest.fixture
def evil_trace(tmp_path):
    """Four lines written here: one event, one non-trace line, two rejected lines carrying
    markup; the file name carries markup too."""
    path = tmp_path / "evil<b>name.log"
    path.write_text(
        "15155@1795630414.520618:migrate_set_state new state active\n"
        f"15155@1795630414.620618:postcopy_place_page host={EVIL}\n"
        "15155@1795630414.720618:<b>bogus</b> x=1\n"
        "plain <i>other</i> line\n"
    )
    return tracetool.load(path)


def test_report_of_the_sample_has_every_section_and_figure(tmp_path):
    out = write_report(tracetool.load(DST_EXCERPT), tmp_path / "r.html")
    page = Page(out.read_text())
    assert page.ids() == [s.value for s in Section if s is not Section.QMP]
    imgs = page.images()
    assert len(imgs) == 5  # timeline, latency histogram and CDF, reclaimed, conflicts map
    assert all(i.startswith(b"\x89PNG") and len(i) > 5000 for i in imgs)
    _self_contained(page)
    text = " ".join(page.text)
    # counts from the raw file: every line of the excerpt is an event
    with gzip.open(DST_EXCERPT, "rt") as f:
        n = sum(1 for _ in f)
    assert f"{n:,} = {n:,} events + 0 other + 0 rejected" in text
    assert "None: every analysis ran." in text


def test_report_with_a_qmp_log(monkeypatch, capsys, tmp_path):
    """--qmp-log adds QEMU's own query-migrate figures beside ours (the excerpt's blocktime is
    the sum of its begin/end pairs: 1,364.825 ms); strings from the log are escaped."""
    import json

    log = tmp_path / "qmp-log.json"
    reply = {"status": EVIL, "postcopy-blocktime": 1000, "postcopy-vcpu-blocktime": [1000]}
    log.write_text(json.dumps([{"side": "dst", "kind": "command", "execute": "query-migrate",
                                "reply": {"return": reply}}]))  # fmt: skip
    text = render(tracetool.load(DST_EXCERPT), qmp_log=log)
    page = Page(text)
    assert page.ids() == [s.value for s in Section]
    section = text[text.index(f'id="{Section.QMP.value}"') :]
    cells = re.findall(r"<td>([^<]*)</td>", section[: section.index("</section>")])
    row = cells[cells.index("postcopy-blocktime (ms)") :][:6]
    assert row == ["postcopy-blocktime (ms)", "dst", "1000", "1364.825", "364.825", "36.483"]
    assert EVIL not in text and "&lt;script&gt;" in section
    code, _, err = run(
        monkeypatch, capsys, "report", DST_EXCERPT, "-o", tmp_path / "r.html", "--qmp-log", log
    )
    assert code == 0, err
    assert "postcopy-blocktime (ms)" in (tmp_path / "r.html").read_text()


def test_untrusted_strings_are_escaped(evil_trace):
    text = render(evil_trace)
    page = Page(text)
    _self_contained(page)
    assert {t for t, _ in page.tags}.isdisjoint({"b", "i"})  # markup in the trace stays text
    seen = " ".join(page.text)
    assert EVIL in seen and "<b>bogus</b>" in seen and "evil<b>name.log" in seen
    assert "4 = 1 events + 1 other + 2 rejected" in seen


def test_skipped_analyses_name_what_is_missing(evil_trace):
    page = Page(render(evil_trace))
    text = " ".join(page.text)
    skipped = text[text.index("Skipped analyses") :]
    # only migrate_set_state is in the trace: phases runs, the others say what to enable
    for name in ("postcopy_faults", "balloon", "policies", "conflicts_map"):
        assert re.search(rf"{name} : analysis '{name}' needs .*-trace enable=", skipped)
    assert "phases :" not in skipped
    assert len(page.images()) == 1  # the timeline, from the phases


def test_untrusted_strings_in_analysis_tables_are_escaped(tmp_path):
    t = tracetool.load(DST_EXCERPT)
    af.inject(t, af.all_results(untrusted=EVIL))
    page = Page(render(t))
    assert "script" not in {tag for tag, _ in page.tags}
    assert EVIL in " ".join(page.text)


def test_report_command(monkeypatch, capsys, tmp_path):
    out = tmp_path / "r.html"
    code, _, err = run(monkeypatch, capsys, "report", DST_EXCERPT, "-o", out)
    assert code == 0, err
    assert Page(out.read_text()).ids() == [s.value for s in Section if s is not Section.QMP]
    code, _, err = run(monkeypatch, capsys, "report", DST_EXCERPT, "-o", tmp_path / "no" / "r.html")
    assert code == 2 and err.count("\n") == 1 and "r.html" in err


def test_trace_and_result_html(evil_trace):
    page = Page(evil_trace._repr_html_())
    text = " ".join(page.text)
    assert "4 lines = 1 events + 1 other + 2 rejected" in text
    assert "migrate_set_state" in text and "needs" in text and "runnable" in text
    res = af.conflicts_map(untrusted=EVIL)
    page = Page(res._repr_html_())
    assert "script" not in {tag for tag, _ in page.tags}
    assert EVIL in " ".join(page.text)
    cells = [t for t, _ in page.tags if t == "td"]
    assert cells  # the head of the main table is there


def _rows(html_text: str, section: str, caption: str) -> list[list[str]]:
    """Cell texts of the table captioned ``caption`` (start) in ``section``."""
    import html

    body = html_text.split(f'<section id="{section}">', 1)[1].split("</section>", 1)[0]
    table = body.split(f"<caption>{caption}", 1)[1].split("</table>", 1)[0]
    return [
        [html.unescape(c) for c in re.findall(r"<td>(.*?)</td>", tr)]
        for tr in re.findall(r"<tr>(.*?)</tr>", table)
        if "<td>" in tr
    ]


def test_report_shows_every_state_change_and_hex_offsets():
    text = render(tracetool.load(DST_EXCERPT))
    with gzip.open(DST_EXCERPT, "rt") as f:
        raw = re.findall(r"migrate_set_state new state (\S+)", f.read())
    states = [r[2] for r in _rows(text, "phases", "phases")]
    assert [s for s in states if not s.endswith(")")] == raw  # the final state included
    assert raw[-1] == "completed"
    offsets = [r[2] for r in _rows(text, "postcopy-faults", "requests")]
    assert offsets and all(re.fullmatch(r"0x[0-9a-f]+", o) for o in offsets)
