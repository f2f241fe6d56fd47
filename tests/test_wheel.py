"""The wheel holds the library alone, and the library trains every model on its own.

The wheel is built from a copy of the package's sources (so the checkout is left as it is),
installed with no dependencies into a fresh virtual environment whose only other path is the
test environment's site-packages (the dependencies, without the checkout's editable install),
and the README's library example runs there from a directory outside the checkout.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def readme_library_example() -> str:
    """The Python block under the README's "The library on its own" heading."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## The library on its own", 1)
    assert len(section) == 2, "README.md has no 'The library on its own' section"
    match = re.search(r"```python\n(.*?)```", section[1], re.S)
    assert match, "the README's library section has no python block"
    return match.group(1)


@pytest.fixture(scope="module")
def wheel_env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "genjax", src / "genjax", ignore=shutil.ignore_patterns("__pycache__"))
    dist = tmp / "dist"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    build = ["wheel", str(src), "--no-deps", "--no-build-isolation", "-q", "-w", str(dist)]
    subprocess.run([*pip, *build], check=True, cwd=tmp)
    (wheel,) = dist.glob("*.whl")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run(
        [*pip, "--python", str(python), "install", "--no-deps", "-q", str(wheel)], check=True
    )
    # The dependencies come from this environment's site-packages, added as a plain path:
    # its .pth files (the checkout's editable install among them) are not processed there.
    site = Path(
        subprocess.check_output(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            text=True,
        ).strip()
    )
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    work = tmp / "elsewhere"
    work.mkdir()
    return wheel, venv, python, work


def test_the_wheel_holds_genjax_and_nothing_else(wheel_env):
    wheel, *_ = wheel_env
    with zipfile.ZipFile(wheel) as z:
        top = {name.split("/", 1)[0] for name in z.namelist()}
    dist_info = {t for t in top if t.endswith(".dist-info")}
    assert len(dist_info) == 1 and top - dist_info == {"genjax"}, sorted(top)
    with zipfile.ZipFile(wheel) as z:
        entry_points = z.read(f"{dist_info.pop()}/entry_points.txt").decode()
    assert "genjax-train = genjax.cli:main" in entry_points


def test_the_readme_trains_all_five_models_from_the_wheel_alone(wheel_env):
    _, venv, python, work = wheel_env
    script = work / "library_example.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import importlib.util, sys
            import genjax
            assert genjax.__file__.startswith({str(venv)!r}), genjax.__file__
            for name in ("experiments", "benchmarks"):
                assert importlib.util.find_spec(name) is None, name
            """
        )
        + readme_library_example()
    )
    out = subprocess.run(
        [str(python), str(script)], cwd=work, capture_output=True, text=True, timeout=900
    )
    assert out.returncode == 0, out.stdout + out.stderr
    # The example prints one line per model: its name and the shape of its samples.
    printed = dict(line.split(None, 1) for line in out.stdout.splitlines() if line.strip())
    assert set(printed) == {"ppca", "vae", "gan", "vqvae", "cyclevae"}, out.stdout


def test_the_installed_command_runs_outside_the_checkout(wheel_env):
    _, venv, _, work = wheel_env
    command = venv / "bin" / "genjax-train"
    out = subprocess.run([str(command), "--help"], cwd=work, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "any dataset genjax.data reads" in out.stdout
    run_dir = work / "run"
    small = ["--set", "train.steps=20", "--set", "train.log_every=10", "--quiet"]
    out = subprocess.run(
        [str(command), "--model", "ppca", "--dataset", "digits", "--workdir", str(run_dir), *small],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    assert (run_dir / "summary.json").is_file() and (run_dir / "checkpoints").is_dir()
