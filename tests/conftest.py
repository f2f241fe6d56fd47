"""Session-wide settings of the test suite, and the CI rule on skipped tests.

CI forbids skips. When the environment variable ``CI`` is true (``1``, ``true``, ``yes`` or
``on``, any case; CI runs ``.ci/run`` with ``CI=true``), a skipped test is a failure, unless
the skip is a *platform* skip. A skip counts as a platform skip exactly when

* its reason starts with ``platform:`` (for example
  ``@pytest.mark.skipif(sys.platform != "linux", reason="platform: reads /proc")``), or
* it is pytest's own reason for a string condition that tests the operating system:
  ``condition: <expr>`` where ``<expr>`` mentions ``sys.platform``, ``os.name`` or
  ``platform.`` (``@pytest.mark.skipif("sys.platform == 'win32'")``).

Everything else, a missing program, a missing package (``pytest.importorskip``), a plain
``pytest.skip``, is something ``scripts/test.sh`` has to install, so in CI it fails:

* a test skipped in setup, call or teardown is reported as failed there (an ``ERROR`` when
  the skip came from a mark or fixture in setup), with a message that names the test and the
  skip's reason; this happens where the report is made, so under pytest-xdist on the worker,
  before the report travels to the controller;
* a whole module skipped at collection (``pytest.importorskip`` or
  ``pytest.skip(allow_module_level=True)`` at module level) is listed under "skips that CI
  forbids" in the terminal summary and makes the exit status 1 (the rest of the suite still
  runs); under pytest-xdist the controller receives these reports and decides.

Expected failures (``xfail``), which pytest also reports as skipped, are not skips.
Outside CI nothing changes: skips are skips. tests/test_ci_skip_rule.py tests the rule.
"""

import json
import os
import re
import subprocess
import sys
import tempfile

import pytest

# Tests run on the CPU; float64 is enabled per-test where an oracle needs it.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# XLA's CPU eigh/svd/qr call OpenBLAS, whose threads fight XLA's own on a small machine (a
# 784x784 eigh took ~5 s instead of ~0.1 s on 2 cores): one BLAS thread.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
# The suite runs under the XLA:CPU settings the commands use (genjax.xla_defaults), so that a
# numerical difference they make shows here; GENJAX_XLA_DEFAULTS=0 runs it without them.
from genjax import xla_defaults  # imports nothing from JAX

xla_defaults.apply()
# One persistent compilation cache for the whole session, inherited by the subprocesses the
# resume and multi-device tests start: a restarted run loads the executables it compiled
# before (the same binaries, so bitwise-identical numbers) instead of compiling again.
os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR", os.path.join(tempfile.gettempdir(), "genjax-test-jax-cache")
)


# --- CI forbids skips (the rule in this module's docstring) --------------------------------

_PLATFORM_CONDITION = re.compile(r"^condition: .*(\bsys\.platform\b|\bos\.name\b|\bplatform\.)")


def _ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes", "on"}


def _skip_reason(report) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple | list) and len(longrepr) == 3:  # (path, line, reason)
        return str(longrepr[2])
    return str(longrepr)


def _forbidden_skip(report) -> str | None:
    """The reason of a skip that CI forbids, or None (not a skip, an xfail, a platform
    skip, or not in CI)."""
    if not report.skipped or hasattr(report, "wasxfail") or not _ci():
        return None
    reason = _skip_reason(report).strip().removeprefix("Skipped: ")
    if reason.startswith("platform:") or _PLATFORM_CONDITION.search(reason):
        return None
    return reason


def _message(nodeid: str, reason: str) -> str:
    return (
        f"{nodeid} was skipped ({reason}), and skips fail when CI is set: install what it "
        "needs (scripts/test.sh installs the suite's system and Python packages), or, if it "
        "cannot run on this operating system at all, give the skip a reason starting with "
        "'platform:' (tests/conftest.py)"
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    reason = _forbidden_skip(report)
    if reason is not None:
        report.outcome = "failed"
        report.longrepr = _message(report.nodeid, reason)
    return report


_collection_skips: list[str] = []


def pytest_collectreport(report):
    reason = _forbidden_skip(report)
    if reason is not None:
        _collection_skips.append(_message(report.nodeid or "<session>", reason))


def _is_xdist_worker(config) -> bool:
    return hasattr(config, "workerinput")


def pytest_sessionfinish(session, exitstatus):
    passing = session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED)
    if _collection_skips and passing and not _is_xdist_worker(session.config):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if _collection_skips and not _is_xdist_worker(config):
        terminalreporter.section("skips that CI forbids", sep="=", red=True, bold=True)
        for line in _collection_skips:
            terminalreporter.line(line)


# Worker scripts that tests start in subprocesses: not test modules (with --doctest-modules
# pytest would otherwise import them, and they read sys.argv at import).
collect_ignore_glob = ["*_worker.py"]


@pytest.fixture
def run_on_cpu_devices():
    """``run(args, devices) -> dict``: ``python *args`` in a subprocess that sees ``devices``
    simulated CPU devices; asserts it exits 0 and returns the last line of its standard output
    parsed as JSON (the script's result)."""

    def run(args: list[str], devices: int) -> dict:
        env = {
            **os.environ,
            "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
            "JAX_PLATFORMS": "cpu",
        }
        out = subprocess.run(
            [sys.executable, *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert out.returncode == 0, out.stderr[-3000:]
        return json.loads(out.stdout.strip().splitlines()[-1])

    return run


# --- A random FID InceptionV3, as the PyTorch reference builds it --------------------------


def _torch_fidelity_extractor():
    """torch-fidelity's InceptionV3 feature extractor module. The package's ``__init__``
    imports torchvision for its datasets; the extractor needs only torch, so its modules are
    loaded under a bare package."""
    import importlib.util
    import types
    from pathlib import Path

    spec = importlib.util.find_spec("torch_fidelity")
    if spec is None:
        pytest.skip("torch-fidelity is not installed (pip install torch-fidelity==0.3.0)")
    root = Path(spec.submodule_search_locations[0])
    if "torch_fidelity" not in sys.modules:
        package = types.ModuleType("torch_fidelity")
        package.__path__ = [str(root)]
        sys.modules["torch_fidelity"] = package
    from torch_fidelity import feature_extractor_inceptionv3 as fe

    return fe


@pytest.fixture(scope="session")
def inception_reference(tmp_path_factory):
    """torch-fidelity's FID InceptionV3 (pytorch-fid's blocks and parameter names) with
    seeded random weights, batch-normalisation statistics included, in eval mode."""
    torch = pytest.importorskip("torch")
    fe = _torch_fidelity_extractor()

    class Random(fe.FeatureExtractorInceptionV3):
        def load_state_dict(self, state_dict, strict=True):
            if state_dict is not None:  # keep the random initialisation
                return super().load_state_dict(state_dict, strict)

    empty = tmp_path_factory.mktemp("inception") / "none.pth"
    torch.save(None, empty)
    torch.manual_seed(0)
    net = Random("inception-v3-compat", ["2048", "logits"], feature_extractor_weights_path=empty)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                n = module.num_features
                module.weight.copy_(0.5 + torch.rand(n, generator=gen))
                module.bias.copy_(0.2 * torch.randn(n, generator=gen))
                module.running_mean.copy_(0.2 * torch.randn(n, generator=gen))
                module.running_var.copy_(0.5 + torch.rand(n, generator=gen))
    return net.eval()


@pytest.fixture(scope="session")
def inception_weights_file(inception_reference, tmp_path_factory):
    """The random reference's state dict saved as pytorch-fid's weights file would be."""
    import torch

    path = tmp_path_factory.mktemp("inception-weights") / "pt_inception-2015-12-05-6726825d.pth"
    torch.save(inception_reference.state_dict(), path)
    return path
