"""The experiment command: bad input is one line and exit code 2; runs resume and load back."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from experiments.train import main

SMALL = [
    "--set", "train.steps=300",
    "--set", "train.checkpoint_every=100",
    "--set", "train.log_every=50",
    "--set", "train.fuse_steps=50",
    "--set", "eval.em_steps=20",
    "--set", "eval.select_q=2,5",
]  # fmt: skip


def _cli(argv, capsys):
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.err


@pytest.fixture
def workdir(tmp_path):
    return str(tmp_path / "run")


def _existing_run(tmp_path, **changes):
    d = tmp_path / "existing"
    d.mkdir()
    # The sections of a run's config.json (their values do not matter here).
    cfg = {"model": "ppca", "dataset": "digits", "model_config": {}, "train": {},
           "optimizer": {}, "data": {}}  # fmt: skip
    cfg.update(changes)
    (d / "config.json").write_text(json.dumps(cfg))
    return str(d)


BASE = ["--model", "ppca", "--dataset", "digits"]
GAN = ["--model", "gan", "--dataset", "digits"]


def _cases(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("mine")
    empty_data = tmp_path / "no-data"
    empty_data.mkdir()
    w = str(tmp_path / "w")
    # (argv, a fragment the one-line message must contain)
    return [
        ([], "required: --model"),
        (["--model", "ppca", "--dataset", "digits"], "--workdir"),
        (["--model", "vea", "--dataset", "digits", "--workdir", w], "unknown model 'vea'"),
        (["--model", "ppca", "--dataset", "mnits", "--workdir", w], "unknown dataset 'mnits'"),
        ([*BASE, "--workdir", w, "--set", "train.stpes=5"], "did you mean 'train.steps'"),
        ([*BASE, "--workdir", w, "--set", "steps=5"], "did you mean 'train.steps'"),
        ([*BASE, "--workdir", w, "--set", "model.latnt_dim=3"], "did you mean 'model.latent_dim'"),
        ([*BASE, "--workdir", w, "--set", "train.steps"], "expects key=value"),
        ([*BASE, "--workdir", w, "--set", "train.steps=abc"], "train.steps expects an integer"),
        ([*BASE, "--workdir", w, "--set", "train.steps=0"], "train.steps must be"),
        ([*BASE, "--workdir", w, "--set", "train.eval_every=-1"], "train.eval_every"),
        ([*BASE, "--workdir", w, "--set", "train.strategy=ddp"], "strategy must be one of"),
        ([*BASE, "--workdir", w, "--set", "train.progress=maybe"], "expects true or false"),
        ([*BASE, "--workdir", w, "--set", "optimizer.learning_rate=-1"], "learning_rate"),
        ([*BASE, "--workdir", w, "--set", "optimizer.name=lion"], "optimizer.name"),
        ([*BASE, "--workdir", w, "--set", "data.binarize=maybe"], "data.binarize"),
        ([*BASE, "--workdir", w, "--set", "data.threshold=2"], "data.threshold"),
        ([*BASE, "--workdir", w, "--set", "model.latent_dim=0"], "model.latent_dim"),
        ([*BASE, "--workdir", w, "--set", "model.latent_dim=64"], "latent_dim=64"),
        ([*BASE, "--workdir", w, "--set", "train.batch_size=5000"], "larger than the training"),
        ([*BASE, "--workdir", w, "--set", "data.flatten=false"], "data.flatten=true"),
        ([*BASE, "--workdir", str(blocker / "sub")], "not writable"),
        ([*BASE, "--workdir", str(junk)], "holds no genjax run"),
        (
            [*BASE, "--workdir", _existing_run(tmp_path, model="vae")],
            "holds a run of model 'vae'",
        ),
        (
            [
                "--model",
                "ppca",
                "--dataset",
                "mnist",
                "--workdir",
                w,
                "--set",
                f"data.data_dir={empty_data}",
            ],
            "tfds build mnist",
        ),
        ([*BASE, "--workdir", w, "--bogus"], "unrecognized arguments: --bogus"),
        ([*BASE, "--workdir", ""], "--workdir is empty"),
        ([*BASE, "--workdir", "  "], "--workdir is empty"),
        (
            [*BASE, "--workdir", w, "--set", "train.steps=99999999999999999999"],
            "train.steps must be an integer in [1, 2147483647]",
        ),
        (
            [*BASE, "--workdir", w, "--set", "train.best_metric=elbo"],
            "train.best_metric='elbo' is not one of the ppca model's evaluation metrics: "
            "test_log_likelihood",
        ),
        # The GAN's own checks (latent size, learning rates, shapes the DCGAN can take).
        (
            [*GAN, "--workdir", w, "--set", "model.latent_dim=0"],
            "model.latent_dim must be an int >= 1",
        ),
        ([*GAN, "--workdir", w, "--set", "model.d_learning_rate=-0.1"], "d_learning_rate"),
        ([*GAN, "--workdir", w, "--set", "model.g_learning_rate=0"], "g_learning_rate"),
        ([*GAN, "--workdir", w, "--set", "model.architecture=dcgan"], "data.flatten=false"),
        (
            [
                *GAN,
                "--workdir",
                w,
                "--set",
                "model.architecture=dcgan",
                "--set",
                "data.flatten=false",
                "--set",
                "model.generator_features=8,8,8,8",
            ],
            "model.generator_features (dcgan)",
        ),
        ([*GAN, "--workdir", w, "--set", "model.ema_decay=1"], "model.ema_decay"),
    ]


def test_malformed_command_lines_exit_2_with_one_clear_line(tmp_path, capsys):
    cases = _cases(tmp_path)
    assert len(cases) >= 20
    for argv, fragment in cases:
        code, err = _cli(argv, capsys)
        lines = [line for line in err.splitlines() if line.strip()]
        assert code == 2, (argv, code, err)
        assert len(lines) == 1, (argv, err)
        assert "Traceback" not in err
        assert fragment in lines[0], (argv, lines[0])
        assert lines[0].startswith("genjax-train: error:"), lines[0]


def test_same_model_other_config_is_refused_then_overwritten(tmp_path, capsys):
    work = str(tmp_path / "run")
    assert _cli([*BASE, "--workdir", work, *SMALL, "--set", "train.steps=50",
                 "--set", "train.checkpoint_every=50", "--quiet"], capsys)[0] == 0  # fmt: skip
    code, err = _cli([*BASE, "--workdir", work, *SMALL, "--quiet"], capsys)
    assert code == 2 and "train.steps: 50 -> 300" in err
    code, err = _cli([*BASE, "--workdir", work, *SMALL, "--quiet", "--overwrite",
                      "--set", "train.steps=100"], capsys)  # fmt: skip
    assert code == 0, err
    assert json.loads((Path(work) / "summary.json").read_text())["steps"] == 100


def test_help_lists_models_datasets_and_options(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for fragment in ("ppca", "datasets: digits, mnist", "train.steps = 1000", "optimizer.name",
                     "data.binarize", "model.latent_dim", "total number of steps"):  # fmt: skip
        assert fragment in out, fragment


def _command(workdir):
    return [sys.executable, "-m", "experiments.train", *BASE, "--workdir", str(workdir), *SMALL]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("cli") / "ref"
    out = subprocess.run(_command(work), capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "test_log_likelihood" in out.stdout  # the one-screen summary
    return work


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_summary(finished_run, tmp_path):
    work = tmp_path / "killed"
    proc = subprocess.Popen(_command(work), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # Kill it once a checkpoint beyond the first exists and before it can finish.
    deadline = time.time() + 300
    ckpts = work / "checkpoints"
    while time.time() < deadline and proc.poll() is None:
        if ckpts.exists() and any(p.name == "100" for p in ckpts.iterdir()):
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (work / "summary.json").exists()
    again = subprocess.run(_command(work), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    a = json.loads((finished_run / "summary.json").read_text())
    b = json.loads((work / "summary.json").read_text())
    assert a["steps"] == b["steps"] == 300
    assert a["metrics"] == b["metrics"]
    # A finished run is not retrained: the same command returns at once.
    t0 = time.time()
    third = subprocess.run(_command(work), capture_output=True, text=True, timeout=600)
    assert third.returncode == 0 and "not retraining" in third.stderr
    assert time.time() - t0 < 60


def test_load_run_reproduces_the_reported_metric(finished_run):
    import jax
    import jax.numpy as jnp
    from sklearn.datasets import load_digits

    import genjax
    from genjax import losses
    from genjax.data import load

    run = genjax.load_run(finished_run)
    assert run.step == 300 and run.config.model == "ppca"
    p = run.ppca_params()
    # The test split, scaled by hand from scikit-learn's raw digits (an independent path).
    test = load("digits", "test")
    raw = load_digits()
    rows = [np.flatnonzero((raw.images == img[..., 0]).all(axis=(1, 2)))[0]
            for img in test.features["image"]]  # fmt: skip
    x = jnp.asarray(raw.data[rows] / 16.0, jnp.float32)
    ll = float(jnp.mean(losses.ppca_log_likelihood(x, p.W, p.mu, p.sigma2)))
    reported = run.summary["metrics"]["test_log_likelihood"]
    assert ll == pytest.approx(reported, rel=1e-6)
    samples = run.sample(jax.random.PRNGKey(0), 5)
    assert samples.shape == (5, 64)
    assert run.reconstruct(x[:3]).shape == (3, 64)
    assert run.encode(x[:3]).shape == (3, run.config.model_config.latent_dim)
    with pytest.raises(AttributeError, match="has no 'convert'"):
        run.convert(x[:3], 0, 1)


def _digest(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_a_directory_that_is_not_a_run_is_never_emptied(tmp_path, capsys, monkeypatch):
    # A config.json that is not a run's, beside the user's file: refused with or without
    # --overwrite, and also when it is the current directory.
    d = tmp_path / "d"
    d.mkdir()
    (d / "config.json").write_text("{}")
    (d / "important.txt").write_text("x")
    before = _digest(d)
    for extra in ([], ["--overwrite"]):
        code, err = _cli([*BASE, "--workdir", str(d), *SMALL, "--quiet", *extra], capsys)
        assert code == 2 and "is not the configuration of a genjax run" in err, err
    monkeypatch.chdir(d)
    code, err = _cli([*BASE, "--workdir", ".", *SMALL, "--quiet", "--overwrite"], capsys)
    assert code == 2, err
    assert _digest(d) == before
    # No config.json at all: refused even with --overwrite (nothing is written into it).
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("mine")
    code, err = _cli([*BASE, "--workdir", str(junk), *SMALL, "--quiet", "--overwrite"], capsys)
    assert code == 2 and "holds no genjax run (notes.txt)" in err, err
    assert sorted(p.name for p in junk.iterdir()) == ["notes.txt"]


def test_overwrite_removes_only_what_a_run_writes(tmp_path, capsys):
    work = tmp_path / "run"
    short = [*SMALL, "--set", "train.steps=50", "--set", "train.checkpoint_every=50", "--quiet"]
    assert _cli([*BASE, "--workdir", str(work), *short], capsys)[0] == 0
    (work / "my_notes.txt").write_text("the user's")
    before = _digest(work)
    code, err = _cli([*BASE, "--workdir", str(work), *SMALL, "--quiet", "--overwrite"], capsys)
    assert code == 2 and "my_notes.txt, which no run writes" in err, err
    assert _digest(work) == before  # refused before a file was touched
    (work / "my_notes.txt").unlink()
    code, err = _cli([*BASE, "--workdir", str(work), *SMALL, "--quiet", "--overwrite"], capsys)
    assert code == 0, err
    assert json.loads((work / "summary.json").read_text())["steps"] == 300


def test_a_finished_run_with_a_damaged_final_checkpoint_is_finished_again(tmp_path, capsys):
    """The summary alone does not make a run finished: its final checkpoint must read back.
    Truncated, it is trained again from the one before, to the same parameters and metrics."""
    import genjax

    work = tmp_path / "run"
    argv = [*BASE, "--workdir", str(work), *SMALL, "--quiet"]
    assert _cli(argv, capsys)[0] == 0
    first = json.loads((work / "summary.json").read_text())
    w_first = np.asarray(genjax.load_run(work).params["model"]["params"]["W"])
    for f in (work / "checkpoints" / "300").rglob("*"):
        if f.is_file() and f.parent.name == "d":
            f.write_bytes(f.read_bytes()[:10])
    with pytest.warns(RuntimeWarning, match="describes step 300, but the newest readable"):
        stale = genjax.load_run(work)
    assert stale.step == 200 and stale.summary is None
    code, err = _cli(argv, capsys)
    assert code == 0, err
    assert "final checkpoint (step 300) is missing or unreadable" in err
    assert "training again from step 200" in err
    assert "not retraining" not in err
    assert json.loads((work / "summary.json").read_text())["metrics"] == first["metrics"]
    again = genjax.load_run(work)
    assert again.step == 300
    np.testing.assert_array_equal(np.asarray(again.params["model"]["params"]["W"]), w_first)
    code, err = _cli([a for a in argv if a != "--quiet"], capsys)
    assert code == 0 and err.count("not retraining") == 1, err


def test_load_run_errors_name_the_file_and_the_problem(finished_run, tmp_path):
    import shutil

    import genjax
    from genjax.runs import RunError

    with pytest.raises(FileNotFoundError, match="does not exist"):
        genjax.load_run(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunError, match=r"config.json is missing"):
        genjax.load_run(tmp_path / "empty")

    def edited(name, edit):
        d = tmp_path / name
        shutil.copytree(finished_run, d)
        cfg = json.loads((d / "config.json").read_text())
        text = edit(cfg)
        (d / "config.json").write_text(text if isinstance(text, str) else json.dumps(cfg))
        return d

    cases = [
        (edited("bad_json", lambda c: '{"model": '), r"config.json is not valid JSON"),
        (edited("unknown", lambda c: c.update(model="diffusion")), "names model 'diffusion'"),
        (
            edited("extra", lambda c: c["model_config"].update(depth=3)),
            r"section 'model_config' has key 'depth', which PPCAConfig does not take",
        ),
        (
            edited("other_model", lambda c: c["model_config"].update(latent_dim=3)),
            r"holds a different model: params/model/params/W is float32\[64,\d+\] in the "
            r"checkpoint and float32\[64,3\] in this model.*edited after",
        ),
    ]
    for d, match in cases:
        with pytest.raises(RunError, match=match):
            genjax.load_run(d)
    no_info = edited("no_info", lambda c: None)
    (no_info / "data_info.json").unlink()
    with pytest.raises(RunError, match=r"data_info\.json is missing"):
        genjax.load_run(no_info)


def test_load_run_is_quiet(finished_run, caplog, recwarn):
    import logging

    import genjax

    with caplog.at_level(logging.DEBUG - 1):
        genjax.load_run(finished_run)
    noisy = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert noisy == [], noisy
    assert [str(w.message) for w in recwarn] == []


def test_a_run_saved_before_the_eval_section_loads_and_is_recognised(finished_run, tmp_path):
    """config.json of an earlier version kept the evaluation settings among the model's keys
    and had no "eval" section: the command still sees the same run (finished, not
    retrained, nothing removed) and load_run reads it."""
    import shutil

    import genjax

    work = tmp_path / "old"
    shutil.copytree(finished_run, work)
    cfg = json.loads((work / "config.json").read_text())
    old = dict(cfg)
    old["model_config"] = {**cfg["model_config"], **old.pop("eval")}
    assert set(old["model_config"]) > set(cfg["model_config"])  # eval keys went back in
    (work / "config.json").write_text(json.dumps(old))
    before = sorted(p.relative_to(work) for p in work.rglob("*"))
    run = genjax.load_run(work)
    assert (
        run.step == 300
        and run.config.model_config == genjax.load_run(finished_run).config.model_config
    )
    argv = [*BASE, "--workdir", str(work), *SMALL]
    code = main(argv)
    assert code == 0
    assert before == sorted(p.relative_to(work) for p in work.rglob("*"))
    assert json.loads((work / "config.json").read_text()) == cfg  # rewritten in today's layout
