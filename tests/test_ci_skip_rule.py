"""The CI rule of tests/conftest.py: with CI set, a skip fails the run unless it is a platform
skip. Each case runs an inner pytest (a subprocess, with this suite's conftest) on a small
test module, plainly and under pytest-xdist as scripts/test.sh runs it."""

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

CONFTEST = (Path(__file__).parent / "conftest.py").read_text()

#: The start of both test modules with per-test skips: a pass and a platform skip.
PASS_AND_OTHER_OS = """
import pytest

def test_passes():
    pass

@pytest.mark.skipif(True, reason="platform: needs another operating system")
def test_other_os():
    pass
"""

PER_TEST = f"""{PASS_AND_OTHER_OS}
@pytest.mark.skipif(True, reason="a program is not installed")
def test_missing_program():
    pass

def test_missing_package():
    pytest.importorskip("no_such_module_for_the_ci_rule")

@pytest.mark.skipif("sys.platform == sys.platform")
def test_os_condition():
    pass

@pytest.mark.xfail(reason="a known bug", strict=True)
def test_known_bug():
    assert False
"""

MODULE_SKIP = """
import pytest

pytest.importorskip("no_such_module_for_the_ci_rule")

def test_never_collected():
    pass
"""

PLATFORM_ONLY = f"""{PASS_AND_OTHER_OS}
def test_other_os_at_run_time():
    pytest.skip("platform: needs another operating system")
"""

XDIST = ["-n", "2", "--dist", "loadgroup"]


def _run(pytester, monkeypatch, ci, files, *args):
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(**files)
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rs", *args)


@pytest.mark.slow
@pytest.mark.parametrize("xdist", [False, True], ids=["plain", "xdist"])
def test_in_ci_a_skip_fails_unless_it_names_a_platform(pytester, monkeypatch, xdist):
    files = {"test_per_test": PER_TEST, "test_module_skip": MODULE_SKIP}
    result = _run(pytester, monkeypatch, "true", files, *(XDIST if xdist else []))
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    # The mark's skip fails in setup (an error), importorskip's in the call; the platform
    # skips, the module skipped at collection (counted, then failed below) and the xfail stay.
    result.assert_outcomes(passed=1, failed=1, errors=1, skipped=3, xfailed=1)
    out = result.stdout.str()
    assert "test_per_test.py::test_missing_program was skipped (a program is not installed)" in out
    assert "test_per_test.py::test_missing_package was skipped (could not import" in out
    assert "skips that CI forbids" in out
    assert "test_module_skip.py was skipped (could not import" in out
    assert "test_other_os was skipped" not in out and "test_os_condition was skipped" not in out


@pytest.mark.parametrize("ci", [None, "0", "false"])
def test_outside_ci_skips_are_skips(pytester, monkeypatch, ci):
    files = {"test_per_test": PER_TEST, "test_module_skip": MODULE_SKIP}
    result = _run(pytester, monkeypatch, ci, files)
    assert result.ret == pytest.ExitCode.OK
    result.assert_outcomes(passed=1, skipped=5, xfailed=1)
    assert "skips that CI forbids" not in result.stdout.str()


@pytest.mark.slow
@pytest.mark.parametrize("xdist", [False, True], ids=["plain", "xdist"])
def test_in_ci_platform_skips_pass(pytester, monkeypatch, xdist):
    result = _run(pytester, monkeypatch, "1", {"test_platform": PLATFORM_ONLY},
                  *(XDIST if xdist else []))  # fmt: skip
    assert result.ret == pytest.ExitCode.OK
    result.assert_outcomes(passed=1, skipped=2)
