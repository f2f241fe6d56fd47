"""CPU workarounds are chosen per lowering platform: a train step exported from this CPU host
for ``cuda`` or ``tpu`` carries lax's native convolutions, one lowered for ``cpu`` the
canonical-order ones and the four-phase transposed convolution."""

import re

import jax
import jax.numpy as jnp
import pytest
from jax import export

from genjax.nn import Conv
from genjax.nn.conv import ConvTranspose2x
from genjax.train import init_state, make_update

CANONICAL = "[b, 0, 1, f]x[0, 1, i, o]->[b, 0, 1, f]"
ACCELERATORS = (["cuda"], ["tpu"])


def _convolutions(fn, platforms, *args) -> list[tuple[str, str]]:
    """``(dimension numbers, window)`` of every convolution in ``fn`` exported for
    ``platforms`` (StableHLO text)."""
    text = export.export(jax.jit(fn), platforms=platforms)(*args).mlir_module()
    return re.findall(r"stablehlo\.convolution\(.*?dim_numbers = (.*?), window = \{(.*?)\}", text)


def _grad_of(module, x):
    variables = module.init(jax.random.PRNGKey(0), x)

    def grad(v, x):
        return jax.grad(lambda v: jnp.sum(module.apply(v, x) ** 2))(v)

    return grad, variables


@pytest.mark.parametrize("platforms", ACCELERATORS, ids=lambda p: p[0])
def test_transposed_convolution_is_native_on_accelerators(platforms):
    grad, v = _grad_of(ConvTranspose2x(8, 4), jnp.zeros((2, 7, 7, 3)))
    x = jnp.zeros((2, 7, 7, 3))
    native = _convolutions(grad, platforms, v, x)
    # lax.conv_transpose: one input-dilated convolution forward, one for the kernel gradient.
    assert len(native) == 2 and all("lhs_dilate = [2, 2]" in w for _, w in native), native
    cpu = _convolutions(grad, ["cpu"], v, x)
    # The phase form: four stride-1 convolutions forward, four kernel gradients, no dilation.
    assert len(cpu) == 8 and not any("lhs_dilate" in w for _, w in cpu), cpu
    assert {d for d, _ in cpu} == {CANONICAL}


@pytest.mark.parametrize("platforms", ACCELERATORS, ids=lambda p: p[0])
def test_convolution_gradients_are_lax_on_accelerators(platforms):
    module = Conv(16, (3, 3), strides=(2, 2))
    x = jnp.zeros((4, 12, 12, 3))
    grad, v = _grad_of(module, x)

    def grad_x(v, x):  # the input gradient too: R1 differentiates with respect to the input
        return jax.grad(lambda x: jnp.sum(module.apply(v, x) ** 2))(x)

    for fn in (grad, grad_x):
        native = {d for d, _ in _convolutions(fn, platforms, v, x)}
        cpu = {d for d, _ in _convolutions(fn, ["cpu"], v, x)}
        assert cpu == {CANONICAL}
        if fn is grad:  # lax's kernel gradient contracts over the batch in its own order
            assert native - {CANONICAL}, native


@pytest.mark.slow
@pytest.mark.parametrize("name", ["vae_conv", "vqvae_conv", "gan_dcgan"])
def test_conv_models_train_steps_export_without_cpu_workarounds(name):
    from benchmarks import specs

    built = specs.build(name, 8)
    update = make_update(built.task, built.prepare)
    raw = {k: v[0] for k, v in built.raw_batches(1).items()}
    example = built.prepare(raw, jax.random.PRNGKey(0))
    state = jax.eval_shape(lambda r: init_state(built.task, r, example), jax.random.PRNGKey(0))
    raw_spec = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), raw)
    cpu = _convolutions(update, ["cpu"], state, raw_spec)
    assert cpu and {d for d, _ in cpu} == {CANONICAL}, name
    for platforms in ACCELERATORS:
        native = _convolutions(update, platforms, state, raw_spec)
        assert {d for d, _ in native} - {CANONICAL}, (name, platforms)
        # Fewer convolutions than on the CPU: the decoder's transposed convolutions are not
        # split into four phases.
        assert len(native) < len(cpu), (name, platforms, len(native), len(cpu))
