"""genjax.nn's stride-2 transposed convolution against flax's own ``nn.ConvTranspose``."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax.nn import ConvDecoder
from genjax.nn.conv import ConvTranspose2x


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
def test_phase_decomposition_equals_flax_conv_transpose(k, shape=(3, 5)):
    """Same parameters, same outputs and same gradients as ``nn.ConvTranspose(stride 2,
    "SAME")`` (the oracle: flax's input-dilated ``lax.conv_transpose``), in float64."""
    with jax.enable_x64(True):
        x = jax.random.normal(jax.random.PRNGKey(k), (2, *shape, 3), jnp.float64)
        ref = nn.ConvTranspose(4, (k, k), strides=(2, 2), padding="SAME", param_dtype=jnp.float64)
        mine = ConvTranspose2x(4, k)
        params = ref.init(jax.random.PRNGKey(0), x)
        # Random values everywhere (the bias too), same tree for both modules.
        leaves, tree = jax.tree.flatten(params)
        keys = jax.random.split(jax.random.PRNGKey(1), len(leaves))
        params = tree.unflatten(
            [jax.random.normal(kk, a.shape, a.dtype) for kk, a in zip(keys, leaves, strict=True)]
        )
        y_ref, y = ref.apply(params, x), mine.apply(params, x)
        assert y.shape == y_ref.shape == (2, 2 * shape[0], 2 * shape[1], 4)
        np.testing.assert_allclose(y, y_ref, rtol=0, atol=1e-12)

        def loss(module):
            return lambda p, x: jnp.sum(jnp.sin(module.apply(p, x)))

        g_ref = jax.grad(loss(ref), argnums=(0, 1))(params, x)
        g = jax.grad(loss(mine), argnums=(0, 1))(params, x)
        for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(g_ref), strict=True):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-11)


def test_decoder_parameters_keep_the_flax_layout_and_initialisation():
    """``ConvDecoder`` stages keep ``deconv_i/{kernel [k, k, C_in, C_out], bias}`` and the
    values ``nn.ConvTranspose`` would initialise (checkpoints and twins map one to one)."""
    dec = ConvDecoder(image_shape=(8, 8, 1), features=(16, 8))
    z = jnp.zeros((2, 5))
    params = dec.init(jax.random.PRNGKey(0), z)["params"]
    assert params["deconv_0"]["kernel"].shape == (4, 4, 16, 16)
    assert params["deconv_1"]["kernel"].shape == (4, 4, 16, 8)
    x = jnp.zeros((2, 2, 2, 16))
    ref = nn.ConvTranspose(16, (4, 4), strides=(2, 2), padding="SAME")
    mine = ConvTranspose2x(16, 4)
    p_ref = ref.init(jax.random.PRNGKey(7), x)
    p = mine.init(jax.random.PRNGKey(7), x)
    np.testing.assert_array_equal(p["params"]["kernel"], p_ref["params"]["kernel"])
    np.testing.assert_array_equal(p["params"]["bias"], p_ref["params"]["bias"])
