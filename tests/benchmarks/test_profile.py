"""benchmarks.profile: exclusive times of nested events, the HLO classification and FLOP
counts against hand-counted cases, and one tiny end-to-end profile."""

import math
import os

import pytest

from benchmarks import profile, roofline

HLO = """HloModule jit_run, is_scheduled=true

%fused_dot (p0: f32[8,3], p1: f32[3,5]) -> f32[8,5] {
  %p0 = f32[8,3]{1,0} parameter(0)
  %p1 = f32[3,5]{1,0} parameter(1)
  %inner_dot = f32[8,5]{1,0} dot(%p0, %p1), lhs_contracting_dims={1}, rhs_contracting_dims={0}
  ROOT %t = f32[8,5]{1,0} tanh(%inner_dot)
}

%fused_tanh (p0.1: f32[8,5]) -> f32[8,5] {
  %p0.1 = f32[8,5]{1,0} parameter(0)
  ROOT %t.1 = f32[8,5]{1,0} tanh(%p0.1)
}

%fused_move (p0.2: f32[8,5]) -> f32[5,8] {
  %p0.2 = f32[8,5]{1,0} parameter(0)
  ROOT %tr = f32[5,8]{1,0} transpose(%p0.2), dimensions={1,0}
}

%body (arg: (s32[], f32[8,3])) -> (s32[], f32[8,3]) {
  %arg = (s32[], f32[8,3]{1,0}) parameter(0)
  %x = f32[8,3]{1,0} get-tuple-element(%arg), index=1
  %w = f32[3,5]{1,0} constant({...})
  %d = f32[8,5]{1,0} dot(%x, %w), lhs_contracting_dims={1}, rhs_contracting_dims={0}
  %img = f32[1,7,7,2]{3,2,1,0} constant({...})
  %k = f32[3,3,2,4]{3,2,1,0} constant({...})
  %conv = f32[1,5,5,4]{3,2,1,0} convolution(%img, %k), window={size=3x3}, dim_labels=b01f_01io->b01f
  %tconv = f32[1,13,13,4]{3,2,1,0} convolution(%img, %k), @TCONV@
  %ynn_fusion = f32[8,5]{1,0} fusion(%x, %w), kind=kCustom, calls=%fused_dot
  %tanh_fusion = f32[8,5]{1,0} fusion(%d), kind=kLoop, calls=%fused_tanh
  %move_fusion = f32[5,8]{1,0} fusion(%d), kind=kLoop, calls=%fused_move
  %bits_fusion = u32[40]{0} fusion(%x), kind=kLoop, calls=%fused_tanh, @RANDOM@
  %copy.1 = f32[8,3]{1,0} copy(%x)
  ROOT %out = (s32[], f32[8,3]{1,0}) tuple(%x, %copy.1)
}

ENTRY %main (a: (s32[], f32[8,3])) -> (s32[], f32[8,3]) {
  %a = (s32[], f32[8,3]{1,0}) parameter(0)
  ROOT %loop = (s32[], f32[8,3]{1,0}) while(%a), condition=%cond, body=%body
}
"""
HLO = HLO.replace(
    "@RANDOM@", 'metadata={op_name="jit(run)/while/body/jit(_uniform)/threefry2x32"}'
).replace("@TCONV@", "window={size=3x3 pad=1_1x1_1 lhs_dilate=2x2}, dim_labels=b01f_01io->b01f")


def test_exclusive_time_subtracts_directly_nested_events():
    events = [
        (0, 100, "while"),
        (10, 30, "dot"),
        (40, 60, "fusion"),
        (45, 50, "inner"),
        (70, 80, "dot"),
        (200, 210, "dot"),
    ]
    got = profile.exclusive(events)
    assert got == {
        "while": [100 - 20 - 20 - 10, 1],
        "dot": [20 + 10 + 10, 3],
        "fusion": [20 - 5, 1],
        "inner": [5, 1],
    }


def test_hlo_index_classifies_ops_and_counts_flops_by_hand():
    index = profile.HloIndex(HLO)
    assert index.category("d") == ("matmul", 2 * 8 * 5 * 3)
    # A fusion holding a dot is a matmul with the dot's FLOPs.
    assert index.category("ynn_fusion") == ("matmul", 2 * 8 * 5 * 3)
    # convolution: 2 x output elements x window x input features
    assert index.category("conv") == ("convolution", 2 * (5 * 5 * 4) * 9 * 2)
    # input-dilated by 2x2: one window position in four meets a real input value
    assert index.category("tconv") == ("convolution", 2 * (13 * 13 * 4) * 9 * 2 / 4)
    assert index.category("tanh_fusion") == ("elementwise", 0.0)
    assert index.category("move_fusion") == ("data movement", 0.0)
    assert index.category("copy.1") == ("data movement", 0.0)
    assert index.category("bits_fusion") == ("rng", 0.0)
    assert index.category("loop") == ("other", 0.0)
    assert index.category("not-an-op") == ("other", 0.0)


def test_hlo_index_describes_what_an_op_computes():
    index = profile.HloIndex(HLO)
    assert index.describe("conv") == (
        "convolution f32[1,7,7,2] x f32[3,3,2,4] -> f32[1,5,5,4] dim_labels=b01f_01io->b01f "
        "window={size=3x3}"
    )
    # A fusion is described by the dot it holds; the source is the op_name's last components.
    assert index.describe("ynn_fusion") == (
        "fusion of dot f32[8,3] x f32[3,5] -> f32[8,5] lhs_contracting_dims={1} "
        "rhs_contracting_dims={0}"
    )
    assert index.describe("move_fusion") == "fusion of transpose -> f32[5,8]"
    assert index.describe("bits_fusion") == (
        "fusion of tanh -> u32[40] [body/jit(_uniform)/threefry2x32]"
    )
    assert index.describe("not-an-op") == "(not in the compiled module)"


@pytest.mark.slow
def test_profile_of_a_tiny_vae_accounts_for_the_step(tmp_path):
    row = profile.profile("vae_mlp", 8, steps=3, repeats=2, matmul=roofline.Matmul(128))
    cats = row["categories"]
    assert set(cats) == set(profile.CATEGORIES)
    assert math.isclose(sum(c["share"] for c in cats.values()), 1.0, rel_tol=1e-9)
    # The MLP VAE's step is dense layers, the Bernoulli likelihood and Adam, and dynamic
    # binarisation draws random bits: each kind must show up.
    for kind in ("matmul", "elementwise", "rng"):
        assert cats[kind]["ms_per_step"] > 0, kind
    # FLOPs of the dense layers, from the shapes, per step: forward (1x), and backward (2x,
    # less the input layer's input gradient), batch 8.
    layers = [(784, 200), (200, 200), (200, 100), (50, 200), (200, 200), (200, 784)]
    forward = sum(2 * 8 * a * b for a, b in layers)
    no_input_grad = 2 * 8 * 784 * 200
    expected = 3 * forward - no_input_grad
    assert cats["matmul"]["gflop_per_step"] * 1e9 == pytest.approx(expected, rel=0.02)
    # The ops' summed time accounts for the step: most of the wall time, and no more than the
    # cores could run at once (XLA:CPU runs independent ops concurrently, one per core: a CI
    # run on 2 cores measured 2.02x the wall time). The wall time also holds dispatch and,
    # on a busy machine, time the process waited for a core (a CI run under load measured
    # 0.49 of it), so the lower bound is loose; an op kind left out of the accounting would
    # fall far below it.
    top = row["top_ops"]
    assert top == sorted(top, key=lambda o: -o["ms_per_step"])
    assert sum(o["share"] for o in top) <= 1.0 + 1e-9
    assert any(o["what"].startswith(("dot", "fusion of dot")) for o in top), top
    ratio = row["op_ms_per_step"] / row["wall_ms_per_step"]
    cores = len(os.sched_getaffinity(0))
    assert 0.25 <= ratio <= 1.25 * cores, (row["op_ms_per_step"], row["wall_ms_per_step"], cores)
