"""Where a training step's time goes: the XLA ops of the scan-fused step, timed by the
profiler, grouped by kind, beside their FLOPs.

    python -m benchmarks.profile [--models vae_mlp gan_dcgan ...] [--batch 512]
        [--steps 20] [--repeats 3] [--results-dir benchmarks/results]

The roofline fraction of :mod:`benchmarks.run` says how far a step is from the machine's
matmul FLOP/s, not why. This runs the benchmark's ``genjax_fused`` method (``Engine.run``
over ``steps`` batches: one compiled ``lax.scan``), records ``repeats`` runs with
:func:`jax.profiler.trace`, reads the trace back (:class:`jax.profiler.ProfileData`) and adds
up the *exclusive* time of every XLA op (the CPU runtime records one event per executed
thunk, named after its HLO instruction, nested inside the ``while`` loop's). The compiled
HLO says what each op is:

* ``matmul``: a ``dot``, or a fusion that holds one (XLA:CPU's YNNPACK/oneDNN fusions);
* ``convolution``: a ``convolution``, or a fusion that holds one;
* ``elementwise``: the other fusions and elementwise ops (activations, losses, the
  optimizer's update, reductions);
* ``data movement``: copies, transposes, slices, concatenations, pads, gathers;
* ``rng``: random-bit generation (JAX's threefry, lowered to integer elementwise fusions,
  recognised by the ``jax.random`` function its metadata names);
* ``other``: control flow, collectives, custom calls.

For dots and convolutions it also counts the FLOPs from the shapes (``2 x output elements x
contracted size``; for input-dilated convolutions without the products with inserted zeros)
and divides by their own time: that rate beside the large matmul's says how much of the
shortfall is the GEMMs' shapes (small matrices run below the peak) and how much is the time
spent outside them.

Writes ``<results-dir>/profile.json`` and ``profile.md`` and prints the table.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import glob
import json
import math
import re
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import jax

from benchmarks import roofline, specs, timing
from benchmarks.run import DEFAULT_RESULTS, GenjaxRunner, machine_info

#: Ops per model in the Markdown table of the slowest ops.
TOP_OPS = 4
CATEGORIES = ("matmul", "convolution", "elementwise", "data movement", "rng", "other")
_MOVEMENT = {
    "copy",
    "copy-start",
    "copy-done",
    "transpose",
    "slice",
    "dynamic-slice",
    "dynamic-update-slice",
    "concatenate",
    "pad",
    "gather",
    "scatter",
    "broadcast",
    "reshape",
    "bitcast",
    "reverse",
    "iota",
    "tuple",
    "get-tuple-element",
}
_RNG = {"rng-bit-generator", "rng", "rng-get-and-update-state"}
#: JAX's counter-based generator (threefry) is lowered to integer elementwise fusions; their
#: metadata names the jax.random function they come from.
_RANDOM_SOURCE = re.compile(
    r'op_name="[^"]*(?:threefry|random_bits|jit\(_uniform\)|jit\(_normal\)|'
    r"jit\(_bernoulli\)|jit\(_gumbel\)|jit\(_randint\))"
)
_OTHER = {"while", "conditional", "call", "custom-call", "parameter", "constant", "after-all"}

_INSTRUCTION = re.compile(
    r"^\s*(?:ROOT\s+)?%?(?P<name>[\w.\-]+)\s*=\s*(?P<shape>\([^=]*?\)|[\w\[\],{}:\s]+?)\s+"
    r"(?P<opcode>[a-z][\w\-]*)\((?P<operands>[^)]*)\)(?P<attrs>.*)$"
)
_COMPUTATION = re.compile(r"^(?:ENTRY\s+)?%?(?P<name>[\w.\-]+)\s.*\{\s*$")
_DIMS = re.compile(r"\[([\d,]*)\]")


def _shape_text(shape: str) -> str:
    """``f32[512,14,14,64]{3,2,1,0}`` -> ``f32[512,14,14,64]`` (the layout dropped)."""
    return re.sub(r"\{[^}]*\}", "", shape).strip()


def _dims(shape: str) -> list[int]:
    match = _DIMS.search(shape)
    if not match or not match.group(1):
        return []
    return [int(d) for d in match.group(1).split(",")]


class HloIndex:
    """Instructions of a compiled module's text: opcode, shape and operands by name, and
    which computations each fusion calls."""

    def __init__(self, text: str):
        self.opcode: dict[str, str] = {}
        self.shape: dict[str, str] = {}
        self.operands: dict[str, list[str]] = {}
        self.attrs: dict[str, str] = {}
        self.computation_of: dict[str, str] = {}
        self.members: dict[str, list[str]] = collections.defaultdict(list)
        current = None
        for line in text.splitlines():
            if line.startswith("}"):
                current = None
                continue
            if current is None:
                match = _COMPUTATION.match(line)  # headers are not indented, bodies are
                if match and not line[:1].isspace():
                    current = match.group("name")
                continue
            match = _INSTRUCTION.match(line)
            if not match:
                continue
            name = match.group("name")
            self.opcode[name] = match.group("opcode")
            self.shape[name] = match.group("shape")
            self.operands[name] = [
                o.strip().lstrip("%").split(" ")[-1].lstrip("%")
                for o in match.group("operands").split(",")
                if o.strip()
            ]
            self.attrs[name] = match.group("attrs")
            self.computation_of[name] = current
            self.members[current].append(name)

    def called(self, name: str) -> list[str]:
        """Computations an instruction calls (``calls=``, ``body=``, ``to_apply=``...)."""
        attrs = self.attrs.get(name, "")
        return re.findall(r"(?:calls|body|condition|to_apply)=%?([\w.\-]+)", attrs)

    def inner(self, name: str) -> list[str]:
        """The instructions of the computations a fusion calls (recursively)."""
        out = []
        for comp in self.called(name):
            for member in self.members.get(comp, []):
                out.append(member)
                if self.opcode.get(member) == "fusion":
                    out.extend(self.inner(member))
        return out

    def flops(self, name: str) -> float:
        """FLOPs of a dot or convolution from its shapes (0 for other ops)."""
        op = self.opcode.get(name)
        out = math.prod(_dims(self.shape[name]))
        attrs = self.attrs[name]
        if op == "dot":
            lhs = _dims(self.shape.get(self.operands[name][0], ""))
            match = re.search(r"lhs_contracting_dims=\{([\d,]*)\}", attrs)
            contracted = (
                [int(d) for d in match.group(1).split(",")] if match and match.group(1) else []
            )
            return 2.0 * out * math.prod(lhs[d] for d in contracted)
        if op == "convolution":
            kernel = _dims(self.shape.get(self.operands[name][1], ""))
            labels = re.search(r"dim_labels=([\w]+)_([\w]+)->([\w]+)", attrs)
            if not labels or not kernel:
                return 0.0
            rhs = labels.group(2)
            window = math.prod(kernel[i] for i, c in enumerate(rhs) if c.isdigit())
            # The kernel's "i" dimension is the input features per group. With an input
            # dilation (a transposed convolution), only one window position in prod(dilation)
            # meets a real input value: the rest multiply inserted zeros, which are not
            # useful work (and not all backends do them), so they are not counted.
            dilation = re.search(r"lhs_dilate=([\dx]+)", attrs)
            zeros = math.prod(int(d) for d in dilation.group(1).split("x")) if dilation else 1
            return 2.0 * out * window * kernel[rhs.index("i")] / zeros
        return 0.0

    def _gemm(self, name: str) -> str | None:
        """The dot or convolution an op is or holds (the largest by FLOPs), else ``None``."""
        if self.opcode.get(name) in ("dot", "convolution"):
            return name
        inner = [m for m in self.inner(name) if self.opcode.get(m) in ("dot", "convolution")]
        return max(inner, key=self.flops) if inner else None

    def describe(self, name: str) -> str:
        """One line saying what an executed op computes: for a dot or convolution (or a fusion
        holding one), its operand and output shapes, its dimension labels and window; for
        other ops, the opcodes it fuses. Then the JAX operation it comes from (the last
        components of its ``op_name`` metadata)."""
        op = self.opcode.get(name)
        if op is None:
            return "(not in the compiled module)"
        gemm = self._gemm(name)
        if gemm is not None:
            shapes = [_shape_text(self.shape.get(o, "?")) for o in self.operands[gemm]]
            text = f"{self.opcode[gemm]} {' x '.join(shapes)} -> {_shape_text(self.shape[gemm])}"
            attrs = self.attrs[gemm]
            for key in ("dim_labels", "lhs_contracting_dims", "rhs_contracting_dims"):
                match = re.search(rf"{key}=(\{{[\d,]*\}}|[\w>-]+)", attrs)
                if match:
                    text += f" {key}={match.group(1)}"
            window = re.search(r"window=\{([^}]*)\}", attrs)
            if window:
                text += f" window={{{window.group(1)}}}"
            if gemm != name:
                text = f"{op} of {text}"
        elif op == "fusion":
            inner = sorted({self.opcode[m] for m in self.inner(name)} - {"parameter", "constant"})
            text = f"fusion of {', '.join(inner)} -> {_shape_text(self.shape[name])}"
        else:
            text = f"{op} -> {_shape_text(self.shape[name])}"
        source = re.search(r'op_name="([^"]*)"', self.attrs.get(name, ""))
        if source is None and gemm is not None:
            source = re.search(r'op_name="([^"]*)"', self.attrs.get(gemm, ""))
        if source:
            text += f" [{'/'.join(source.group(1).split('/')[-3:])}]"
        return text

    def category(self, name: str) -> tuple[str, float]:
        """(category, FLOPs of its dots/convolutions) of an executed op."""
        op = self.opcode.get(name)
        if op is None:
            return "other", 0.0
        if op in _RNG or _RANDOM_SOURCE.search(self.attrs.get(name, "")):
            return "rng", 0.0
        if op in ("dot", "convolution"):
            return ("matmul" if op == "dot" else "convolution"), self.flops(name)
        if op == "fusion":
            inner = self.inner(name)
            convs = [m for m in inner if self.opcode.get(m) == "convolution"]
            dots = [m for m in inner if self.opcode.get(m) == "dot"]
            if convs or dots:
                flops = sum(self.flops(m) for m in convs + dots)
                return ("convolution" if convs else "matmul"), flops
            inner_ops = {self.opcode.get(m) for m in inner} - {"parameter", "constant"}
            if inner_ops and inner_ops <= _MOVEMENT:
                return "data movement", 0.0
            return "elementwise", 0.0
        if op in _MOVEMENT:
            return "data movement", 0.0
        if op in _OTHER or op.startswith("all-") or op.startswith("collective"):
            return "other", 0.0
        return "elementwise", 0.0


def exclusive(events: list[tuple[int, int, str]]) -> dict[str, list[float]]:
    """``{name: [exclusive nanoseconds, executions]}`` of one thread's ``(start, end, name)``
    events: an event's duration minus that of the events nested directly inside it."""
    totals: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0])
    stack: list[list[Any]] = []  # [start, end, name, time of direct children]

    def close() -> None:
        start, end, name, children = stack.pop()
        totals[name][0] += end - start - children
        totals[name][1] += 1
        if stack:
            stack[-1][3] += end - start

    for start, end, name in sorted(events, key=lambda e: (e[0], -e[1])):
        while stack and stack[-1][1] <= start:
            close()
        stack.append([start, end, name, 0])
    while stack:
        close()
    return dict(totals)


def exclusive_times(xspace_path: str, module: str) -> dict[str, list[float]]:
    """``{op: [exclusive seconds, executions]}`` of the HLO ops of ``module`` in a trace,
    over all threads."""
    data = jax.profiler.ProfileData.from_file(xspace_path)
    totals: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0])
    for plane in data.planes:
        for line in plane.lines:
            events = []
            for ev in line.events:
                stats = dict(ev.stats)
                if "hlo_op" not in stats or ev.name.startswith("end: "):
                    continue
                if module and str(stats.get("hlo_module", "")) != module:
                    continue
                events.append((ev.start_ns, ev.start_ns + ev.duration_ns, str(stats["hlo_op"])))
            for name, (ns, count) in exclusive(events).items():
                totals[name][0] += ns * 1e-9
                totals[name][1] += count
    return dict(totals)


def profile(name: str, batch: int, steps: int, repeats: int, matmul: roofline.Matmul) -> dict:
    built = specs.build(name, batch)
    raw = built.raw_batches(steps, seed=0)
    gj = GenjaxRunner(built, {k: v[0] for k, v in raw.items()})
    gj.load(raw)
    gj.fused()  # warm-up
    text = gj.compiled_fused().as_text()
    index = HloIndex(text)
    module = text.split("HloModule ", 1)[1].split(",", 1)[0].strip()
    with tempfile.TemporaryDirectory() as tmp:
        with jax.profiler.trace(tmp):
            walls = [timing.timed(gj.fused) for _ in range(repeats)]
        paths = glob.glob(f"{tmp}/**/*.xplane.pb", recursive=True)
        if not paths:
            raise RuntimeError("jax.profiler wrote no trace")
        times = exclusive_times(paths[0], module)
    if not times:
        raise RuntimeError(f"no op events of module {module!r} in the trace")
    total_steps = steps * repeats
    per_cat: dict[str, dict[str, float]] = {c: {"s": 0.0, "flops": 0.0} for c in CATEGORIES}
    ops = []
    for op, (seconds, executions) in times.items():
        cat, flops = index.category(op)
        per_cat[cat]["s"] += seconds
        per_cat[cat]["flops"] += flops * executions
        ops.append(
            {
                "op": op,
                "category": cat,
                "what": index.describe(op),
                "ms_per_step": 1e3 * seconds / total_steps,
                "share": 0.0,
                "flops_per_s": flops * executions / seconds if flops and seconds > 0 else None,
            }
        )
    op_total = sum(v["s"] for v in per_cat.values())
    peak = matmul.flops_per_s(3)["median"]
    rows = {}
    for cat, v in per_cat.items():
        rate = v["flops"] / v["s"] if v["s"] > 0 and v["flops"] > 0 else None
        rows[cat] = {
            "share": v["s"] / op_total,
            "ms_per_step": 1e3 * v["s"] / total_steps,
            "gflop_per_step": v["flops"] / total_steps / 1e9,
            "flops_per_s": rate,
            "fraction_of_matmul_peak": rate / peak if rate else None,
        }
    for o in ops:
        o["share"] = 1e-3 * o["ms_per_step"] * total_steps / op_total
    ops.sort(key=lambda o: -o["ms_per_step"])
    wall_per_step = statistics.median(walls) / steps
    return {
        "model": name,
        "batch": batch,
        "steps": steps,
        "repeats": repeats,
        "module": module,
        "wall_ms_per_step": 1e3 * wall_per_step,
        "op_ms_per_step": 1e3 * op_total / total_steps,
        "matmul_flops_per_s": peak,
        "categories": rows,
        "top_ops": ops[:12],
    }


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"Profiled {result['date']} on {result['machine']['cpu']} "
        f"({result['machine']['cores']} cores), jax {result['machine']['jax']}: the scan-fused "
        "step's XLA ops, exclusive time from jax.profiler. Share: of the ops' summed time. "
        "GEMM rate: the category's dot/convolution FLOPs (from shapes) over its own time, and "
        "that rate as a fraction of the large matmul measured in the same run.",
        "",
        "| model | batch | ms/step (wall) | "
        + " | ".join(CATEGORIES)
        + " | matmul/conv rate (of peak) |",
        "|---|---:|---:|" + "---:|" * len(CATEGORIES) + "---|",
    ]
    for row in result["rows"]:
        cats = row["categories"]
        gemm_s = sum(cats[c]["ms_per_step"] for c in ("matmul", "convolution"))
        gemm_f = sum(cats[c]["gflop_per_step"] for c in ("matmul", "convolution"))
        rate = gemm_f / (gemm_s * 1e-3) * 1e9 if gemm_s > 0 else None
        rate_s = (
            f"{rate / 1e9:.0f} GFLOP/s ({rate / row['matmul_flops_per_s']:.0%})" if rate else "n/a"
        )
        lines.append(
            f"| {row['model']} | {row['batch']} | {row['wall_ms_per_step']:.2f} | "
            + " | ".join(f"{cats[c]['share']:.0%}" for c in CATEGORIES)
            + f" | {rate_s} |"
        )
    lines += [
        "",
        f"The {TOP_OPS} slowest ops of each step (exclusive time; GFLOP/s of a dot or "
        "convolution from its shapes; the JAX operation each comes from in brackets):",
        "",
        "| model | op | what it computes | ms/step | share | GFLOP/s |",
        "|---|---|---|---:|---:|---:|",
    ]
    for row in result["rows"]:
        for o in row["top_ops"][:TOP_OPS]:
            rate = f"{o['flops_per_s'] / 1e9:.0f}" if o.get("flops_per_s") else ""
            lines.append(
                f"| {row['model']} | `{o['op']}` | {o.get('what', '').replace('|', '/')} | "
                f"{o['ms_per_step']:.1f} | {o.get('share', 0.0):.0%} | {rate} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=None)
    parser.add_argument("--batch", type=int, nargs="+", default=[512])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--results-dir", type=Path, default=DEFAULT_RESULTS)
    args = parser.parse_args(argv)
    unknown = [m for m in args.models or [] if m not in specs.SPECS]
    if unknown:
        parser.error(f"unknown --models {unknown}; known: {sorted(specs.SPECS)}")
    if args.steps < 1 or args.repeats < 1 or any(b < 1 for b in args.batch):
        parser.error("--steps, --repeats and --batch must be >= 1")
    models = args.models or [m for m in specs.DEFAULT_RUN if m in specs.available()]
    matmul = roofline.Matmul()
    result: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine_info(),
        "rows": [],
    }
    for name in models:
        for batch in args.batch:
            print(f"profiling {name} @ {batch} ...", file=sys.stderr, flush=True)
            result["rows"].append(profile(name, batch, args.steps, args.repeats, matmul))
    args.results_dir.mkdir(parents=True, exist_ok=True)
    (args.results_dir / "profile.json").write_text(json.dumps(result, indent=2) + "\n")
    table = markdown(result)
    (args.results_dir / "profile.md").write_text(table)
    print(table)
    return result


if __name__ == "__main__":
    main()
