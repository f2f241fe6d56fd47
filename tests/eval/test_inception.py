"""genjax.eval.inception against the PyTorch reference of the FID InceptionV3.

The reference is torch-fidelity's ``FeatureExtractorInceptionV3`` (pytorch-fid's FID blocks,
``FIDInceptionA`` / ``C`` / ``E_1`` / ``E_2``, in plain torch, under the same parameter
names as pytorch-fid's weights file), on the same random weights (batch normalisation
statistics included; the ``inception_reference`` fixture of ``tests/conftest.py``) and
inputs; and ``torch.nn.functional.interpolate`` (pytorch-fid's resize) for
:func:`preprocess`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax.eval import inception

torch = pytest.importorskip("torch")


def test_pool_features_and_logits_match_the_pytorch_reference(inception_reference):
    reference = inception_reference
    images = np.random.default_rng(0).integers(0, 256, (2, 3, 299, 299), dtype=np.uint8)
    with torch.no_grad():
        pool_ref, logits_ref = (t.numpy() for t in reference(torch.from_numpy(images)))
    state = {k: v.numpy() for k, v in reference.state_dict().items()}
    variables = inception.variables_from_state_dict(state)
    # The reference resizes (299 -> 299: the identity) and maps uint8 to (x - 128) / 128.
    x = (images.transpose(0, 2, 3, 1).astype(np.float32) - 128.0) / 128.0
    pool, logits = jax.jit(lambda v, x: inception.InceptionV3().apply(v, x, logits=True))(
        variables, jnp.asarray(x)
    )
    assert pool.shape == (2, inception.FEATURE_DIM) and logits.shape == (2, inception.NUM_LOGITS)
    scale = np.max(np.abs(pool_ref))
    assert np.max(np.abs(np.asarray(pool) - pool_ref)) <= 1e-4 * scale
    assert np.max(np.abs(np.asarray(logits) - logits_ref)) <= 1e-4 * np.max(np.abs(logits_ref))
    assert np.std(pool_ref) > 1e-3 * scale  # the features are not all alike


@pytest.mark.parametrize("size", [32, 28, 512])
def test_preprocess_is_pytorch_fid_s_bilinear_resize_then_2x_minus_1(size):
    rng = np.random.default_rng(size)
    channels = 1 if size == 28 else 3
    images = rng.uniform(size=(2, size, size, channels)).astype(np.float32)
    t = torch.from_numpy(np.repeat(images, 3 // channels, axis=-1).transpose(0, 3, 1, 2))
    expected = torch.nn.functional.interpolate(
        t, size=(299, 299), mode="bilinear", align_corners=False
    )
    expected = (2 * expected - 1).numpy().transpose(0, 2, 3, 1)
    got = np.asarray(inception.preprocess(images))
    assert got.shape == (2, 299, 299, 3)
    np.testing.assert_allclose(got, expected, atol=2e-6)
    as_uint8 = (images * 255).round().astype(np.uint8)
    np.testing.assert_allclose(
        inception.preprocess(as_uint8), inception.preprocess(as_uint8 / 255.0), atol=1e-6
    )


def test_state_dict_names_and_shapes_are_checked():
    shapes = jax.eval_shape(
        inception.InceptionV3().init, jax.random.key(0), jnp.zeros((1, 75, 75, 3))
    )
    kernel = shapes["params"]["Conv2d_1a_3x3"]["conv"]["kernel"].shape
    assert kernel == (3, 3, 3, 32)
    assert shapes["params"]["Mixed_7c"]["branch3x3dbl_3b"]["conv"]["kernel"].shape == (
        3,
        1,
        384,
        384,
    )
    with pytest.raises(ValueError, match=r"unexpected entry 'foo\.weight'"):
        inception.variables_from_state_dict({"foo.weight": np.zeros(3)})
    with pytest.raises(ValueError, match="does not match InceptionV3"):
        inception.variables_from_state_dict({"fc.weight": np.zeros((1008, 2048))})
    with pytest.raises(ValueError, match="load_weights: path: no file at"):
        inception.load_weights("/nonexistent/pt_inception-2015-12-05-6726825d.pth")


def test_inception_features_checks_its_arguments():
    with pytest.raises(ValueError, match=r"images must be \[N, H, W, C\]"):
        inception.inception_features({}, np.zeros((4, 8, 8)))
    with pytest.raises(ValueError, match="batch_size must be an int >= 1"):
        inception.inception_features({}, np.zeros((4, 8, 8, 3)), batch_size=0)
    with pytest.raises(ValueError, match=r"images must be \[B, H, W, 1 or 3\]"):
        inception.preprocess(np.zeros((1, 8, 8, 2)))
