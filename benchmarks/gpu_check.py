"""The GPU check: the tests that matter on an accelerator, the benchmark against the PyTorch
twin, and one training epoch of every model in float32 and bfloat16, in one command.

    python -m benchmarks.gpu_check OUTDIR [--dry-run] [--tests-s 90] [--bench-s 50]
        [--epochs-s 100] [--total-s 270] [--workers 6] [--torch-compile]
        [--skip tests bench epochs]

(``scripts/gpu_check.sh OUTDIR [--dry-run]`` runs it with the carried wheels on the path.)
It writes ``OUTDIR/gpu_check.json`` and ``OUTDIR/gpu_check.md`` (the tables), plus the
pytest log; the sections are:

* ``machine``: Python, jax and its devices, torch and its CUDA device, package versions;
* ``tests``: a subset of the suite (strategies, bfloat16 compute, checkpoints and resume,
  the native GPU convolutions) in a subprocess with ``JAX_PLATFORMS`` set to the
  accelerator, then the CPU (``$GPU_CHECK_TEST_PLATFORMS`` overrides it); pass/fail/skip
  counts, the failing test ids and the slowest tests;
* ``bench``: :func:`benchmarks.run.measure` rows (genjax per-step and scan-fused, the PyTorch
  twin in eager mode on the same device as jax, the matmul roofline);
* ``epochs``: one epoch of 60,000 synthetic MNIST-shaped examples (uint8 28 x 28 x 1, random
  labels, as :mod:`benchmarks.specs` builds them) for every entry of ``specs.DEFAULT_RUN``,
  in ``float32`` and ``bfloat16`` compute (``Engine(compute_dtype=...)``, the engine's
  ``train.compute_dtype``; parameters stay float32), each epoch one on-device ``lax.scan``
  of ``60000 // batch`` steps at the model's configured batch size. ``first_epoch_s``
  includes compilation; ``epoch_s`` is a second epoch from the state the first one left.

Each section has a time cap (seconds), and the whole check one more; rows that would start
after them are listed as skipped (the tests are stopped), so the check stays in its slot.
``--dry-run`` shrinks every size (a few tests, one benchmark row, 256 examples per epoch)
so that it runs in minutes on a CPU and writes the same JSON shape, before a GPU is there.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import importlib.metadata
import importlib.util
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import traceback
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import jax
import numpy as np

from benchmarks import roofline, run, specs, timing
from genjax.train import Engine, init_state

DTYPES = ("float32", "bfloat16")
#: The packages whose versions the machine section records.
PACKAGES = (
    "jax",
    "jaxlib",
    "jax-cuda13-plugin",
    "jax-cuda12-plugin",
    "flax",
    "optax",
    "orbax-checkpoint",
    "chex",
    "numpy",
    "ml-dtypes",
    "scipy",
    "scikit-learn",
    "matplotlib",
    "tqdm",
    "tensorboardX",
    "protobuf",
    "torch",
    "pytest",
    "pytest-xdist",
    "hypothesis",
    "tensorflow-datasets",
    "array-record",
)


@dataclasses.dataclass(frozen=True)
class Plan:
    """What the check runs, and the time caps of its sections.

    Attributes:
      tests: pytest paths (relative to the checkout).
      tests_k: pytest ``-k`` expression, or None for all of ``tests``.
      workers: pytest-xdist workers (0: in one process).
      bench: ``(model, batch)`` rows of :func:`benchmarks.run.measure`.
      bench_budget: the timing budget of each benchmark row.
      epoch_examples: examples per epoch.
      epoch_batch: batch size of every epoch, or None for each model's configured one.
      tests_s, bench_s, epochs_s: seconds after which a section starts no further row.
      total_s: the same for the whole check (a section ends at the sooner of the two).
    """

    tests: tuple[str, ...]
    tests_k: str | None
    workers: int
    bench: tuple[tuple[str, int], ...]
    bench_budget: timing.Budget
    epoch_examples: int
    epoch_batch: int | None
    tests_s: float
    bench_s: float
    epochs_s: float
    total_s: float


FULL = Plan(
    tests=(
        "tests/train",
        "tests/nn/test_convolution.py",
        "tests/nn/test_platform_export.py",
        "tests/nn/test_fsq.py",
        "tests/test_optional_imports.py",
    ),
    tests_k=None,
    workers=6,
    bench=(
        ("vae_mlp", 128),
        ("vae_mlp", 512),
        ("vae_conv", 512),
        ("gan_dcgan", 512),
        ("vqvae_conv", 512),
    ),
    bench_budget=timing.Budget(repeats=3, target_s=0.2, row_s=4.0),
    epoch_examples=60_000,
    epoch_batch=None,
    tests_s=90.0,
    bench_s=50.0,
    epochs_s=100.0,
    total_s=270.0,
)

DRY = Plan(
    tests=(
        "tests/train/test_engine.py",
        "tests/train/test_pieces.py",
        "tests/train/test_checkpoint_faults.py",
        "tests/train/test_metrics_log.py",
    ),
    tests_k="bfloat16 or strategy or scan_fused or garbled or run_checkpoints or figures",
    workers=0,
    bench=(("vae_mlp", 32),),
    bench_budget=timing.Budget(repeats=3, target_s=0.05, row_s=2.0),
    epoch_examples=256,
    epoch_batch=16,
    tests_s=240.0,
    bench_s=120.0,
    epochs_s=600.0,
    total_s=1000.0,
)

ROOT = Path(__file__).resolve().parent.parent


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _error(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}".splitlines()[0][:300]


# ------------------------------------------------------------------------------- machine
def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


def torch_device() -> str | None:
    """The device the PyTorch twin runs on: ``cuda`` when torch sees a GPU, else ``cpu``;
    None without torch."""
    torch = _torch()
    if torch is None:
        return None
    return "cuda" if torch.cuda.is_available() else "cpu"


def machine_info() -> dict[str, Any]:
    """:func:`benchmarks.run.machine_info` plus the accelerator and the package versions."""
    info = run.machine_info()
    info["device_kinds"] = sorted({d.device_kind for d in jax.devices()})
    info["gpu"] = info["device_kinds"][0] if jax.default_backend() != "cpu" else None
    torch = _torch()
    if torch is not None:
        info["torch_cuda"] = torch.version.cuda
        info["torch_device"] = torch_device()
        if torch.cuda.is_available():
            info["torch_gpu"] = torch.cuda.get_device_name(0)
    smi = shutil.which("nvidia-smi")
    if smi:
        query = "--query-gpu=name,driver_version,memory.total"
        proc = subprocess.run(
            [smi, query, "--format=csv,noheader"], capture_output=True, text=True, check=False
        )
        info["nvidia_smi"] = proc.stdout.strip() or proc.stderr.strip()[:200]
    info["packages"] = {name: _version(name) for name in PACKAGES}
    info["env"] = {
        k: os.environ.get(k)
        for k in ("JAX_PLATFORMS", "XLA_FLAGS", "XLA_PYTHON_CLIENT_PREALLOCATE", "PYTHONPATH")
    }
    return info


# --------------------------------------------------------------------------------- tests
_OUTCOME = re.compile(r"(\S+::\S+)\s+(PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)")
_OUTCOME_XDIST = re.compile(r"(PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)\s+(\S+::\S+)")


def _junit(path: Path) -> list[dict[str, Any]]:
    """``[{"id", "outcome", "s"}]`` of a pytest JUnit XML file."""
    cases = []
    for case in ET.parse(path).getroot().iter("testcase"):
        kinds = {child.tag for child in case}
        outcome = next(
            (k for k in ("failure", "error", "skipped") if k in kinds), "passed"
        ).replace("failure", "failed")
        name = f"{case.get('classname', '').replace('.', '/')}.py::{case.get('name')}"
        cases.append({"id": name, "outcome": outcome, "s": float(case.get("time", 0.0))})
    return cases


def _from_log(text: str) -> list[dict[str, Any]]:
    """The same from pytest's ``-v`` lines, for a run stopped before its XML was written."""
    cases = {}
    for line in text.splitlines():
        m = _OUTCOME.search(line)
        node, outcome = (m.group(1), m.group(2)) if m else (None, None)
        if not m and (m := _OUTCOME_XDIST.search(line)):
            node, outcome = m.group(2), m.group(1)
        if node:
            cases[node] = {"id": node, "outcome": outcome.lower(), "s": None}
    return list(cases.values())


def run_tests(plan: Plan, out: Path, platforms: str, deadline: float) -> dict[str, Any]:
    """The plan's pytest selection in a subprocess, on ``platforms``; stopped at
    ``deadline`` (a ``time.perf_counter()`` value) plus 10 s."""
    cap_s = max(1.0, deadline - time.perf_counter())
    xml, log = out / "pytest.xml", out / "pytest.log"
    cmd = [sys.executable, "-m", "pytest", *plan.tests, "-p", "no:cacheprovider"]
    cmd += ["-o", "addopts=", "-v", "-rfE", f"--junitxml={xml}"]
    if plan.tests_k:
        cmd += ["-k", plan.tests_k]
    if plan.workers and importlib.util.find_spec("xdist") is not None:
        cmd += ["-n", str(plan.workers), "--dist", "loadgroup"]
    if importlib.util.find_spec("pytest_timeout") is not None:
        cmd += ["--timeout", str(math.ceil(cap_s))]
    env = {**os.environ, "JAX_PLATFORMS": platforms, "XLA_PYTHON_CLIENT_PREALLOCATE": "false"}
    env.pop("CI", None)  # a skip here is reported as a skip, not turned into a failure
    result: dict[str, Any] = {
        "command": " ".join(cmd[1:]).replace(str(out), "OUTDIR"),
        "jax_platforms": platforms,
        "cap_s": cap_s,
        "timed_out": False,
    }
    t0 = time.perf_counter()
    xml.unlink(missing_ok=True)
    with log.open("w") as f:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            result["returncode"] = proc.wait(timeout=cap_s + 10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # pytest, its workers and their subprocesses
            proc.wait()
            result["timed_out"], result["returncode"] = True, None
    result["wall_s"] = time.perf_counter() - t0
    text = log.read_text(errors="replace")
    cases = _junit(xml) if xml.exists() else _from_log(text)
    counts = {k: 0 for k in ("passed", "failed", "error", "skipped", "xfail", "xpass")}
    for case in cases:
        counts[case["outcome"]] = counts.get(case["outcome"], 0) + 1
    result["counts"] = counts
    result["failed"] = [c["id"] for c in cases if c["outcome"] in ("failed", "error")]
    timed = sorted((c for c in cases if c["s"] is not None), key=lambda c: -c["s"])
    result["slowest"] = [{"id": c["id"], "s": round(c["s"], 2)} for c in timed[:8]]
    result["summary_line"] = next(
        (line.strip("= ") for line in reversed(text.splitlines()) if " in " in line), ""
    )
    _log(f"tests: {counts} ({result['wall_s']:.0f} s)")
    return result


# --------------------------------------------------------------------------------- bench
@contextlib.contextmanager
def torch_on(device: str | None):
    """The PyTorch twins on ``device``: its tensors made there (``torch.set_default_device``)
    and the raw batches moved there (``common.to_torch_batch``). Nothing changes for
    ``cpu`` or without torch."""
    if device in (None, "cpu"):
        yield
        return
    import torch

    from benchmarks.torch_reference import common

    to_host_batch = common.to_torch_batch
    previous = torch.get_default_device()
    common.to_torch_batch = lambda raw: {k: v.to(device) for k, v in to_host_batch(raw).items()}
    torch.set_default_device(device)
    try:
        yield
    finally:
        torch.set_default_device(previous)
        common.to_torch_batch = to_host_batch


def run_bench(plan: Plan, deadline: float, *, use_compile: bool) -> dict[str, Any]:
    """The plan's benchmark rows (:func:`benchmarks.run.measure`) that start before
    ``deadline``, in the shape of ``benchmarks.run``'s results (``rows``, ``matmul``, ...)."""
    device = torch_device()
    result: dict[str, Any] = {
        "settings": {
            "rows": [list(r) for r in plan.bench],
            "repeats": plan.bench_budget.repeats,
            "target_s": plan.bench_budget.target_s,
            "torch": device is not None,
            "torch_device": device,
            "torch_compile": device is not None and use_compile,
        },
        "cap_s": deadline - time.perf_counter(),
        "load_before": list(os.getloadavg()),
        "rows": [],
        "failed": [],
        "skipped": [],
    }
    t0 = time.perf_counter()
    matmul = roofline.Matmul(roofline.DEFAULT_N, "float32")
    result["matmul_start"] = matmul.flops_per_s(plan.bench_budget.repeats)
    for name, batch in plan.bench:
        if time.perf_counter() > deadline:
            result["skipped"].append({"model": name, "batch": batch, "reason": "time cap"})
            continue
        _log(f"bench {name} @ {batch} ...")
        start = time.perf_counter()
        try:
            with torch_on(device):
                row = run.measure(
                    name,
                    batch,
                    budget=plan.bench_budget,
                    use_torch=device is not None,
                    use_compile=use_compile,
                    matmul=matmul,
                )
        except Exception as err:
            traceback.print_exc()
            result["failed"].append({"model": name, "batch": batch, "error": _error(err)})
            continue
        row["wall_s"] = time.perf_counter() - start
        result["rows"].append(row)
    peaks = [r["matmul_flops_per_s"] for r in result["rows"]]
    result["matmul"] = {
        "n": roofline.DEFAULT_N,
        "dtype": "float32",
        "median": float(np.median(peaks)) if peaks else result["matmul_start"]["median"],
    }
    result["load_after"] = list(os.getloadavg())
    result["wall_s"] = time.perf_counter() - t0
    _log(f"bench: {len(result['rows'])} rows ({result['wall_s']:.0f} s)")
    return result


# -------------------------------------------------------------------------------- epochs
def synthetic_mnist(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """``n`` examples of MNIST's shape: ``{"image": uint8 [n, 28, 28, 1], "label": int32
    [n]}``, uniform, as :meth:`benchmarks.specs.Built.raw_batches` draws them."""
    gen = np.random.default_rng(seed)
    return {
        "image": gen.integers(0, specs.IMAGE_MAX + 1, (n, *specs.IMAGE_SHAPE), dtype=np.uint8),
        "label": gen.integers(0, specs.NUM_CLASSES, (n,), dtype=np.int32),
    }


def configured_batch(name: str) -> int:
    """The batch size of the entry's resolved config before the benchmark sets its own."""
    from experiments import registry

    spec = specs.SPECS[name]
    return int(registry.get(spec.model).configs[spec.dataset]().train.batch_size)


def time_epoch(name: str, dtype: str, data: dict[str, np.ndarray], batch: int) -> dict[str, Any]:
    """Two epochs of model ``name`` in ``dtype`` compute over ``data`` held on the device,
    each one ``Engine.run_on_device`` scan of ``N // batch`` steps."""
    built = specs.build(name, batch)
    engine = Engine(built.task, built.prepare, compute_dtype=dtype)
    n = int(data["label"].shape[0])
    steps = n // batch

    @jax.jit
    def initialise(rng, one):
        return init_state(built.task, rng, built.prepare(one, jax.random.PRNGKey(0)))

    first = {k: v[:1] for k, v in data.items()}
    state = engine.place_state(initialise(jax.random.PRNGKey(0), first))
    resident = engine.place_resident(data)
    seconds = []
    for _ in range(2):
        t0 = time.perf_counter()
        state, metrics = engine.run_on_device(
            state, resident, num_steps=steps, batch_size=batch, seed=0
        )
        timing.block((state.params, metrics))
        seconds.append(time.perf_counter() - t0)
    loss = np.asarray(run.step_loss(metrics), np.float64)
    return {
        "model": name,
        "dtype": dtype,
        "batch": batch,
        "examples": n,
        "steps": steps,
        "first_epoch_s": seconds[0],
        "epoch_s": seconds[1],
        "steps_per_s": steps / seconds[1],
        "examples_per_s": steps * batch / seconds[1],
        "final_loss": float(loss[-1]),
        "loss_finite": bool(np.all(np.isfinite(loss))),
    }


def run_epochs(plan: Plan, deadline: float) -> dict[str, Any]:
    """One epoch of every default model in each of :data:`DTYPES`; the rows that would start
    after ``deadline`` are listed as skipped."""
    data = synthetic_mnist(plan.epoch_examples)
    result: dict[str, Any] = {
        "examples": plan.epoch_examples,
        "image_shape": list(specs.IMAGE_SHAPE),
        "dtypes": list(DTYPES),
        "cap_s": deadline - time.perf_counter(),
        "rows": [],
        "failed": [],
        "skipped": [],
    }
    t0 = time.perf_counter()
    for name in specs.DEFAULT_RUN:
        batch = plan.epoch_batch or configured_batch(name)
        for dtype in DTYPES:
            entry = {"model": name, "dtype": dtype, "batch": batch}
            if time.perf_counter() > deadline:
                result["skipped"].append({**entry, "reason": "time cap"})
                continue
            _log(f"epoch {name} {dtype} @ {batch} ...")
            try:
                row = time_epoch(name, dtype, data, batch)
            except Exception as err:
                traceback.print_exc()
                result["failed"].append({**entry, "error": _error(err)})
                continue
            result["rows"].append(row)
            _log(f"  {row['epoch_s']:.2f} s/epoch (first {row['first_epoch_s']:.1f} s)")
    result["wall_s"] = time.perf_counter() - t0
    return result


# ------------------------------------------------------------------------------- report
def _fmt_s(value: float | None) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.2f}"


def _tests_md(tests: dict[str, Any]) -> list[str]:
    lines = [
        f"`{tests['command']}` with `JAX_PLATFORMS={tests['jax_platforms']}`: "
        + ", ".join(f"{v} {k}" for k, v in tests["counts"].items() if v)
        + f" in {tests['wall_s']:.0f} s"
        + (" (stopped at its time cap)" if tests["timed_out"] else "")
        + "."
    ]
    return lines + [f"- failed: `{t}`" for t in tests["failed"]]


def _bench_md(bench: dict[str, Any], result: dict[str, Any]) -> list[str]:
    lines = []
    if bench["rows"]:
        table = run.markdown(
            {
                "date": result["date"],
                "machine": {"torch_threads": 0, **result["machine"]},
                "load_before": bench["load_before"],
                "load_after": bench["load_after"],
                "matmul": bench["matmul"],
                "rows": bench["rows"],
            }
        )
        device = bench["settings"]["torch_device"]
        twin = f"PyTorch twin on `{device}`." if device else "No torch: genjax columns only."
        lines += [table.rstrip(), "", twin]
    lines += [f"- {r['model']} @ {r['batch']}: {r['error']}" for r in bench["failed"]]
    lines += [f"- {r['model']} @ {r['batch']}: skipped ({r['reason']})" for r in bench["skipped"]]
    return lines


def _epochs_md(epochs: dict[str, Any]) -> list[str]:
    lines = [
        f"{epochs['examples']:,} uniform uint8 images per epoch, held on the device; each "
        "epoch one scan of `examples // batch` steps at the model's configured batch.",
        "",
        "| model | batch | dtype | first epoch s (compile incl.) | epoch s | examples/s "
        "| final loss |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    for r in epochs["rows"]:
        lines.append(
            f"| {r['model']} | {r['batch']} | {r['dtype']} | {_fmt_s(r['first_epoch_s'])} | "
            f"{_fmt_s(r['epoch_s'])} | {r['examples_per_s']:,.0f} | {r['final_loss']:.4g} |"
        )
    for r in epochs["failed"]:
        lines.append(f"| {r['model']} | {r['batch']} | {r['dtype']} | failed: {r['error']} |||")
    for r in epochs["skipped"]:
        lines.append(f"| {r['model']} | {r['batch']} | {r['dtype']} | skipped ({r['reason']}) |||")
    return lines


def markdown(result: dict[str, Any]) -> str:
    """The check as Markdown: the test counts, the benchmark's table, the epoch table."""
    machine = result["machine"]
    gpu = machine.get("gpu") or machine.get("torch_gpu") or machine["cpu"]
    lines = [
        f"# GPU check{' (dry run)' if result['dry_run'] else ''}",
        "",
        f"{result['date']}, {gpu}; jax {machine['jax']} ({machine['backend']}: "
        f"{', '.join(machine['devices'])}), torch {machine.get('torch', 'not installed')} "
        f"on {machine.get('torch_device') or 'n/a'}; Python {machine['python']}. "
        f"Wall time {result['wall_s']:.0f} s.",
    ]
    sections = (
        ("Tests", "tests", _tests_md),
        ("Benchmark: genjax and the PyTorch twin", "bench", lambda p: _bench_md(p, result)),
        ("One epoch of synthetic 28x28x1 examples, data on the device", "epochs", _epochs_md),
    )
    for title, key, render in sections:
        part = result[key]
        lines += ["", f"## {title}", ""]
        lines += ["Skipped (--skip)."] if set(part) == {"skipped"} else render(part)
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outdir", type=Path, help="where gpu_check.json and .md are written")
    parser.add_argument("--dry-run", action="store_true", help="small sizes, for a CPU")
    parser.add_argument("--tests-s", type=float, default=None, help="cap of the tests (s)")
    parser.add_argument("--bench-s", type=float, default=None, help="cap of the benchmark (s)")
    parser.add_argument("--epochs-s", type=float, default=None, help="cap of the epochs (s)")
    parser.add_argument("--total-s", type=float, default=None, help="cap of the whole check")
    parser.add_argument("--workers", type=int, default=None, help="pytest-xdist workers")
    parser.add_argument("--torch-compile", action="store_true", help="also torch.compile")
    parser.add_argument(
        "--skip", nargs="+", default=[], choices=("tests", "bench", "epochs"), help="sections"
    )
    args = parser.parse_args(argv)
    for name in ("tests_s", "bench_s", "epochs_s", "total_s"):
        value = getattr(args, name)
        if value is not None and not value > 0:
            parser.error(f"--{name.replace('_', '-')} must be > 0, got {value}")
    if args.workers is not None and args.workers < 0:
        parser.error(f"--workers must be >= 0, got {args.workers}")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    plan = DRY if args.dry_run else FULL
    changes = {
        k: getattr(args, k)
        for k in ("tests_s", "bench_s", "epochs_s", "total_s", "workers")
        if getattr(args, k) is not None
    }
    plan = dataclasses.replace(plan, **changes)
    out = args.outdir.resolve()
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    backend = jax.default_backend()
    result: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "python -m benchmarks.gpu_check "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "dry_run": args.dry_run,
        "plan": {
            **{k: v for k, v in dataclasses.asdict(plan).items() if k != "bench_budget"},
            "bench_budget": dataclasses.asdict(plan.bench_budget),
        },
        "machine": machine_info(),
    }
    _log(f"gpu_check: backend {backend}, devices {result['machine']['devices']}")
    # JAX_PLATFORMS of the tests: the accelerator first ("gpu" names CUDA or ROCm), then the
    # CPU, which the multi-device tests ask for in their subprocesses.
    platforms = "cpu" if backend == "cpu" else f"{backend},cpu"
    platforms = os.environ.get("GPU_CHECK_TEST_PLATFORMS", platforms)
    end = started + plan.total_s
    compile_ = args.torch_compile
    sections = (
        ("tests", plan.tests_s, lambda until: run_tests(plan, out, platforms, until)),
        ("bench", plan.bench_s, lambda until: run_bench(plan, until, use_compile=compile_)),
        ("epochs", plan.epochs_s, lambda until: run_epochs(plan, until)),
    )
    for name, cap_s, run_section in sections:
        deadline = min(time.perf_counter() + cap_s, end)
        result[name] = {"skipped": "--skip"} if name in args.skip else run_section(deadline)
    result["wall_s"] = time.perf_counter() - started
    (out / "gpu_check.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    (out / "gpu_check.md").write_text(markdown(result))
    _log(f"gpu_check: wrote {out / 'gpu_check.json'} ({result['wall_s']:.0f} s)")
    return result


if __name__ == "__main__":
    main()
