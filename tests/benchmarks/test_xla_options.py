"""benchmarks.xla_options: settings compared per program, in a fresh interpreter (the module
takes genjax's process flag out of ``XLA_FLAGS`` before JAX starts)."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run(args, **env):
    base = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "GENJAX_XLA_DEFAULTS")}
    return subprocess.run(
        [sys.executable, "-m", "benchmarks.xla_options", *args],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
    )


def test_one_row_per_model_and_batch_with_ratios_to_the_first_setting(tmp_path):
    out = tmp_path / "options.json"
    proc = _run(
        ["--models", "ppca", "--batch", "8", "16", "--rounds", "2", "--target-s", "0.01",
         "--settings", "xla_default", "individual_dot", "--out", str(out)]
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["settings"] == {
        "xla_default": {},
        "individual_dot": {
            "xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"
        },
    }
    assert [(r["model"], r["batch"]) for r in result["rows"]] == [("ppca", 8), ("ppca", 16)]
    for row in result["rows"]:
        base = row["xla_default"]["examples_per_s"]
        mine = row["individual_dot"]["examples_per_s"]
        assert 0 < base["min"] <= base["median"] <= base["max"]
        assert row["xla_default"]["over_xla_default"] == 1.0
        assert abs(row["individual_dot"]["over_xla_default"] * base["median"] - mine["median"]) < (
            1e-6 * mine["median"]
        )
    assert result["markdown"].count("| ppca |") == 2
    table = (tmp_path / "options.md").read_text()
    assert table.startswith("Measured ") and result["markdown"] in table


def test_a_flag_that_sets_the_compared_field_is_one_clear_error():
    proc = _run(["--models", "ppca"], XLA_FLAGS="--xla_cpu_experimental_ynn_fusion_type=dot")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "benchmarks.xla_options: XLA_FLAGS sets --xla_cpu_experimental_ynn_fusion_type=dot; "
        "unset it to compare the settings per program"
    ]
