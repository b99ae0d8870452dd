"""Small JAX models on scikit-learn's bundled data, whose gradients :mod:`.capture` records.

Every model is registered once in :data:`MODELS` with what a training loop needs: parameter
initialisation (a pytree of named layers, ``{"dense1": {"w": ..., "b": ...}, ...}``), the
loss and the accuracy, the dataset and its train/test split (fixed seed), and a minibatch
sampler. The data ship inside scikit-learn (no download; the optional extra ``data``).

=========================  =====================================================  =======
name                       model                                                   params
=========================  =====================================================  =======
``logistic-digits``        softmax regression 64 -> 10 on the 8x8 digits           650
``mlp-digits``             64 -> 64 (ReLU) -> 10                                   4810
``cnn-digits``             conv 3x3x8 -> conv 3x3x16 (stride 2) -> dense 10        3818
``logistic-breast-cancer`` logistic regression 30 -> 1 on the breast-cancer data   31
=========================  =====================================================  =======

Conventions: float32 parameters and data (a capture is then the same with or without
``jax_enable_x64``); labels int32; losses are means over the batch (softmax cross-entropy,
or sigmoid binary cross-entropy for the binary task). Weights are drawn ``N(0, g/fan_in)``
with ``g = 2`` before a ReLU (He et al., arXiv 1502.01852) and ``g = 1`` otherwise; biases
start at 0. Digits pixels (0..16) are divided by 16; breast-cancer features are
standardized with the training split's mean and standard deviation (no test leakage).
Convolutions use ``jax.lax.conv_general_dilated`` in NHWC/HWIO layout (no flax).

Adding a model is one :func:`register_model` call with an ``init(key)`` and an
``apply(params, x)`` returning logits.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ratedist._registry import Registry
from ratedist._validation import check_int

#: Seed of every train/test split (fixed: the split is part of the model, not of a run).
SPLIT_SEED = 0
#: Fraction of the examples held out for testing.
TEST_FRACTION = 0.2
DTYPE = jnp.float32


class Split(NamedTuple):
    """A train/test split: float32 features ``(n, d)``, int32 labels ``(n,)``."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


# ------------------------------------------------------------------------------ datasets
def _sklearn(loader_name: str) -> Callable[..., Any]:
    try:
        from sklearn import datasets
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            f"ratedist.gradients needs scikit-learn for its data ({loader_name}): "
            "pip install 'ratedist[data]'"
        ) from exc
    return getattr(datasets, loader_name)


def _split_indices(n: int) -> tuple[np.ndarray, np.ndarray]:
    perm = np.random.default_rng(SPLIT_SEED).permutation(n)
    n_test = round(TEST_FRACTION * n)
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


def _digits() -> Split:
    x, y = _sklearn("load_digits")(return_X_y=True)
    x = np.asarray(x, np.float64) / 16.0
    tr, te = _split_indices(x.shape[0])
    y = np.asarray(y, np.int32)
    return Split(x[tr].astype(np.float32), y[tr], x[te].astype(np.float32), y[te])


def _breast_cancer() -> Split:
    x, y = _sklearn("load_breast_cancer")(return_X_y=True)
    x = np.asarray(x, np.float64)
    tr, te = _split_indices(x.shape[0])
    mean, sd = x[tr].mean(axis=0), x[tr].std(axis=0)
    z = (x - mean) / sd
    y = np.asarray(y, np.int32)
    return Split(z[tr].astype(np.float32), y[tr], z[te].astype(np.float32), y[te])


#: dataset name -> loader (the loaders are cached: the arrays are read-only).
DATASETS: Registry[Callable[[], Split]] = Registry("dataset")
DATASETS.add("digits", _digits, n_classes=10, n_features=64)
DATASETS.add("breast-cancer", _breast_cancer, n_classes=2, n_features=30)


@functools.cache
def load_split(dataset: str) -> Split:
    """The train/test split of a registered dataset (read-only arrays, cached).

    Raises:
        ValueError: unknown ``dataset`` (the message lists the known ones).
        ImportError: scikit-learn is missing.
    """
    split = DATASETS.get(dataset)()
    for arr in split:
        arr.setflags(write=False)
    return split


# ------------------------------------------------------------------------------ layers
def _dense(key: Any, n_in: int, n_out: int, gain: float) -> dict[str, Any]:
    w = jax.random.normal(key, (n_in, n_out), DTYPE) * np.float32(np.sqrt(gain / n_in))
    return {"w": w, "b": jnp.zeros((n_out,), DTYPE)}


def _conv(key: Any, size: int, c_in: int, c_out: int, gain: float) -> dict[str, Any]:
    fan_in = size * size * c_in
    w = jax.random.normal(key, (size, size, c_in, c_out), DTYPE) * np.float32(
        np.sqrt(gain / fan_in)
    )
    return {"w": w, "b": jnp.zeros((c_out,), DTYPE)}


def _apply_dense(layer: Mapping[str, Any], x: Any) -> Any:
    return x @ layer["w"] + layer["b"][None, :]  # explicit ranks: strict rank promotion


def _apply_conv(layer: Mapping[str, Any], x: Any, stride: int) -> Any:
    y = jax.lax.conv_general_dilated(
        x,
        layer["w"],
        window_strides=(stride, stride),
        padding="SAME",
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )
    return y + layer["b"][None, None, None, :]


# ------------------------------------------------------------------------------ losses
def _softmax_loss(logits: Any, y: Any) -> Any:
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y))


def _softmax_accuracy(logits: Any, y: Any) -> Any:
    return jnp.mean(jnp.argmax(logits, axis=-1) == y)


def _sigmoid_loss(logits: Any, y: Any) -> Any:
    return jnp.mean(optax.sigmoid_binary_cross_entropy(logits[:, 0], y.astype(logits.dtype)))


def _sigmoid_accuracy(logits: Any, y: Any) -> Any:
    return jnp.mean((logits[:, 0] > 0) == (y == 1))


#: output head -> (loss(logits, y), accuracy(logits, y)).
HEADS: Registry[tuple[Callable[..., Any], Callable[..., Any]]] = Registry("output head")
HEADS.add("softmax", (_softmax_loss, _softmax_accuracy))
HEADS.add("sigmoid", (_sigmoid_loss, _sigmoid_accuracy))


# ------------------------------------------------------------------------------ models
@dataclasses.dataclass(frozen=True)
class GradientModel:
    """A registered model: pure functions of a parameter pytree, and its data.

    Attributes:
        name: registry name.
        dataset: name in :data:`DATASETS`.
        head: name in :data:`HEADS` (how logits become a loss and an accuracy).
        init_fn: ``key -> params`` (a dict of layers, each a dict of arrays).
        apply_fn: ``(params, x) -> logits`` for a batch ``x`` of shape ``(B, n_features)``.
        description: one line for listings.
    """

    name: str
    dataset: str
    head: str
    init_fn: Callable[[Any], dict[str, dict[str, Any]]]
    apply_fn: Callable[[Any, Any], Any]
    description: str

    def init(self, key: Any) -> dict[str, dict[str, Any]]:
        """Initial parameters (float32) from a JAX key."""
        return self.init_fn(key)

    def data(self) -> Split:
        """The model's train/test split (fixed seed :data:`SPLIT_SEED`)."""
        return load_split(self.dataset)

    def loss(self, params: Any, x: Any, y: Any) -> Any:
        """Mean loss over the batch ``(x, y)``."""
        return HEADS.get(self.head)[0](self.apply_fn(params, x), y)

    def accuracy(self, params: Any, x: Any, y: Any) -> Any:
        """Fraction of the batch classified correctly."""
        return HEADS.get(self.head)[1](self.apply_fn(params, x), y)


def minibatch_indices(key: Any, n: int, batch_size: int) -> Any:
    """``batch_size`` distinct example indices out of ``n``, uniformly (jit/vmap-safe).

    Raises:
        ValueError: ``batch_size`` not in ``1..n``.
    """
    check_int("batch_size", batch_size, min_value=1, max_value=n)
    return jax.random.choice(key, n, (batch_size,), replace=False)


def layer_names(params: Any) -> list[str]:
    """``"layer/leaf"`` names of a parameter pytree, in ``jax.tree_util`` order."""
    return list(flatten_layers(params))


def flatten_layers(params: Any) -> dict[str, Any]:
    """``{"dense1/w": array, ...}``: the leaves of a pytree named by their dict keys."""
    leaves, _ = jax.tree_util.tree_flatten_with_path(params)
    return {"/".join(str(p.key) for p in path): leaf for path, leaf in leaves}


MODELS: Registry[GradientModel] = Registry("gradient model")


def register_model(
    name: str,
    *,
    dataset: str,
    head: str,
    init: Callable[[Any], dict[str, dict[str, Any]]],
    apply: Callable[[Any, Any], Any],
    description: str,
) -> GradientModel:
    """Enrol a model under ``name`` (the CLI's ``--model`` choices come from here).

    Raises:
        ValueError: a duplicate name, an unknown dataset or head.
    """
    DATASETS.entry(dataset)
    HEADS.entry(head)
    model = GradientModel(name, dataset, head, init, apply, description)
    MODELS.add(name, model)
    return model


def _init_logistic(n_in: int, n_out: int) -> Callable[[Any], dict[str, Any]]:
    return lambda key: {"dense": _dense(key, n_in, n_out, 1.0)}


def _apply_logistic(params: Any, x: Any) -> Any:
    return _apply_dense(params["dense"], x)


def _init_mlp(key: Any) -> dict[str, Any]:
    k1, k2 = jax.random.split(key)
    return {"dense1": _dense(k1, 64, 64, 2.0), "dense2": _dense(k2, 64, 10, 1.0)}


def _apply_mlp(params: Any, x: Any) -> Any:
    return _apply_dense(params["dense2"], jax.nn.relu(_apply_dense(params["dense1"], x)))


def _init_cnn(key: Any) -> dict[str, Any]:
    k1, k2, k3 = jax.random.split(key, 3)
    return {
        "conv1": _conv(k1, 3, 1, 8, 2.0),
        "conv2": _conv(k2, 3, 8, 16, 2.0),
        "dense": _dense(k3, 4 * 4 * 16, 10, 1.0),
    }


def _apply_cnn(params: Any, x: Any) -> Any:
    h = x.reshape(x.shape[0], 8, 8, 1)
    h = jax.nn.relu(_apply_conv(params["conv1"], h, stride=1))  # (B, 8, 8, 8)
    h = jax.nn.relu(_apply_conv(params["conv2"], h, stride=2))  # (B, 4, 4, 16)
    return _apply_dense(params["dense"], h.reshape(h.shape[0], -1))


register_model(
    "logistic-digits",
    dataset="digits",
    head="softmax",
    init=_init_logistic(64, 10),
    apply=_apply_logistic,
    description="softmax regression 64 -> 10 on the 8x8 digits",
)
register_model(
    "mlp-digits",
    dataset="digits",
    head="softmax",
    init=_init_mlp,
    apply=_apply_mlp,
    description="MLP 64 -> 64 (ReLU) -> 10 on the 8x8 digits",
)
register_model(
    "cnn-digits",
    dataset="digits",
    head="softmax",
    init=_init_cnn,
    apply=_apply_cnn,
    description="conv 3x3x8 -> conv 3x3x16 stride 2 (ReLU) -> dense 10 on the 8x8 digits",
)
register_model(
    "logistic-breast-cancer",
    dataset="breast-cancer",
    head="sigmoid",
    init=_init_logistic(30, 1),
    apply=_apply_logistic,
    description="logistic regression 30 -> 1 on the standardized breast-cancer data",
)
