"""benchmarks.bench_transpose: every way computes the NHWC -> CHWN relayout of relu(x + b)."""

import numpy as np
import pytest

from benchmarks import bench_transpose


def test_every_way_is_the_relayout_of_the_relu():
    n, h, w, c = 32, 3, 2, 16
    x = np.random.default_rng(0).normal(size=(n, h, w, c)).astype(np.float32)
    b = np.linspace(-0.5, 0.5, c, dtype=np.float32)
    expected = np.maximum(x + b, 0.0)
    for name, way in bench_transpose._ways(n, h, w, c).items():
        got = np.asarray(way(x, b))
        want = expected if name == "write" else expected.transpose(3, 1, 2, 0)
        np.testing.assert_array_equal(got, want, err_msg=name)


def test_report_shape_and_bad_shapes():
    result = bench_transpose.main(
        ["--shape", "16", "4", "4", "8", "--steps", "1", "--repeats", "1"]
    )
    rows = result["results"]
    assert set(rows) == {"write", "fused", "separate", "tiled", "staged"}
    assert rows["write"]["over_write_ms"] == 0.0
    assert all(r["min_ms"] <= r["median_ms"] <= r["max_ms"] for r in rows.values())
    with pytest.raises(SystemExit, match="N % 16 == 0 and C % 8 == 0"):
        bench_transpose.main(["--shape", "10", "4", "4", "8"])
