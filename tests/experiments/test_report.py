"""The report page: self-contained, every image decodes (and loads in Chromium when it is
installed), every number comes from the run's summary.json."""

import base64
import io
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser

import pytest
from PIL import Image

from experiments import report, train

TINY = ["--set", "train.steps=40", "--set", "train.fuse_steps=20", "--set", "train.log_every=20",
        "--set", "train.checkpoint_every=40", "--set", "eval.em_steps=5",
        "--set", "eval.select_q=2,4", "--set", "model.latent_dim=2", "--quiet"]  # fmt: skip


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.cells, self.links = [], [], []
        self._in_td = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.images.append(a.get("src", ""))
        if tag in ("link", "script") and (a.get("href") or a.get("src")):
            self.links.append(a.get("href") or a.get("src"))
        self._in_td = tag == "td"

    def handle_endtag(self, tag):
        if tag == "td":
            self._in_td = False

    def handle_data(self, data):
        if self._in_td:
            self.cells.append(data.strip())


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    code = train.main(["--model", "ppca", "--dataset", "digits", "--workdir", str(root / "ppca"),
                       *TINY])  # fmt: skip
    assert code == 0
    return root


def test_report_is_self_contained_and_every_image_decodes(demo_root):
    page = report.write_report(demo_root)
    parsed = _Collect()
    parsed.feed(page.read_text())
    assert parsed.links == []  # no external resources
    figures = list((demo_root / "ppca" / "figures").glob("*.png"))
    assert len(parsed.images) == len(figures) >= 5
    for src in parsed.images:
        assert src.startswith("data:image/png;base64,")
        img = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
        img.load()
        assert img.width > 50 and img.height > 50


def test_every_number_in_the_report_comes_from_summary_json(demo_root):
    page = report.write_report(demo_root)
    summary = json.loads((demo_root / "ppca" / "summary.json").read_text())
    parsed = _Collect()
    parsed.feed(page.read_text())
    numbers = [c for c in parsed.cells if re.fullmatch(r"-?[\d.]+(e[-+]\d+)?", c)]
    assert numbers
    allowed = {report._fmt(v) for v in summary["metrics"].values()}
    for n in numbers:
        assert n in allowed, n
    md = (demo_root / "report.md").read_text()
    assert report._fmt(summary["metrics"]["closed_form_test_log_likelihood"]) in md


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Chromium is not installed")
def test_report_images_load_in_headless_chromium(demo_root, tmp_path):
    page = report.write_report(demo_root)
    # Chromium runs the page's own script after load and writes the count of images that
    # decoded into the DOM, which --dump-dom prints.
    probe = tmp_path / "probe.html"
    probe.write_text(
        page.read_text().replace(
            "</body>",
            "<script>window.onload=()=>{const i=[...document.images];document.body.dataset.ok="
            "i.filter(x=>x.complete&&x.naturalWidth>0).length+'/'+i.length;}</script></body>",
        )
    )
    out = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
         "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    match = re.search(r'data-ok="(\d+)/(\d+)"', out.stdout)
    assert match, out.stderr[-2000:]
    loaded, total = map(int, match.groups())
    assert total >= 5 and loaded == total
