"""The report page: self-contained, every image decodes (and loads in Chromium when it is
installed), every number comes from the run's summary.json."""

import base64
import io
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image

from experiments import report, train
from experiments.speech import audio
from genjax import viz

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


def _chromium(tmp_path, page: str, script: str) -> subprocess.CompletedProcess:
    """Loads ``page`` in headless Chromium, which runs ``script`` after load; the script
    writes what it found into the DOM, which --dump-dom prints."""
    probe = tmp_path / "probe.html"
    hook = f"<script>window.onload=()=>{{{script}}}</script></body>"
    probe.write_text(page.replace("</body>", hook))
    return subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
         "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Chromium is not installed")
def test_report_images_load_in_headless_chromium(demo_root, tmp_path):
    page = report.write_report(demo_root)
    # Chromium runs the page's own script after load and writes the count of images that
    # decoded into the DOM, which --dump-dom prints.
    out = _chromium(
        tmp_path,
        page.read_text(),
        "const i=[...document.images];document.body.dataset.ok="
        "i.filter(x=>x.complete&&x.naturalWidth>0).length+'/'+i.length;",
    )
    match = re.search(r'data-ok="(\d+)/(\d+)"', out.stdout)
    assert match, out.stderr[-2000:]
    loaded, total = map(int, match.groups())
    assert total >= 5 and loaded == total


# --------------------------------------------------------------------------------------------
# The order of the sections, the speech run's audio players, titles that fit their figures
# --------------------------------------------------------------------------------------------

_RATE = 16000
_CLIP_SECONDS = (0.5, 0.75, 1.0)


def _speech_run(root):
    """A run directory as ``experiments.speech.run`` writes it (no config.json; the summary
    lists the audio), with short tones for clips."""
    workdir = root / "cyclevae-speech"
    clips = []
    for i, seconds in enumerate(_CLIP_SECONDS):
        t = np.arange(round(seconds * _RATE)) / _RATE
        wav = audio.write_wav(workdir / "audio" / f"clip{i}.wav", np.sin(2e3 * t), _RATE)
        clips.append([f"clip {i}", str(wav.relative_to(workdir))])
    figure = viz.spectrograms([np.zeros((50, 4))] * 3, workdir / "figures" / "pair_0-1.png")
    viz.curves(
        [{"step": 1, "split": "train", "elbo": 0.0}, {"step": 2, "split": "train", "elbo": 1.0}],
        ["elbo"],
        workdir / "figures" / "training_curve.png",
    )
    summary = {
        "model": "cyclevae", "dataset": "espeak-frames", "steps": 10, "wall_s": 1.0,
        "headline": [["MCD", "mcd_db_cycle", "mcd_db_cycle0", "cycle weight 0"]],
        "metrics": {"mcd_db_cycle": 3.25, "mcd_db_cycle0": 3.5},
        "audio": [{"title": "a -> b", "figure": str(figure.relative_to(workdir)), "clips": clips}],
    }  # fmt: skip
    (workdir / "summary.json").write_text(json.dumps(summary))
    return workdir


def test_sections_follow_the_model_families_digits_before_speech(tmp_path):
    for name, model in (("vqvae", "vqvae"), ("cyclevae", "cyclevae"), ("gan-digits", "gan"),
                        ("vae", "vae"), ("ppca", "ppca")):  # fmt: skip
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text(json.dumps({"model": model}))
        summary = {"model": model, "dataset": "digits", "steps": 1, "wall_s": 0.0, "metrics": {}}
        (tmp_path / name / "summary.json").write_text(json.dumps(summary))
    _speech_run(tmp_path)
    order = ["ppca", "vae", "gan-digits", "vqvae", "cyclevae", "cyclevae-speech"]
    assert [w.name for w, _, _ in report.load_runs(tmp_path)] == order
    page = report.render_html(tmp_path)
    assert re.findall(r"<h2 id='([^']+)'>", page) == order
    # The speech run's headline comes from its summary, into both the page and report.md.
    assert "<td>MCD</td><td>3.25</td><td>3.5</td>" in page
    assert "| cyclevae-speech | cyclevae | espeak-frames | MCD | 3.25 | 3.5 |" in (
        report.render_markdown(tmp_path)
    )


class _Audio(HTMLParser):
    def __init__(self):
        super().__init__()
        self.audio = []

    def handle_starttag(self, tag, attrs):
        if tag == "audio":
            self.audio.append(dict(attrs))


def test_speech_audio_players_sit_beside_their_spectrogram_and_load_in_chromium(tmp_path):
    workdir = _speech_run(tmp_path)
    page = report.write_report(tmp_path).read_text()
    parsed = _Audio()
    parsed.feed(page)
    assert len(parsed.audio) == len(_CLIP_SECONDS)
    for attrs, (i, _) in zip(parsed.audio, enumerate(_CLIP_SECONDS), strict=True):
        assert "controls" in attrs and attrs["title"] == f"clip {i}"
        data = base64.b64decode(attrs["src"].removeprefix("data:audio/wav;base64,"))
        assert data == (workdir / "audio" / f"clip{i}.wav").read_bytes()
    # The pair's figure is shown once, beside the players, not again among the figures.
    assert page.count("<img") == 2 and page.index("class='pair'") < page.index("<audio")
    if shutil.which("chromium") is None:
        pytest.skip("Chromium is not installed")
    out = _chromium(
        tmp_path,
        page,
        "const a=[...document.querySelectorAll('audio')];"
        "Promise.all(a.map(x=>x.readyState>=1?0:new Promise(r=>{x.onloadedmetadata=r;"
        "x.onerror=r;}))).then(()=>{document.body.dataset.ok=a.map(x=>x.readyState+':'+"
        "x.duration.toFixed(3)).join(',');});",
    )
    match = re.search(r'data-ok="([^"]*)"', out.stdout)
    assert match, out.stderr[-2000:]
    states = [item.split(":") for item in match.group(1).split(",")]
    assert len(states) == len(_CLIP_SECONDS)
    for (ready, duration), seconds in zip(states, _CLIP_SECONDS, strict=True):
        assert int(ready) >= 1  # HAVE_METADATA: Chromium parsed the WAV file
        assert float(duration) == pytest.approx(seconds, abs=1e-3)


def test_a_long_title_wraps_inside_its_figure(monkeypatch, tmp_path):
    # The GAN's class histogram: a long title over a narrow bar chart.
    figures = []
    monkeypatch.setattr(viz.plt, "close", figures.append)
    title = "class of 10000 samples under the evaluation classifier (uniform: 0.10)"
    viz.bars({str(c): 0.1 for c in range(10)}, tmp_path / "h.png", title=title)
    (fig,) = figures
    renderer = fig.canvas.get_renderer()
    box = fig.bbox
    text = fig.axes[0].title
    assert text.get_text() == title
    extent = text.get_window_extent(renderer)
    assert box.x0 <= extent.x0 and extent.x1 <= box.x1 and extent.y1 <= box.y1, extent
