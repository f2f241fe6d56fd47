"""benchmarks.bench_ppca reports the log-likelihoods beside the timings: its ``N - 1`` fit
against scikit-learn's own ``PCA.score`` (computed in the child process), and the ML fit
against the exact ML - ddof=1 gap (D / 2) (log c + 1 / c - 1), c = N / (N - 1)."""

import math

from benchmarks import bench_ppca


def test_log_likelihoods_match_sklearn_and_the_ddof_identity():
    n, d, q = 40, 20, 3
    result = bench_ppca.main(
        ["--n", str(n), "--d", str(d), "--q", str(q), "--repeats", "1", "--em-steps", "1",
         "--methods", "gram", "svd"]
    )["results"]  # fmt: skip
    for method in ("gram", "svd"):
        row = result[f"closed_form.{method}"]
        c = n / (n - 1)
        gap = (d / 2) * (math.log(c) + 1 / c - 1)
        assert math.isclose(
            row["mean_log_likelihood"] - row["mean_log_likelihood_ddof1"], gap, rel_tol=0.05
        )
    for solver in bench_ppca.SKLEARN_SOLVERS:
        score = result[f"sklearn.{solver}"]["mean_log_likelihood"]
        assert math.isclose(result["closed_form.gram"]["mean_log_likelihood_ddof1"], score,
                            rel_tol=1e-5, abs_tol=1e-4)  # fmt: skip
    assert 0 <= result["log_likelihood_gap_to_sklearn"] < 1e-3
