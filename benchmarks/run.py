"""Step throughput of every model: genjax (per-step and scan-fused) against a PyTorch twin and
against the machine's own matmul limit.

    python -m benchmarks.run [--models vae_mlp ppca ...] [--batch 32 128 512]
        [--repeats 5] [--target-s 0.4] [--no-torch] [--no-compile] [--no-scaling]
        [--results-dir benchmarks/results] [--out results.json]

For each model (``benchmarks.specs``; without ``--models``, every entry but the variants
such as ``cyclevae_nocycle``) and batch size it times, after compilation and warm-up:

* ``genjax_step``: ``Engine.step`` once per step (one dispatch per step, batches on device);
* ``genjax_fused``: ``Engine.run``, all the repeat's steps in one ``lax.scan`` (the two
  together give the engine's per-step dispatch cost, e.g. ``--models vae_mlp vae_conv
  --batch 128 512 --no-torch``);
* ``torch_eager``: the PyTorch twin (``benchmarks.torch_reference``), eager, float32;
* ``torch_compiled``: the same with ``torch.compile`` (its failure is caught and reported);
* ``matmul``: one large dense matmul (``benchmarks.roofline``), the hardware limit.

A step is one update of every player of the model's task: for the GANs (``gan_mlp``,
``gan_dcgan``) one discriminator and one generator update, so their ``steps_per_s`` are GAN
training steps per second (``python -m benchmarks.run --models gan_mlp gan_dcgan --batch 64
256`` for the two batch sizes the GAN is compared at); their loss is the sum of the players'.
What the Cycle VAE's cycle costs is the ratio of the steps/s of ``cyclevae_nocycle`` (the
same model with ``model.cycle_weight=0``, which skips the cycle's passes) to those of
``cyclevae``: ``--models cyclevae cyclevae_nocycle --batch 128 512``.

The methods run in the same process and alternate within every repeat (their order rotates
from repeat to repeat), so a change of the machine's speed hits all of them alike; the
ratio fused/eager and the roofline fraction are computed per repeat and their median is
reported. All methods see the same batches (synthetic MNIST-sized ``uint8`` images).

Writes ``<results-dir>/results.json`` (or ``--out``), ``results.md`` (the table),
``throughput.png`` (examples/s against batch size) and, unless ``--no-scaling``,
``scaling.png``: examples/s against the number of *simulated* CPU devices for the ``mesh`` and
``pmap`` strategies, measured in a subprocess with
``XLA_FLAGS=--xla_force_host_platform_device_count=8``. On a CPU those devices share the same
cores, so that plot checks that the paths run and agree (correctness only), not that they
scale.

Why a step falls short of the roofline: ``python -m benchmarks.profile`` (the fused step's XLA
ops, timed by the profiler and grouped by kind).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np

from benchmarks import roofline, specs, timing
from genjax.train import Engine, init_state, make_update

DEFAULT_BATCHES = (32, 128, 512)
DEFAULT_RESULTS = Path(__file__).resolve().parent / "results"
METHODS = ("genjax_step", "genjax_fused", "torch_eager", "torch_compiled")
#: The project's speed targets.
RATIO_TARGET = 1.5  # genjax fused / torch eager, vae_mlp at batch 128
ROOFLINE_TARGET = 0.5  # fused step's fraction of the matmul FLOP/s, every model at batch 512
SCALING_DEVICES = (1, 2, 4, 8)
SCALING_MODEL = "vae_mlp"


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _summary(times: list[float], steps: int, batch: int) -> dict[str, Any]:
    """:func:`timing.throughput`, its ``spread`` ((max - min) / median of the rates) and the
    repeats' seconds."""
    rates = timing.throughput(times, steps, batch)
    spread = (rates["steps_per_s_max"] - rates["steps_per_s_min"]) / rates["steps_per_s"]
    return {**rates, "spread": spread, "repeat_seconds": times}


def step_loss(metrics: dict[str, Any]) -> Any:
    """The loss a step reports: ``metrics["loss"]`` of a one-player task; for several players
    (a GAN's ``disc/loss`` and ``gen/loss``) the sum of their losses, as the PyTorch twins of
    multi-player models return."""
    if "loss" in metrics:
        return metrics["loss"]
    losses = [v for k, v in metrics.items() if k.endswith("/loss")]
    if not losses:
        raise KeyError(f"no 'loss' or '<player>/loss' among the metrics {sorted(metrics)}")
    return sum(np.asarray(v) for v in losses)


# ------------------------------------------------------------------------------------ genjax
class GenjaxRunner:
    """The engine's per-step and scan-fused loops for one built spec, ready to time.

    Construction compiles the per-step update (``Engine.step``) on one batch; ``load(raw)``
    then places ``T`` batches and compiles the scan over ``T`` steps (``Engine.run``).
    ``compiler_options`` goes to the :class:`~genjax.train.Engine` (``None``: its default).
    """

    def __init__(
        self,
        built: specs.Built,
        first: dict[str, np.ndarray],
        compiler_options: dict[str, str] | None = None,
    ):
        self.built = built
        task, prepare = built.task, built.prepare
        # jit strategy, donated state, the engine's default compiler options: as training runs
        self.engine = Engine(task, prepare, compiler_options=compiler_options)

        # Initialise under one jit, as genjax.train.fit does.
        @jax.jit
        def initialise(rng, one):
            return init_state(task, rng, prepare(one, jax.random.PRNGKey(0)))

        self.host_state = jax.tree.map(np.asarray, initialise(jax.random.PRNGKey(0), first))
        self.compile_s: dict[str, float] = {}
        self.first = self.engine.place_batch(first)
        t0 = time.perf_counter()
        self.step_state, m = self.engine.step(self.engine.place_state(self.host_state), self.first)
        timing.block(m)
        self.compile_s["genjax_step"] = time.perf_counter() - t0
        self.batches = [self.first]

    def load(self, raw: dict[str, np.ndarray]) -> None:
        steps = int(next(iter(raw.values())).shape[0])
        self.batches = [
            self.engine.place_batch({k: v[i] for k, v in raw.items()}) for i in range(steps)
        ]
        self.stack = self.engine.place_batch(raw, stacked=True)
        t0 = time.perf_counter()
        self.run_state, m = self.engine.run(self.engine.place_state(self.host_state), self.stack)
        timing.block(m)
        self.compile_s["genjax_fused"] = time.perf_counter() - t0
        self.last_metrics = m

    def per_step(self) -> None:
        state = self.step_state
        for b in self.batches:
            state, _ = self.engine.step(state, b)
        timing.block(state.params)
        self.step_state = state

    def fused(self) -> None:
        self.run_state, m = self.engine.run(self.run_state, self.stack)
        timing.block(self.run_state.params)
        self.last_metrics = m

    def compiled_fused(self) -> Any:
        """The compiled executable ``Engine.run`` runs on the loaded stack (lowering the
        engine's own jitted scan again hits JAX's compilation cache)."""
        fn = getattr(self.engine, "_cache", {}).get("run")
        if fn is None or not hasattr(fn, "lower"):
            raise RuntimeError("the engine's compiled scan-fused step is not reachable")
        return fn.lower(self.engine.place_state(self.host_state), self.stack).compile()

    def cost(self) -> dict[str, float]:
        """XLA's cost analysis of one update, read off the executable ``Engine.step`` runs
        (lowering the engine's own jitted step again hits JAX's compilation cache); if the
        engine's internals change, ``make_update`` is compiled afresh with ``jax.jit``."""
        fn = getattr(self.engine, "_cache", {}).get("step")
        if fn is None or not hasattr(fn, "lower"):
            fn = jax.jit(make_update(self.built.task, self.built.prepare))
        state = self.engine.place_state(self.host_state)
        return roofline.cost_analysis(fn, state, self.first)

    @staticmethod
    def device_peak_memory() -> int | None:
        stats = jax.devices()[0].memory_stats()
        if not stats:
            return None
        return stats.get("peak_bytes_in_use")


# ------------------------------------------------------------------------------------- torch
def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


class TorchRunner:
    """The PyTorch twin's train step over the same raw batches."""

    def __init__(self, built: specs.Built, raw: dict[str, np.ndarray], *, compile: bool):
        import torch

        from benchmarks import torch_reference
        from benchmarks.torch_reference.common import to_torch_batch

        torch.manual_seed(0)
        self.step = torch_reference.build(
            built.spec.torch_twin, built.config, built.info, specs.IMAGE_MAX, compile=compile
        )
        steps = int(next(iter(raw.values())).shape[0])
        self.batches = [to_torch_batch({k: v[i] for k, v in raw.items()}) for i in range(steps)]
        t0 = time.perf_counter()
        self.step(self.batches[0])
        self.compile_s = time.perf_counter() - t0
        self.last_loss = float("nan")

    def run(self) -> None:
        loss = None
        for b in self.batches:
            loss = self.step(b)
        self.last_loss = float(loss.detach()) if loss is not None else float("nan")


# ----------------------------------------------------------------------------- one measurement
def measure(
    name: str,
    batch: int,
    *,
    budget: timing.Budget,
    use_torch: bool,
    use_compile: bool,
    matmul: roofline.Matmul,
) -> dict[str, Any]:
    """Every method for model ``name`` at ``batch`` (see the module docstring).

    Slow steps (the convolutional models at batch 512 take a second or more per step on two
    cores) would make ``budget.repeats`` alternating rounds of every method last minutes; the
    repeats are cut so the timed rounds fit ``budget.row_s``, but never below
    ``budget.min_repeats`` (reported as ``repeats`` in the row)."""
    built = specs.build(name, batch)
    out: dict[str, Any] = {"model": name, "batch": batch, "config": specs.describe(built)}

    # Steps per repeat: the slowest method's repeat should last about target_s.
    probe_raw = built.raw_batches(1, seed=1)
    gj = GenjaxRunner(built, {k: v[0] for k, v in probe_raw.items()})
    compile_s: dict[str, float] = dict(gj.compile_s)
    gj.per_step()
    fns = [gj.per_step]
    if use_torch:
        torch_probe = TorchRunner(built, probe_raw, compile=False)
        torch_probe.run()
        fns.append(torch_probe.run)
    step_s = timing.seconds_per_step(fns, 1)
    steps = budget.steps_for(step_s)
    out["steps_per_repeat"] = steps
    methods = 2 + (2 if use_torch else 0)
    repeats = budget.repeats_for(steps * statistics.mean(step_s) * methods)
    out["repeats"] = repeats

    raw = built.raw_batches(steps, seed=0)
    runners: dict[str, Callable[[], None]] = {}
    errors: dict[str, str] = {}
    gj.load(raw)
    compile_s["genjax_fused"] = gj.compile_s["genjax_fused"]
    gj.per_step()  # warm-up
    gj.fused()
    runners["genjax_step"] = gj.per_step
    runners["genjax_fused"] = gj.fused
    cost = gj.cost()
    out["xla_cost"] = cost

    torch_runners: dict[str, TorchRunner] = {}
    if use_torch:
        te = TorchRunner(built, raw, compile=False)
        compile_s["torch_eager"] = te.compile_s
        te.run()
        runners["torch_eager"] = te.run
        torch_runners["torch_eager"] = te
        out["torch_num_params"] = te.step.num_params()
        if use_compile:
            try:
                tc = TorchRunner(built, raw, compile=True)
                compile_s["torch_compiled"] = tc.compile_s
                tc.run()
                runners["torch_compiled"] = tc.run
                torch_runners["torch_compiled"] = tc
            except Exception as err:  # report, do not hide, a failing torch.compile
                errors["torch_compiled"] = f"{type(err).__name__}: {err}".splitlines()[0][:300]
                _log(f"  torch.compile failed for {name}@{batch}: {errors['torch_compiled']}")
        else:
            errors["torch_compiled"] = "not run (--no-compile)"
    else:
        errors["torch_eager"] = errors["torch_compiled"] = "torch not installed or --no-torch"
    out["num_params"] = int(sum(np.size(x) for x in jax.tree.leaves(gj.host_state.params)))

    # Alternating repeats; the matmul is timed in every repeat too.
    order = [*runners, "matmul"]
    times: dict[str, list[float]] = {k: [] for k in order}
    for r in range(repeats):
        rotated = order[r % len(order) :] + order[: r % len(order)]
        for key in rotated:
            times[key].append(matmul.time_once() if key == "matmul" else timing.timed(runners[key]))

    results = {k: _summary(times[k], steps, batch) for k in runners}
    for k in METHODS:
        if k in results:
            results[k]["compile_s"] = compile_s.get(k)
        else:
            results[k] = {"error": errors.get(k, "not run")}
    out["methods"] = results
    peak = [matmul.flops / t for t in times["matmul"]]
    out["matmul_flops_per_s"] = statistics.median(peak)
    flops = cost["flops"]
    out["flops_per_step"] = flops
    if flops > 0:
        fused = [
            roofline.fraction(flops, steps / t, p)
            for t, p in zip(times["genjax_fused"], peak, strict=True)
        ]
        stepped = [
            roofline.fraction(flops, steps / t, p)
            for t, p in zip(times["genjax_step"], peak, strict=True)
        ]
        out["roofline_fraction"] = statistics.median(fused)
        out["roofline_fraction_step"] = statistics.median(stepped)
        out["achieved_flops_per_s"] = flops * results["genjax_fused"]["steps_per_s"]
        if cost["bytes_accessed"] > 0:
            out["arithmetic_intensity"] = flops / cost["bytes_accessed"]
    if "torch_eager" in times:
        paired = [e / f for f, e in zip(times["genjax_fused"], times["torch_eager"], strict=True)]
        out["ratio_fused_vs_eager"] = statistics.median(paired)
        paired = [e / s for s, e in zip(times["genjax_step"], times["torch_eager"], strict=True)]
        out["ratio_step_vs_eager"] = statistics.median(paired)
    if "torch_compiled" in times:
        paired = [
            c / f for f, c in zip(times["genjax_fused"], times["torch_compiled"], strict=True)
        ]
        out["ratio_fused_vs_compiled"] = statistics.median(paired)
    out["device_peak_memory_bytes"] = GenjaxRunner.device_peak_memory()
    out["xla_step_memory_bytes"] = cost.get("memory_bytes")
    out["final_loss"] = {
        "genjax_fused": float(np.asarray(step_loss(gj.last_metrics))[-1]),
        **{k: r.last_loss for k, r in torch_runners.items()},
    }
    return out


# ---------------------------------------------------------------------------------- scaling
def scaling_worker(name: str, batch: int, steps: int, repeats: int) -> dict[str, Any]:
    """Run inside a process started with 8 simulated CPU devices: fused examples/s for the
    ``mesh`` and ``pmap`` strategies on the first ``n`` devices, and the loss trajectories."""
    from jax.sharding import Mesh

    built = specs.build(name, batch)
    raw = built.raw_batches(steps, seed=0)
    devices = jax.devices()
    rows = []
    reference = None
    for strategy in ("mesh", "pmap"):
        for n in SCALING_DEVICES:
            if n > len(devices) or batch % n:
                continue
            mesh = Mesh(np.asarray(devices[:n]), ("data",))
            engine = Engine(built.task, built.prepare, strategy=strategy, mesh=mesh)
            first = {k: v[0] for k, v in raw.items()}
            host = jax.tree.map(
                np.asarray,
                jax.jit(
                    lambda rng, one: init_state(
                        built.task, rng, built.prepare(one, jax.random.PRNGKey(0))
                    )
                )(jax.random.PRNGKey(0), first),
            )
            stack = engine.place_batch(raw, stacked=True)
            t0 = time.perf_counter()
            state, metrics = engine.run(engine.place_state(host), stack)
            timing.block(metrics)
            compile_s = time.perf_counter() - t0
            losses = np.asarray(step_loss(metrics)).reshape(steps, -1)[:, 0].tolist()
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                state, metrics = engine.run(state, stack)
                timing.block(state.params)
                times.append(time.perf_counter() - t0)
            row = {
                "strategy": strategy,
                "devices": n,
                "compile_s": compile_s,
                "first_chunk_losses": losses,
                **_summary(times, steps, batch),
            }
            if strategy == "mesh":
                if reference is None:
                    reference = np.asarray(losses)
                row["max_abs_loss_diff_vs_1_device"] = float(
                    np.max(np.abs(np.asarray(losses) - reference))
                )
            rows.append(row)
            _log(f"  scaling {strategy} x{n}: {row['examples_per_s']:.0f} examples/s")
    return {"model": name, "batch": batch, "steps": steps, "rows": rows}


def run_scaling(name: str, batch: int, steps: int, repeats: int) -> dict[str, Any]:
    env = dict(os.environ)
    flags = env.get("XLA_FLAGS", "")
    env["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={max(SCALING_DEVICES)}"
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.run",
        "--scaling-worker",
        "--models",
        name,
        "--batch",
        str(batch),
        "--scaling-steps",
        str(steps),
        "--repeats",
        str(repeats),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1:] or ["failed"]}
    sys.stderr.write(proc.stderr)
    return json.loads(proc.stdout)


# ----------------------------------------------------------------------------------- output
def machine_info() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }
    if torch_available():
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    return info


def _fmt_rate(entry: dict[str, Any]) -> str:
    if "examples_per_s" not in entry:
        return "n/a"
    rate = entry["examples_per_s"]
    return f"{rate:,.0f} ±{100 * entry['spread'] / 2:.0f}%"


def markdown(result: dict[str, Any]) -> str:
    machine = result["machine"]
    lines = [
        f"Measured {result['date']} on {machine['cpu']} ({machine['cores']} cores, "
        f"{machine['backend']} backend), jax {machine['jax']}"
        + (
            f", torch {machine['torch']} ({machine['torch_threads']} threads)"
            if "torch" in machine
            else ""
        )
        + f"; XLA_FLAGS {machine.get('xla_flags') or '(none)'}"
        + f"; load average {result['load_before'][0]:.2f} before, {result['load_after'][0]:.2f} "
        f"after (1 min). Matmul peak ({result['matmul']['n']}² float32, XLA): "
        f"{result['matmul']['median'] / 1e9:.1f} GFLOP/s.",
        "",
        "| model | batch | genjax per-step | genjax fused | torch eager | torch compiled "
        "| fused / eager | roofline (fused) | notes |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in result["rows"]:
        m = row["methods"]
        notes = []
        ratio = row.get("ratio_fused_vs_eager")
        frac = row.get("roofline_fraction")
        if row["model"] == "vae_mlp" and row["batch"] == 128 and ratio is not None:
            ok = ratio >= RATIO_TARGET
            notes.append(f"ratio target ≥{RATIO_TARGET}×: {'met' if ok else 'NOT met'}")
        if row["batch"] == 512 and frac is not None:
            ok = frac >= ROOFLINE_TARGET
            notes.append(f"roofline target ≥{ROOFLINE_TARGET:.0%}: {'met' if ok else 'NOT met'}")
        if "error" in m["torch_compiled"] and "torch not" not in m["torch_compiled"]["error"]:
            notes.append(f"torch.compile: {m['torch_compiled']['error'][:60]}")
        lines.append(
            "| {model} | {batch} | {gs} | {gf} | {te} | {tc} | {ratio} | {frac} | {notes} |".format(
                model=row["model"],
                batch=row["batch"],
                gs=_fmt_rate(m["genjax_step"]),
                gf=_fmt_rate(m["genjax_fused"]),
                te=_fmt_rate(m["torch_eager"]),
                tc=_fmt_rate(m["torch_compiled"]),
                ratio=f"{ratio:.2f}×" if ratio is not None else "n/a",
                frac=f"{frac:.1%}" if frac is not None else "n/a",
                notes="; ".join(notes),
            )
        )
    lines += [
        "",
        "Examples/s: median over alternating repeats (± half the min-max spread). "
        "fused / eager and roofline: medians of the per-repeat values. Roofline: FLOPs of one "
        "step from XLA's cost analysis × fused steps/s ÷ the FLOP/s of the matmul timed in "
        "the same repeats.",
    ]
    missing = result.get("missing_models")
    if missing:
        lines.append(f"Not measured (model not registered yet): {', '.join(missing)}.")
    return "\n".join(lines) + "\n"


def plot_throughput(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(r["model"] for r in result["rows"]))
    cols = min(3, len(models))
    rows_n = math.ceil(len(models) / cols)
    fig, axes = plt.subplots(rows_n, cols, figsize=(4.2 * cols, 3.4 * rows_n), squeeze=False)
    labels = {
        "genjax_step": "genjax per-step",
        "genjax_fused": "genjax scan-fused",
        "torch_eager": "torch eager",
        "torch_compiled": "torch.compile",
    }
    styles = {
        "genjax_step": "o--",
        "genjax_fused": "o-",
        "torch_eager": "s-",
        "torch_compiled": "s--",
    }
    for ax, model in zip(axes.flat, models, strict=False):
        rows = sorted((r for r in result["rows"] if r["model"] == model), key=lambda r: r["batch"])
        for method in METHODS:
            pts = [
                (r["batch"], r["methods"][method]["examples_per_s"])
                for r in rows
                if "examples_per_s" in r["methods"][method]
            ]
            if pts:
                xs, ys = zip(*pts, strict=True)
                ax.plot(xs, ys, styles[method], label=labels[method])
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_title(model)
        ax.set_xlabel("batch size")
        ax.set_ylabel("examples / s")
        ax.grid(True, which="both", alpha=0.3)
    for ax in list(axes.flat)[len(models) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=8)
    machine = result["machine"]
    fig.suptitle(
        f"training-step throughput, {machine['cpu']} ({machine['cores']} cores), "
        f"load {result['load_before'][0]:.1f}",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_scaling(scaling: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for strategy, style in (("mesh", "o-"), ("pmap", "s--")):
        pts = [
            (r["devices"], r["examples_per_s"])
            for r in scaling["rows"]
            if r["strategy"] == strategy
        ]
        if pts:
            xs, ys = zip(*pts, strict=True)
            ax.plot(xs, ys, style, label=strategy)
    ax.set_xscale("log", base=2)
    ax.set_xticks(SCALING_DEVICES, [str(n) for n in SCALING_DEVICES])
    ax.set_xlabel("simulated CPU devices")
    ax.set_ylabel("examples / s")
    ax.set_title(
        f"{scaling['model']}, global batch {scaling['batch']}, scan-fused\n"
        "CORRECTNESS ONLY: simulated devices share the same CPU cores",
        fontsize=9,
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ------------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models",
        nargs="+",
        default=None,
        help=f"of {sorted(specs.SPECS)}; default: the registered of {list(specs.DEFAULT_RUN)}",
    )
    parser.add_argument("--batch", type=int, nargs="+", default=list(DEFAULT_BATCHES))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--target-s", type=float, default=0.4, help="seconds of one repeat of the slowest method"
    )
    parser.add_argument("--no-torch", action="store_true", help="genjax and the roofline only")
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    parser.add_argument("--no-scaling", action="store_true", help="skip the device-count plot")
    parser.add_argument("--scaling-batch", type=int, default=512)
    parser.add_argument("--scaling-steps", type=int, default=20)
    parser.add_argument("--matmul-n", type=int, default=roofline.DEFAULT_N)
    parser.add_argument("--results-dir", type=Path, default=DEFAULT_RESULTS)
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default: results-dir)")
    parser.add_argument("--scaling-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if any(b < 1 for b in args.batch):
        parser.error(f"--batch sizes must be >= 1, got {args.batch}")
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")
    if not args.target_s > 0:
        parser.error(f"--target-s must be > 0, got {args.target_s}")
    unknown = [m for m in args.models or [] if m not in specs.SPECS]
    if unknown:
        parser.error(f"unknown --models {unknown}; known: {sorted(specs.SPECS)}")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.scaling_worker:
        (name,) = args.models
        result = scaling_worker(name, args.batch[0], args.scaling_steps, args.repeats)
        print(json.dumps(result))
        return result

    started = time.perf_counter()
    registered = specs.available()
    wanted = args.models or specs.DEFAULT_RUN
    missing = [m for m in wanted if m not in registered]
    models = [m for m in wanted if m in registered]
    use_torch = not args.no_torch and torch_available()
    if not args.no_torch and not use_torch:
        _log("torch is not installed (scripts/bench.sh installs it): genjax columns only")

    result: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "python -m benchmarks.run "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": machine_info(),
        "load_before": list(os.getloadavg()),
        "settings": {
            "batches": args.batch,
            "repeats": args.repeats,
            "target_s": args.target_s,
            "torch": use_torch,
            "torch_compile": use_torch and not args.no_compile,
        },
        "missing_models": missing,
        "rows": [],
    }
    budget = timing.Budget(repeats=args.repeats, target_s=args.target_s)
    matmul = roofline.Matmul(args.matmul_n, "float32")
    result["matmul_start"] = matmul.flops_per_s(args.repeats)
    if use_torch:
        result["torch_matmul"] = roofline.torch_matmul_flops_per_s(args.matmul_n, args.repeats)
    for name in models:
        for batch in args.batch:
            _log(f"{name} @ batch {batch} ...")
            t0 = time.perf_counter()
            try:
                row = measure(
                    name,
                    batch,
                    budget=budget,
                    use_torch=use_torch,
                    use_compile=not args.no_compile,
                    matmul=matmul,
                )
            except Exception as err:
                traceback.print_exc()
                result.setdefault("failed", []).append(
                    {"model": name, "batch": batch, "error": f"{type(err).__name__}: {err}"}
                )
                continue
            row["wall_s"] = time.perf_counter() - t0
            result["rows"].append(row)
            m = row["methods"]
            _log(
                "  "
                + ", ".join(
                    f"{k} {m[k]['examples_per_s']:,.0f}/s"
                    for k in METHODS
                    if "examples_per_s" in m[k]
                )
                + f"; ratio {row.get('ratio_fused_vs_eager', float('nan')):.2f}"
                + f"; roofline {row.get('roofline_fraction', float('nan')):.1%}"
                + f" ({row['wall_s']:.0f} s)"
            )
    peaks = [r["matmul_flops_per_s"] for r in result["rows"]]
    result["matmul"] = {
        "n": args.matmul_n,
        "dtype": "float32",
        "median": statistics.median(peaks) if peaks else result["matmul_start"]["median"],
    }
    if not args.no_scaling and SCALING_MODEL in registered:
        _log(f"scaling ({SCALING_MODEL}, simulated devices) ...")
        result["scaling"] = run_scaling(
            SCALING_MODEL, args.scaling_batch, args.scaling_steps, max(2, args.repeats // 2)
        )
    result["load_after"] = list(os.getloadavg())
    result["wall_s"] = time.perf_counter() - started

    out_dir = args.results_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = args.out or out_dir / "results.json"
    json_path.write_text(json.dumps(result, indent=2) + "\n")
    table = markdown(result)
    (out_dir / "results.md").write_text(table)
    if result["rows"]:
        plot_throughput(result, out_dir / "throughput.png")
    if "rows" in result.get("scaling", {}):
        plot_scaling(result["scaling"], out_dir / "scaling.png")
    print(table)
    _log(f"wrote {json_path}, {out_dir / 'results.md'} and plots ({result['wall_s']:.0f} s)")
    return result


if __name__ == "__main__":
    main()
