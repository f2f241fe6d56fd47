"""InceptionV3 as the FID feature network, in Flax, with the weights pytorch-fid uses.

The network is the variant of Heusel et al.'s TensorFlow FID graph (``2015-12-05``) that
pytorch-fid (``FIDInceptionA`` / ``C`` / ``E_1`` / ``E_2``) and torch-fidelity reproduce:
torchvision's InceptionV3 with, in the ``A``, ``C`` and ``E`` blocks, an average pool that
leaves the zero padding out of its mean (``count_include_pad=False``), a max pool instead of
the average pool in the last block (``Mixed_7c``), batch normalisation with ``eps = 1e-3`` in
inference mode, and a 1008-way ``fc``. :func:`inception_features` returns the 2048-d average
pool (the features of the FID, KID and precision / recall) and, optionally, the logits.

Weights. :func:`load_weights` reads the PyTorch file pytorch-fid and torch-fidelity download
(``pt_inception-2015-12-05-6726825d.pth``, torch-fidelity's
``weights-inception-2015-12-05-6726825d.pth``: the same tensors under the same names) from a
path the user gives; nothing is downloaded here. Reading a ``.pth`` file needs ``torch``;
:func:`variables_from_state_dict` converts a state dict of NumPy arrays without it.

Resizing (:func:`preprocess`), as pytorch-fid does it (``InceptionV3(resize_input=True,
normalize_input=True)``): images in ``[0, 1]`` are resized to 299 x 299 with bilinear
interpolation, half-pixel centres and no antialiasing (``F.interpolate(..., mode="bilinear",
align_corners=False)``; ``jax.image.resize(..., "linear", antialias=False)`` is the same
map), then scaled to ``[-1, 1]`` by ``2 x - 1``. clean-fid resizes with PIL's bicubic filter
and torch-fidelity with TensorFlow 1's bilinear resize, so their FIDs differ slightly from
pytorch-fid's; this module follows pytorch-fid. Grayscale images are repeated to 3 channels.

Example (shapes only; real use loads the file: ``variables = load_weights(path)``, then
``inception_features(variables, images)``)::

    >>> import jax, jax.numpy as jnp
    >>> from genjax.eval import inception
    >>> net = inception.InceptionV3()
    >>> x = jnp.zeros((1, 75, 75, 3))  # 75 x 75 is the smallest input the strides allow
    >>> variables = jax.eval_shape(net.init, jax.random.key(0), x)
    >>> jax.eval_shape(net.apply, variables, x).shape
    (1, 2048)
    >>> inception.preprocess(jnp.ones((2, 32, 32, 3))).shape
    (2, 299, 299, 3)
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "FEATURE_DIM",
    "INPUT_SIZE",
    "NUM_LOGITS",
    "WEIGHTS_FILE",
    "InceptionV3",
    "inception_features",
    "load_weights",
    "preprocess",
    "variables_from_state_dict",
]

#: The weights file of pytorch-fid (torch-fidelity's holds the same tensors).
WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
INPUT_SIZE = 299
FEATURE_DIM = 2048
NUM_LOGITS = 1008


class BasicConv(nn.Module):
    """``relu(BN(conv(x)))``: a convolution without bias, inference-mode batch normalisation
    (``eps = 1e-3``), ReLU. ``padding`` is ``(ph, pw)`` zeros on each side."""

    features: int
    kernel: tuple[int, int]
    strides: int = 1
    padding: tuple[int, int] = (0, 0)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        ph, pw = self.padding
        x = nn.Conv(
            self.features,
            self.kernel,
            strides=self.strides,
            padding=((ph, ph), (pw, pw)),
            use_bias=False,
            precision=jax.lax.Precision.HIGHEST,
            name="conv",
        )(x)
        x = nn.BatchNorm(use_running_average=True, epsilon=1e-3, name="bn")(x)
        return nn.relu(x)


def _avg_pool(x):
    return nn.avg_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)), count_include_pad=False)


def _max_pool(x):
    return nn.max_pool(x, (3, 3), strides=(2, 2))


#: Each block: (name, branches). A branch is a list of ``(name, features, kernel, strides,
#: padding)`` convolutions, optionally after a pool (``"avg"``, ``"max"``, ``"max1"``: 3x3
#: max with stride 1 and padding 1) or split in two parallel convolutions (a tuple of two).
def _a(pool_features):
    return [
        [("branch1x1", 64, (1, 1), 1, (0, 0))],
        [("branch5x5_1", 48, (1, 1), 1, (0, 0)), ("branch5x5_2", 64, (5, 5), 1, (2, 2))],
        [
            ("branch3x3dbl_1", 64, (1, 1), 1, (0, 0)),
            ("branch3x3dbl_2", 96, (3, 3), 1, (1, 1)),
            ("branch3x3dbl_3", 96, (3, 3), 1, (1, 1)),
        ],
        ["avg", ("branch_pool", pool_features, (1, 1), 1, (0, 0))],
    ]


_B = [
    [("branch3x3", 384, (3, 3), 2, (0, 0))],
    [
        ("branch3x3dbl_1", 64, (1, 1), 1, (0, 0)),
        ("branch3x3dbl_2", 96, (3, 3), 1, (1, 1)),
        ("branch3x3dbl_3", 96, (3, 3), 2, (0, 0)),
    ],
    ["max"],
]


def _c(c7):
    one_by_seven, seven_by_one = ((1, 7), (0, 3)), ((7, 1), (3, 0))
    return [
        [("branch1x1", 192, (1, 1), 1, (0, 0))],
        [
            ("branch7x7_1", c7, (1, 1), 1, (0, 0)),
            ("branch7x7_2", c7, one_by_seven[0], 1, one_by_seven[1]),
            ("branch7x7_3", 192, seven_by_one[0], 1, seven_by_one[1]),
        ],
        [
            ("branch7x7dbl_1", c7, (1, 1), 1, (0, 0)),
            ("branch7x7dbl_2", c7, seven_by_one[0], 1, seven_by_one[1]),
            ("branch7x7dbl_3", c7, one_by_seven[0], 1, one_by_seven[1]),
            ("branch7x7dbl_4", c7, seven_by_one[0], 1, seven_by_one[1]),
            ("branch7x7dbl_5", 192, one_by_seven[0], 1, one_by_seven[1]),
        ],
        ["avg", ("branch_pool", 192, (1, 1), 1, (0, 0))],
    ]


_D = [
    [("branch3x3_1", 192, (1, 1), 1, (0, 0)), ("branch3x3_2", 320, (3, 3), 2, (0, 0))],
    [
        ("branch7x7x3_1", 192, (1, 1), 1, (0, 0)),
        ("branch7x7x3_2", 192, (1, 7), 1, (0, 3)),
        ("branch7x7x3_3", 192, (7, 1), 1, (3, 0)),
        ("branch7x7x3_4", 192, (3, 3), 2, (0, 0)),
    ],
    ["max"],
]


def _e(pool):
    def split(prefix):
        return (
            (f"{prefix}a", 384, (1, 3), 1, (0, 1)),
            (f"{prefix}b", 384, (3, 1), 1, (1, 0)),
        )

    return [
        [("branch1x1", 320, (1, 1), 1, (0, 0))],
        [("branch3x3_1", 384, (1, 1), 1, (0, 0)), split("branch3x3_2")],
        [
            ("branch3x3dbl_1", 448, (1, 1), 1, (0, 0)),
            ("branch3x3dbl_2", 384, (3, 3), 1, (1, 1)),
            split("branch3x3dbl_3"),
        ],
        [pool, ("branch_pool", 192, (1, 1), 1, (0, 0))],
    ]


_BLOCKS = (
    ("Mixed_5b", _a(32)),
    ("Mixed_5c", _a(64)),
    ("Mixed_5d", _a(64)),
    ("Mixed_6a", _B),
    ("Mixed_6b", _c(128)),
    ("Mixed_6c", _c(160)),
    ("Mixed_6d", _c(160)),
    ("Mixed_6e", _c(192)),
    ("Mixed_7a", _D),
    ("Mixed_7b", _e("avg")),
    ("Mixed_7c", _e("max1")),  # pytorch-fid's FIDInceptionE_2: a max pool
)

_POOLS = {
    "avg": _avg_pool,
    "max": _max_pool,
    "max1": lambda x: nn.max_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1))),
}

#: The stem: (name, features, kernel, strides, padding), "max" a 3x3 stride-2 max pool.
_STEM = (
    ("Conv2d_1a_3x3", 32, (3, 3), 2, (0, 0)),
    ("Conv2d_2a_3x3", 32, (3, 3), 1, (0, 0)),
    ("Conv2d_2b_3x3", 64, (3, 3), 1, (1, 1)),
    "max",
    ("Conv2d_3b_1x1", 80, (1, 1), 1, (0, 0)),
    ("Conv2d_4a_3x3", 192, (3, 3), 1, (0, 0)),
    "max",
)


class _Block(nn.Module):
    branches: Any

    @nn.compact
    def __call__(self, x):
        outputs = []
        for branch in self.branches:
            h = x
            for step in branch:
                if isinstance(step, str):
                    h = _POOLS[step](h)
                elif isinstance(step[0], tuple):  # two parallel convolutions, concatenated
                    h = jnp.concatenate([BasicConv(*s[1:], name=s[0])(h) for s in step], -1)
                else:
                    h = BasicConv(*step[1:], name=step[0])(h)
            outputs.append(h)
        return jnp.concatenate(outputs, axis=-1)


class InceptionV3(nn.Module):
    """The FID InceptionV3: ``x [B, H, W, 3]`` (already resized and in ``[-1, 1]``, see
    :func:`preprocess`) -> the 2048-d average pool ``[B, 2048]``, or ``(pool, logits [B,
    1008])`` with ``logits=True``. ``H, W >= 75``. Variables: ``params`` and
    ``batch_stats`` (the batch normalisations' running statistics)."""

    @nn.compact
    def __call__(self, x: jax.Array, logits: bool = False):
        for step in _STEM:
            x = _max_pool(x) if step == "max" else BasicConv(*step[1:], name=step[0])(x)
        for name, branches in _BLOCKS:
            x = _Block(branches, name=name)(x)
        pool = jnp.mean(x, axis=(1, 2))
        # fc is always built, so that the variables hold it; unused outputs are pruned by jit.
        out = nn.Dense(NUM_LOGITS, precision=jax.lax.Precision.HIGHEST, name="fc")(pool)
        return (pool, out) if logits else pool


def preprocess(images: Any) -> jax.Array:
    """``[B, H, W, C]`` images in ``[0, 1]`` (``C`` = 1 or 3; uint8 images are divided by
    255) -> ``[B, 299, 299, 3]`` in ``[-1, 1]``: bilinear resize with half-pixel centres and
    no antialiasing, then ``2 x - 1`` (pytorch-fid's ``resize_input`` and
    ``normalize_input``; see the module docstring)."""
    x = jnp.asarray(images)
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise ValueError(f"preprocess: images must be [B, H, W, 1 or 3], got shape {x.shape}")
    x = x.astype(jnp.float32) / 255.0 if x.dtype == jnp.uint8 else x.astype(jnp.float32)
    if x.shape[-1] == 1:
        x = jnp.repeat(x, 3, axis=-1)
    size = (x.shape[0], INPUT_SIZE, INPUT_SIZE, 3)
    return 2.0 * jax.image.resize(x, size, "linear", antialias=False) - 1.0


@functools.partial(jax.jit, static_argnums=2)
def _features_jit(variables, images, logits):
    return InceptionV3().apply(variables, preprocess(images), logits)


def inception_features(
    variables: Mapping[str, Any], images: Any, *, batch_size: int = 100, logits: bool = False
):
    """The pool features ``[N, 2048]`` (and with ``logits=True`` the logits ``[N, 1008]``) of
    ``images [N, H, W, C]`` in ``[0, 1]`` (or uint8), :func:`preprocess`-ed, ``batch_size``
    at a time; NumPy float32 arrays."""
    images = np.asarray(images)
    if images.ndim != 4 or len(images) == 0:
        raise ValueError(f"inception_features: images must be [N, H, W, C], got {images.shape}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"inception_features: batch_size must be an int >= 1, got {batch_size}")
    parts = [
        jax.device_get(_features_jit(variables, images[i : i + batch_size], logits))
        for i in range(0, len(images), batch_size)
    ]
    if logits:
        return tuple(np.concatenate([p[j] for p in parts]) for j in range(2))
    return np.concatenate(parts)


def _set(tree: dict, path: list[str], value) -> None:
    for key in path[:-1]:
        tree = tree.setdefault(key, {})
    tree[path[-1]] = value


def variables_from_state_dict(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """Flax variables of :class:`InceptionV3` from pytorch-fid's state dict (names such as
    ``Mixed_5b.branch1x1.conv.weight``, values arrays): convolution kernels ``[O, I, kh, kw]``
    -> ``[kh, kw, I, O]``, ``bn.weight`` / ``bias`` -> ``scale`` / ``bias``, ``running_mean`` /
    ``running_var`` -> ``batch_stats`` ``mean`` / ``var``, ``fc.weight`` transposed;
    ``num_batches_tracked`` is dropped. The tree is checked against the network's own."""
    params: dict = {}
    stats: dict = {}
    for name, value in state_dict.items():
        value = np.asarray(value)
        *path, leaf = name.split(".")
        if leaf == "num_batches_tracked":
            continue
        if path[-1] == "conv" and leaf == "weight":
            _set(params, [*path, "kernel"], value.transpose(2, 3, 1, 0))
        elif path[-1] == "bn" and leaf in ("weight", "bias"):
            _set(params, [*path, "scale" if leaf == "weight" else "bias"], value)
        elif path[-1] == "bn" and leaf in ("running_mean", "running_var"):
            _set(stats, [*path, "mean" if leaf == "running_mean" else "var"], value)
        elif path == ["fc"]:
            _set(params, ["fc", "kernel" if leaf == "weight" else "bias"], value.T)
        else:
            raise ValueError(f"variables_from_state_dict: unexpected entry {name!r}")
    variables = {"params": params, "batch_stats": stats}
    expected = jax.eval_shape(
        InceptionV3().init, jax.random.key(0), jnp.zeros((1, 75, 75, 3), jnp.float32)
    )
    got = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, jnp.float32), variables)
    want = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, jnp.float32), dict(expected))
    if got != want:
        raise ValueError(
            "variables_from_state_dict: the state dict does not match InceptionV3 "
            "(names or shapes differ from pytorch-fid's FID InceptionV3)"
        )
    return jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), variables)


def load_weights(path: str | Path) -> dict[str, Any]:
    """:class:`InceptionV3` variables from pytorch-fid's weights file
    (:data:`WEIGHTS_FILE`) at ``path``; reading it needs ``torch``."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"load_weights: path: no file at {str(path)!r} (expected {WEIGHTS_FILE})")
    try:
        import torch
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ValueError(
            "load_weights: reading a .pth file needs torch (pip install torch)"
        ) from err
    state = torch.load(path, map_location="cpu", weights_only=True)
    return variables_from_state_dict({k: v.numpy() for k, v in state.items()})
