"""genjax.nn.conv_general_dilated: lax.conv_general_dilated's values and derivatives (the
oracle: lax's own convolution and JAX's transpose rules, in float64), and convolutions XLA:CPU
can run with its Eigen kernel inside a scan (canonical dimensions, no window reversal)."""

import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from genjax import nn as gnn

CASES = [
    # dimension numbers, strides, padding, lhs dilation, rhs dilation, kernel size
    (("NHWC", "HWIO", "NHWC"), (1, 1), "SAME", (1, 1), (1, 1), 3),
    (("NHWC", "HWIO", "NHWC"), (2, 2), "SAME", (1, 1), (1, 1), 4),
    (("NHWC", "HWIO", "NHWC"), (2, 3), "VALID", (1, 1), (1, 1), 3),
    (("NHWC", "HWIO", "NHWC"), (1, 2), ((1, 2), (0, -1)), (2, 1), (1, 2), 3),
    (("NCHW", "OIHW", "NCHW"), (2, 2), "SAME", (1, 1), (2, 1), 3),
    (("NHWC", "OIHW", "NCHW"), (1, 1), ((2, 0), (1, 1)), (2, 2), (1, 1), 4),
    # A kernel larger than the input: computed with the operands exchanged (see below).
    (("NHWC", "HWIO", "NHWC"), (1, 1), ((4, 4), (4, 4)), (2, 1), (1, 1), 9),
]


def _operands(dn, k, seed):
    gen = np.random.default_rng(seed)
    x = gen.normal(size=(2, 7, 9, 3) if dn[0] == "NHWC" else (2, 3, 7, 9))
    w = gen.normal(size=(k, k, 3, 5) if dn[1] == "HWIO" else (5, 3, k, k))
    return jnp.asarray(x), jnp.asarray(w)


@pytest.mark.parametrize(("dn", "strides", "padding", "lhs_d", "rhs_d", "k"), CASES)
def test_values_gradients_and_second_order_match_lax(dn, strides, padding, lhs_d, rhs_d, k):
    with jax.enable_x64(True):
        x, w = _operands(dn, k, seed=k)

        def ref(x, w):
            return lax.conv_general_dilated(x, w, strides, padding, lhs_d, rhs_d, dn)

        def ours(x, w):
            return gnn.conv_general_dilated(x, w, strides, padding, lhs_d, rhs_d, dn)

        y = ref(x, w)
        np.testing.assert_allclose(ours(x, w), y, rtol=1e-12, atol=1e-12)
        ct = jnp.asarray(np.random.default_rng(1).normal(size=y.shape))
        for a, b in zip(jax.vjp(ours, x, w)[1](ct), jax.vjp(ref, x, w)[1](ct), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-11)

        def r1(conv):  # an R1-style penalty: the weights' gradient of |d<conv, ct>/dx|^2
            def penalty(w):
                gx = jax.grad(lambda x: jnp.sum(conv(x, w) * ct))(x)
                return jnp.sum(gx**2)

            return jax.grad(penalty)(w)

        np.testing.assert_allclose(r1(ours), r1(ref), rtol=1e-10, atol=1e-10)


def test_third_order_matches_lax():
    dn = ("NHWC", "HWIO", "NHWC")
    with jax.enable_x64(True):
        x, w = _operands(dn, 3, seed=3)

        def third(conv):
            def f(w):
                return jnp.sum(jnp.tanh(conv(x, w, (2, 2), "SAME", dimension_numbers=dn)))

            def g(w):
                return jnp.sum(jax.grad(f)(w) ** 2)

            return jax.grad(lambda w: jnp.sum(jax.grad(g)(w) ** 2))(w)

        np.testing.assert_allclose(
            third(gnn.conv_general_dilated), third(lax.conv_general_dilated), rtol=1e-9
        )


def test_a_kernel_larger_than_the_input_takes_the_exchanged_path():
    """The last case is one XLA's operand swapper would rewrite (with a window reversal
    Eigen cannot run); the module computes it exchanged itself, and the values test above
    compares that path with lax."""
    from genjax.nn import convolution

    dn, strides, padding, lhs_d, rhs_d, k = CASES[-1]
    x, w = _operands(dn, k, seed=0)
    lhs_c, rhs_c = x, w  # NHWC / HWIO are the canonical order
    assert convolution._xla_would_swap(lhs_c, rhs_c, strides, padding, lhs_d, rhs_d)
    assert not convolution._xla_would_swap(lhs_c, rhs_c[:3, :3], strides, padding, lhs_d, rhs_d)


def test_string_padding_with_input_dilation_is_refused_as_lax_refuses_it():
    x, w = _operands(("NHWC", "HWIO", "NHWC"), 3, seed=0)
    with pytest.raises(ValueError, match="String padding"):
        gnn.conv_general_dilated(x, w, (1, 1), "SAME", (2, 2), None, ("NHWC", "HWIO", "NHWC"))


def test_float32_and_bfloat16_inputs_and_preferred_type():
    x, w = (a.astype(jnp.float32) for a in _operands(("NHWC", "HWIO", "NHWC"), 3, seed=0))
    dn = ("NHWC", "HWIO", "NHWC")
    for dtype, tol in ((jnp.float32, 1e-5), (jnp.bfloat16, 5e-2)):
        xs, ws = x.astype(dtype), w.astype(dtype)
        ours = gnn.conv_general_dilated(xs, ws, (2, 2), "SAME", dimension_numbers=dn)
        ref = lax.conv_general_dilated(xs, ws, (2, 2), "SAME", dimension_numbers=dn)
        assert ours.dtype == ref.dtype == dtype
        np.testing.assert_allclose(
            np.asarray(ours, np.float32), np.asarray(ref, np.float32), rtol=tol, atol=tol
        )
        g = jax.grad(
            lambda w, xs=xs: jnp.sum(
                gnn.conv_general_dilated(xs, w, (2, 2), "SAME", dimension_numbers=dn)
            )
        )(ws)
        assert g.dtype == dtype
    mixed = gnn.conv_general_dilated(
        x.astype(jnp.bfloat16),
        w.astype(jnp.bfloat16),
        (1, 1),
        "SAME",
        dimension_numbers=dn,
        preferred_element_type=jnp.float32,
    )
    assert mixed.dtype == jnp.float32


def test_conv_module_is_flax_conv_with_the_same_parameters():
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 8, 8, 3))
    ref = nn.Conv(6, (3, 3), strides=(2, 2), padding="SAME")
    ours = gnn.Conv(6, (3, 3), strides=(2, 2), padding="SAME")
    params = ref.init(jax.random.PRNGKey(1), x)
    assert jax.tree.structure(ours.init(jax.random.PRNGKey(1), x)) == jax.tree.structure(params)
    np.testing.assert_allclose(ours.apply(params, x), ref.apply(params, x), rtol=1e-5, atol=1e-5)


_CANONICAL = "b01f_01io->b01f"


def _scan_convolutions(conv, second_order: bool):
    """dim_labels and window of every convolution XLA:CPU compiles for a 3-step scan of
    gradient steps through a stride-2 convolution (with an R1-style penalty if asked)."""
    xs = jnp.ones((3, 8, 28, 28, 4))
    w = jnp.ones((4, 4, 4, 8)) * 0.01
    dn = ("NHWC", "HWIO", "NHWC")

    def loss(w, x):
        value = jnp.sum(conv(x, w, (2, 2), "SAME", dimension_numbers=dn) ** 2)
        if second_order:
            gx = jax.grad(lambda x: jnp.sum(conv(x, w, (2, 2), "SAME", dimension_numbers=dn)))(x)
            value = value + jnp.sum(gx**2)
        return value

    def run(w, xs):
        return lax.scan(lambda w, x: (w - 1e-3 * jax.grad(loss)(w, x), None), w, xs)[0]

    text = jax.jit(run).lower(w, xs).compile().as_text()
    lines = [line for line in text.splitlines() if " convolution(" in line]
    assert lines, "no convolution in the compiled scan"
    return lines


@pytest.mark.parametrize("second_order", [False, True], ids=["gradient", "r1-penalty"])
def test_every_convolution_in_a_scan_is_canonical(second_order):
    """The property the speed rests on: inside the while loop every convolution reaches
    XLA:CPU in canonical order and without a window reversal, so Eigen runs it. (With plain
    ``lax.conv_general_dilated`` the kernel gradient arrives as ``f01b_i01o->01bf`` and runs
    ~35x slower on this jax/XLA: the premise, also checked here.)"""
    ours = _scan_convolutions(gnn.conv_general_dilated, second_order)
    for line in ours:
        labels = re.search(r"dim_labels=([^,\s]+)", line).group(1)
        assert labels == _CANONICAL, line
        assert "rhs_reversal" not in line, line
    plain = _scan_convolutions(lax.conv_general_dilated, second_order)
    assert any(_CANONICAL not in line for line in plain), (
        "lax's convolutions are all canonical inside a scan now: the workaround in "
        "genjax.nn.convolution may no longer be needed"
    )


def test_grouped_convolutions_fall_back_to_lax():
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 6, 6, 4)), jnp.float32)
    w = jnp.asarray(np.random.default_rng(1).normal(size=(3, 3, 2, 6)), jnp.float32)
    dn = ("NHWC", "HWIO", "NHWC")
    args = ((1, 1), "SAME", None, None, dn, 2)
    np.testing.assert_allclose(
        gnn.conv_general_dilated(x, w, *args), lax.conv_general_dilated(x, w, *args), rtol=1e-6
    )
