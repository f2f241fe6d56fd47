"""PPCA fitting speed: the closed-form fit and one EM iteration on synthetic data.

    python -m benchmarks.bench_ppca [--n 100000] [--d 784] [--q 32] [--repeats 3]
        [--methods gram svd] [--out FILE]

Data: ``N x D`` float32, ``x = z A^T + 0.1 eps`` with ``z ~ N(0, I_q)``, ``A ~ N(0, 1)`` of
shape ``D x q`` and ``eps ~ N(0, I_D)`` (a PPCA-distributed set, generated on the device).

Measured, after compilation and one warm-up call, as the median (and min/max) of ``--repeats``
timed calls, each ending with ``block_until_ready``:

* ``closed_form.<method>``: ``ppca.fit_closed_form(x, q, method=...)`` for ``"gram"`` (the
  ``D x D`` covariance eigendecomposition, the default for ``N >= 10 D``) and ``"svd"`` (thin SVD
  of the centred data). The public call, input validation (the NaN/inf scan) included.
* ``em.<covariance>``: one EM iteration, ``(T(steps=k + 1) - T(steps=1)) / k`` with ``T`` the
  time of ``ppca.fit_em``, so the per-call set-up (centring, forming ``S`` for ``"explicit"``)
  cancels. ``"implicit"``: ``S W = Xc^T (Xc W) / N`` (``O(N D q)``); ``"explicit"``: ``S W`` from
  the ``D x D`` covariance formed once (``O(D^2 q)``); ``setup_s`` is ``T(steps=1)``.

``compile_s`` is the time to lower and compile the jitted core for these shapes.

* ``sklearn.<solver>``: scikit-learn's ``PCA(n_components=q, svd_solver=solver).fit`` on the
  same data as a NumPy array (and its ``score``, the mean log-likelihood), for ``"auto"``
  (what a user gets: for data this tall it picks ``"covariance_eigh"``) and
  ``"covariance_eigh"``; run in a child process that has OpenBLAS's threads (one per core)
  so that scikit-learn's BLAS calls are not held to the one thread this process uses.
  ``closed_form_speedup`` is the median time of scikit-learn's ``auto`` fit over that of the
  fastest closed-form method.
* ``mean_log_likelihood`` of each closed-form fit on the data, and ``_ddof1`` for the fit with
  scikit-learn's covariance divisor ``N - 1``; ``log_likelihood_gap_to_sklearn`` is the
  largest difference between that and scikit-learn's ``score`` (nats per example).

Prints one JSON object (and writes it to ``--out`` if given).

Threads: XLA's CPU ``eigh``/``svd``/``qr`` call LAPACK through SciPy's bundled OpenBLAS, whose own
worker threads then compete with XLA's thread pool. On a 2-core machine that made a 784 x 784
``eigh`` take ~5 s instead of ~0.1 s, so this script sets ``OPENBLAS_NUM_THREADS=1`` unless the
caller set it (the value used is recorded in the JSON).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy/scipy/jax load OpenBLAS

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from benchmarks import timing
from genjax.models import ppca


def _synthetic(n: int, d: int, q: int, seed: int = 0) -> jax.Array:
    kz, ka, ke = jax.random.split(jax.random.key(seed), 3)
    a = jax.random.normal(ka, (d, q), jnp.float32)
    z = jax.random.normal(kz, (n, q), jnp.float32)
    eps = jax.random.normal(ke, (n, d), jnp.float32)
    return timing.block(z @ a.T + 0.1 * eps)


def _time(fn: Callable[[], Any], repeats: int) -> list[float]:
    """Seconds of each of ``repeats`` calls of ``fn``, after one warm-up call."""
    return timing.repeated(fn, repeats)[1]


def _summary(times: list[float]) -> dict[str, float]:
    return timing.median_min_max(times, "_s")


def _compile_time(jitted: Any, *args: Any, **static: Any) -> float:
    t0 = time.perf_counter()
    jitted.lower(*args, **static).compile()
    return time.perf_counter() - t0


SKLEARN_SOLVERS = ("auto", "covariance_eigh")


def _mean_ll(params: ppca.PPCAParams, x: jax.Array) -> float:
    """Mean per-example log-likelihood of ``x`` under ``params`` (nats)."""
    return float(jnp.mean(ppca._log_likelihood(params, x)))


def _sklearn_worker(n: int, d: int, q: int, repeats: int) -> dict[str, Any]:
    """Times scikit-learn's PCA fits on the benchmark's data (run in the child process)."""
    import numpy as np
    from sklearn.decomposition import PCA

    x = np.asarray(_synthetic(n, d, q))
    out = {}
    for solver in SKLEARN_SOLVERS:
        times = _time(lambda s=solver: PCA(n_components=q, svd_solver=s).fit(x), repeats)
        score = float(PCA(n_components=q, svd_solver=solver).fit(x).score(x))
        out[f"sklearn.{solver}"] = {**_summary(times), "mean_log_likelihood": score}
    return out


def _sklearn(n: int, d: int, q: int, repeats: int) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    env["OPENBLAS_NUM_THREADS"] = str(os.cpu_count() or 1)
    cmd = [sys.executable, "-m", "benchmarks.bench_ppca", "--sklearn-worker"]
    cmd += ["--n", str(n), "--d", str(d), "--q", str(q), "--repeats", str(repeats)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout)


def bench(
    n: int, d: int, q: int, repeats: int, em_steps: int, methods: list[str]
) -> dict[str, Any]:
    x = _synthetic(n, d, q)
    out: dict[str, Any] = {}

    for method in methods:
        compile_s = _compile_time(ppca._closed_form, x, q, 0, method)
        times = _time(lambda m=method: ppca.fit_closed_form(x, q, method=m), repeats)
        out[f"closed_form.{method}"] = {
            "compile_s": compile_s,
            **_summary(times),
            # The ML fit's mean log-likelihood, and that of the fit with scikit-learn's
            # covariance divisor N - 1 (what its PCA.score evaluates).
            "mean_log_likelihood": _mean_ll(ppca.fit_closed_form(x, q, method=method), x),
            "mean_log_likelihood_ddof1": _mean_ll(
                ppca.fit_closed_form(x, q, ddof=1, method=method), x
            ),
        }

    rng = jax.random.key(1)
    w0, s0 = ppca._em_init(x, rng, q)
    for covariance in ("implicit", "explicit"):
        explicit = covariance == "explicit"
        compile_s = _compile_time(ppca._em, x, w0, s0, steps=1, explicit=explicit)
        compile_s += _compile_time(ppca._em, x, w0, s0, steps=em_steps + 1, explicit=explicit)

        def run(steps: int, c: str = covariance) -> Any:
            return ppca.fit_em(x, q, steps=steps, rng=rng, covariance=c)

        t1 = _time(lambda: run(1), repeats)
        tk = _time(lambda: run(em_steps + 1), repeats)
        per_iter = (statistics.median(tk) - statistics.median(t1)) / em_steps
        out[f"em.{covariance}"] = {
            "compile_s": compile_s,
            "per_iteration_s": per_iter,
            "setup_s": statistics.median(t1),
            f"steps_{em_steps + 1}": _summary(tk),
        }
    out.update(_sklearn(n, d, q, repeats))
    fastest = min(out[f"closed_form.{m}"]["median_s"] for m in methods)
    out["closed_form_speedup"] = out["sklearn.auto"]["median_s"] / fastest
    out["log_likelihood_gap_to_sklearn"] = max(
        abs(
            out[f"closed_form.{m}"]["mean_log_likelihood_ddof1"]
            - out[f"sklearn.{s}"]["mean_log_likelihood"]
        )
        for m in methods
        for s in SKLEARN_SOLVERS
    )
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--d", type=int, default=784)
    parser.add_argument("--q", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--em-steps", type=int, default=10, help="k in the EM difference")
    parser.add_argument(
        "--methods",
        nargs="+",
        default=["gram", "svd"],
        choices=["gram", "svd"],
        help="closed-form spectrum paths to time (svd is the slow one on tall data)",
    )
    parser.add_argument("--out", default=None, help="also write the JSON here")
    parser.add_argument("--sklearn-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.sklearn_worker:
        result = _sklearn_worker(args.n, args.d, args.q, args.repeats)
        print(json.dumps(result))
        return result

    result = {
        "benchmark": "ppca",
        "shape": {"n": args.n, "d": args.d, "q": args.q, "dtype": "float32"},
        "repeats": args.repeats,
        "backend": jax.default_backend(),
        "devices": [str(dv) for dv in jax.devices()],
        "jax": jax.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "openblas_num_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
        "results": bench(args.n, args.d, args.q, args.repeats, args.em_steps, args.methods),
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return result


if __name__ == "__main__":
    main()
