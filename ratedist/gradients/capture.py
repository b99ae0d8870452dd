"""Train a registered model and record its gradients at chosen steps, resumably, on disk.

At each capture step ``t`` (the parameters after ``t`` optimizer updates; ``t = 0`` is the
initialisation) :func:`capture_gradients` records, for every layer (pytree leaf, named ``"dense1/w"``):

* ``full/<layer>``: the full-batch gradient of the training loss (all training examples);
* ``minibatch/<layer>``: ``m`` stochastic gradients, each on ``batch_size`` distinct training
  examples drawn afresh (shape ``(m, *layer_shape)``) — what a worker of data-parallel SGD
  with that batch size would compress;
* ``metric/...``: training and test loss and accuracy at that step.

Training itself takes one minibatch of the same ``batch_size`` per step.

**Store.** ``DIR/manifest.json`` (format :data:`FORMAT`: model, optimizer, learning rate,
seeds, sizes, layer names and shapes, the steps asked for) and one ``DIR/step_NNNNNNN.npz``
per step, each written atomically (:func:`ratedist._io.atomic_write`): a step file is
complete or absent. A rerun with the same configuration skips the steps whose files load
completely and captures the others (a step file that fails to load is captured again);
training is re-run from the start up to the last missing step (training is a pure function
of the seed, so the captured steps agree with those of an uninterrupted run). A rerun with a
different configuration (model, optimizer, learning rate, seed, batch size, number of
minibatches, and whether ``jax_enable_x64`` is on: float32 training rounds differently with
it) in the same directory is refused; new steps may be added.

**Randomness.** With ``root = jax.random.key(seed)``: parameters from ``fold_in(root, 0)``;
the training batch of update ``t`` from ``fold_in(fold_in(root, 1), t)``; captured
minibatch ``j`` at step ``t`` from ``fold_in(fold_in(fold_in(root, 2), t), j)``. Capturing
never changes the training trajectory.

:func:`load_capture` reads a store back with one-line errors for a missing directory, a
missing manifest, a truncated or corrupt step file (named) and a missing layer (named).
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import json
import math
import time
import zipfile
import zlib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ratedist import __version__
from ratedist._io import atomic_write, remove_stale_temporaries
from ratedist._registry import Registry
from ratedist._validation import check_int, check_positive
from ratedist.gradients.models import MODELS, GradientModel, flatten_layers, minibatch_indices

#: Manifest ``format`` of the stores this module writes and reads.
FORMAT = "ratedist.gradients.capture/1"
MANIFEST = "manifest.json"
#: Largest capture step accepted (a guard against typos such as ``--steps 0,1000000000``).
MAX_STEP = 10_000_000
#: The configuration keys that must agree for a rerun to resume a store.
CONFIG_KEYS = ("model", "optimizer", "learning_rate", "seed", "batch_size", "minibatches", "x64")
METRICS = ("train_loss", "test_loss", "train_accuracy", "test_accuracy")

#: optimizer name -> ``learning_rate -> optax.GradientTransformation``.
OPTIMIZERS: Registry[Callable[[float], optax.GradientTransformation]] = Registry("optimizer")
OPTIMIZERS.add("adam", optax.adam)
OPTIMIZERS.add("sgd", optax.sgd)


def step_file_name(step: int) -> str:
    """``step_0000100.npz`` for step 100 (zero-padded so that names sort by step)."""
    return f"step_{step:07d}.npz"


# ----------------------------------------------------------------------------- loading
@dataclasses.dataclass(frozen=True)
class StepGradients:
    """The gradients recorded at one step.

    Attributes:
        step: the number of optimizer updates before the capture.
        full: layer -> full-batch gradient (the layer's shape, float32).
        minibatch: layer -> ``(m, *shape)`` minibatch gradients (float32).
        metrics: ``train_loss``, ``test_loss``, ``train_accuracy``, ``test_accuracy``.
        path: the step file.
    """

    step: int
    full: Mapping[str, np.ndarray]
    minibatch: Mapping[str, np.ndarray]
    metrics: Mapping[str, float]
    path: Path


#: sample kind -> ``(StepGradients, layer) -> 1-D array``: what :meth:`Capture.samples` pools.
SAMPLE_KINDS: Registry[Callable[[StepGradients, str], np.ndarray]] = Registry("sample kind")
SAMPLE_KINDS.add(
    "minibatch",
    lambda sg, layer: sg.minibatch[layer].ravel(),
    help="coordinates of the m minibatch gradients, pooled (what a worker compresses)",
)
SAMPLE_KINDS.add(
    "full",
    lambda sg, layer: sg.full[layer].ravel(),
    help="coordinates of the full-batch gradient",
)
SAMPLE_KINDS.add(
    "noise",
    lambda sg, layer: (sg.minibatch[layer] - sg.full[layer][None]).ravel(),
    help="minibatch minus full-batch gradient, pooled (the stochastic-gradient noise)",
)


@dataclasses.dataclass(frozen=True)
class Capture:
    """A gradient store read back by :func:`load_capture`.

    Attributes:
        directory: the store.
        manifest: the parsed ``manifest.json``.
        steps: step -> :class:`StepGradients`, for the steps loaded (ascending).
        missing_steps: steps the manifest lists whose files are absent (an interrupted
            capture; rerun it to complete them).
    """

    directory: Path
    manifest: Mapping[str, Any]
    steps: Mapping[int, StepGradients]
    missing_steps: tuple[int, ...]

    @property
    def layers(self) -> dict[str, tuple[int, ...]]:
        """Layer name -> shape, in the model's order."""
        return {d["name"]: tuple(d["shape"]) for d in self.manifest["layers"]}

    def samples(self, step: int, layer: str, kind: str = "minibatch") -> np.ndarray:
        """The gradient coordinates of ``layer`` at ``step`` as a 1-D float64 array.

        Args:
            step: a loaded step.
            layer: a layer name (:attr:`layers`).
            kind: a name in :data:`SAMPLE_KINDS` (``minibatch``, ``full``, ``noise``).

        Raises:
            ValueError: an unknown step, layer or kind (the message lists the known ones).
        """
        fn = SAMPLE_KINDS.get(kind)
        if step not in self.steps:
            raise ValueError(
                f"step {step!r} is not loaded from {str(self.directory)!r}; "
                f"loaded: {', '.join(map(str, self.steps)) or 'none'}"
            )
        if layer not in self.layers:
            raise ValueError(f"unknown layer {layer!r}; layers: {', '.join(self.layers)}")
        return np.asarray(fn(self.steps[step], layer), np.float64)


def _read_manifest(directory: Path) -> dict[str, Any]:
    if not directory.exists():
        raise FileNotFoundError(errno.ENOENT, "no such capture directory", str(directory))
    if not directory.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "not a capture directory", str(directory))
    path = directory / MANIFEST
    if not path.exists():
        raise ValueError(
            f"{str(directory)!r} is not a gradient capture: {MANIFEST} is missing "
            "(write one with `ratedist gradients capture`)"
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{str(path)!r} is not valid JSON: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        got = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise ValueError(f"{str(path)!r} has format {got!r}; this version reads {FORMAT!r}")
    return manifest


def _read_step(
    path: Path, step: int, layers: Mapping[str, tuple[int, ...]], m: int
) -> StepGradients:
    """One step file, checked against the manifest's layers and minibatch count."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {name: z[name] for name in z.files}  # reading checks every CRC
    except (zipfile.BadZipFile, EOFError, zlib.error, ValueError, KeyError) as exc:
        raise ValueError(
            f"{str(path)!r} is truncated or corrupt ({type(exc).__name__}: {exc}); delete it "
            "and rerun the capture to record the step again"
        ) from None
    full, mini = {}, {}
    for layer, shape in layers.items():
        for kind, store, want in (("full", full, shape), ("minibatch", mini, (m, *shape))):
            key = f"{kind}/{layer}"
            if key not in arrays:
                raise ValueError(f"{str(path)!r} has no layer {layer!r} (array {key!r} missing)")
            arr = arrays[key]
            if arr.shape != want:
                raise ValueError(
                    f"{str(path)!r}: array {key!r} has shape {arr.shape}, expected {want}"
                )
            arr.setflags(write=False)
            store[layer] = arr
    missing = [k for k in METRICS if f"metric/{k}" not in arrays]
    if missing or int(arrays.get("meta/step", -1)) != step:
        raise ValueError(
            f"{str(path)!r} is not the complete record of step {step} "
            f"(missing {', '.join(f'metric/{k}' for k in missing) or 'meta/step'})"
        )
    metrics = {k: float(arrays[f"metric/{k}"]) for k in METRICS}
    return StepGradients(
        step, MappingProxyType(full), MappingProxyType(mini), MappingProxyType(metrics), path
    )


def _layers_of(manifest: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    return {d["name"]: tuple(d["shape"]) for d in manifest["layers"]}


def load_capture(directory: Any, *, steps: Iterable[int] | None = None) -> Capture:
    """Read a gradient store written by :func:`capture_gradients`.

    Args:
        directory: the store.
        steps: the steps to load (each must have been captured); default every step whose
            file is present.

    Returns:
        A :class:`Capture`.

    Raises:
        FileNotFoundError / NotADirectoryError: ``directory`` does not exist / is a file.
        ValueError: no or unreadable manifest, a requested step not captured, a truncated or
            corrupt step file (named), a step file without a layer of the manifest (named).
    """
    directory = Path(directory)
    manifest = _read_manifest(directory)
    layers = _layers_of(manifest)
    listed = sorted(int(s) for s in manifest["steps"])
    present = [s for s in listed if (directory / step_file_name(s)).exists()]
    if steps is None:
        wanted = present
    else:
        wanted = sorted({check_int("steps", s, min_value=0) for s in steps})
        absent = [s for s in wanted if s not in present]
        if absent:
            raise ValueError(
                f"step {absent[0]} was not captured in {str(directory)!r}; "
                f"captured: {', '.join(map(str, present)) or 'none'}"
            )
    loaded = {
        s: _read_step(directory / step_file_name(s), s, layers, int(manifest["minibatches"]))
        for s in wanted
    }
    missing = tuple(s for s in listed if s not in present)
    return Capture(directory, MappingProxyType(manifest), MappingProxyType(loaded), missing)


# ----------------------------------------------------------------------------- capturing
class CaptureReport(NamedTuple):
    """What one :func:`capture_gradients` call did."""

    directory: Path
    captured: tuple[int, ...]  # steps written by this call (recaptured ones included)
    skipped: tuple[int, ...]  # steps already complete on disk
    recaptured: tuple[int, ...]  # steps whose file was present but unreadable
    seconds: float


def parse_steps(text: str, *, option: str = "--steps") -> list[int]:
    """``"0,100,1000"`` -> ``[0, 100, 1000]`` (sorted, duplicates removed).

    Raises:
        ValueError: naming ``option``, the text and what is allowed.
    """
    parts = [p.strip() for p in str(text).split(",")]
    try:
        steps = [int(p) for p in parts]
    except ValueError:
        raise ValueError(
            f"{option} must be comma-separated integers such as 0,100,1000, got {text!r}"
        ) from None
    bad = [s for s in steps if not 0 <= s <= MAX_STEP]
    if bad:
        raise ValueError(f"{option}: steps must lie in 0..{MAX_STEP}, got {bad[0]}")
    return sorted(set(steps))


def _config(
    model: str, optimizer: str, learning_rate: float, seed: int, batch_size: int, minibatches: int
) -> dict[str, Any]:
    return {
        "model": model,
        "optimizer": optimizer,
        "learning_rate": learning_rate,
        "seed": seed,
        "batch_size": batch_size,
        "minibatches": minibatches,
        # float32 training still rounds differently with jax_enable_x64 (Adam's scalars are
        # then float64): 5e-8 apart after 20 steps of mlp-digits, so it is part of the run.
        "x64": bool(jax.config.jax_enable_x64),
    }


def _new_manifest(config: Mapping[str, Any], gm: GradientModel, steps: list[int]) -> dict:
    shapes = jax.eval_shape(gm.init, jax.random.key(0))
    split = gm.data()
    layers = [{"name": k, "shape": list(v.shape)} for k, v in flatten_layers(shapes).items()]
    return {
        "format": FORMAT,
        **config,
        "dataset": gm.dataset,
        "n_train": int(split.x_train.shape[0]),
        "n_test": int(split.x_test.shape[0]),
        "n_params": sum(math.prod(d["shape"]) for d in layers),
        "layers": layers,
        "steps": steps,
        "seeds": {
            "init": "fold_in(key(seed), 0)",
            "train_batch_t": "fold_in(fold_in(key(seed), 1), t)",
            "capture_batch_t_j": "fold_in(fold_in(fold_in(key(seed), 2), t), j)",
            "split": "numpy default_rng(0) permutation (fixed per dataset)",
        },
        "versions": {"ratedist": __version__, "jax": jax.__version__, "optax": optax.__version__},
    }


def _write_json(path: Path, obj: Any) -> None:
    text = json.dumps(obj, indent=1) + "\n"
    atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))


def _merge_manifest(directory: Path, fresh: dict[str, Any]) -> dict[str, Any]:
    """The manifest to write: ``fresh``, or the existing one with the new steps added.

    Raises:
        ValueError: the directory holds a capture of another configuration.
    """
    if not (directory / MANIFEST).exists():
        return fresh
    old = _read_manifest(directory)
    for key in CONFIG_KEYS:
        if old.get(key) != fresh[key]:
            raise ValueError(
                f"{str(directory)!r} holds a capture with {key}={old.get(key)!r}, this run has "
                f"{key}={fresh[key]!r}; use another output directory to capture a different "
                "configuration"
            )
    if old["layers"] != fresh["layers"]:
        raise ValueError(f"{str(directory)!r} holds a capture with other layer shapes")
    return {**old, "steps": sorted(set(old["steps"]) | set(fresh["steps"]))}


@functools.partial(jax.jit, static_argnames=("model", "optimizer", "learning_rate", "batch_size"))
def _train(params, opt_state, x, y, root, t0, t1, *, model, optimizer, learning_rate, batch_size):
    """Updates ``t0 .. t1 - 1`` (a ``fori_loop`` with traced bounds: one program for every
    segment between two captures, and for every capture of the same configuration)."""
    gm, opt = MODELS.get(model), OPTIMIZERS.get(optimizer)(learning_rate)
    k_train = jax.random.fold_in(root, 1)

    def body(t, carry):
        params, opt_state = carry
        idx = minibatch_indices(jax.random.fold_in(k_train, t), x.shape[0], batch_size)
        grads = jax.grad(gm.loss)(params, x[idx], y[idx])
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    return jax.lax.fori_loop(t0, t1, body, (params, opt_state))


@functools.partial(jax.jit, static_argnames=("model", "batch_size", "minibatches"))
def _record(params, x, y, x_test, y_test, root, t, *, model, batch_size, minibatches):
    """(full-batch gradient, ``minibatches`` stacked minibatch gradients, metrics) at step t."""
    gm = MODELS.get(model)
    grad = jax.grad(gm.loss)
    k_t = jax.random.fold_in(jax.random.fold_in(root, 2), t)

    def one(j):
        idx = minibatch_indices(jax.random.fold_in(k_t, j), x.shape[0], batch_size)
        return grad(params, x[idx], y[idx])

    metrics = {
        "train_loss": gm.loss(params, x, y),
        "test_loss": gm.loss(params, x_test, y_test),
        "train_accuracy": gm.accuracy(params, x, y),
        "test_accuracy": gm.accuracy(params, x_test, y_test),
    }
    return grad(params, x, y), jax.vmap(one)(jnp.arange(minibatches)), metrics


def _step_arrays(step: int, full: Any, mini: Any, metrics: Mapping[str, Any]) -> dict:
    out: dict[str, np.ndarray] = {"meta/step": np.asarray(step, np.int64)}
    out.update({f"full/{k}": np.asarray(v) for k, v in flatten_layers(full).items()})
    out.update({f"minibatch/{k}": np.asarray(v) for k, v in flatten_layers(mini).items()})
    out.update({f"metric/{k}": np.asarray(v, np.float64) for k, v in metrics.items()})
    return out


def capture_gradients(
    model: str,
    steps: Iterable[int],
    out: Any,
    *,
    minibatches: int = 16,
    batch_size: int = 32,
    seed: int = 0,
    optimizer: str = "adam",
    learning_rate: float = 1e-3,
    log: Callable[[str], None] | None = None,
) -> CaptureReport:
    """Train ``model`` and record its gradients at ``steps`` into the store ``out``.

    Args:
        model: a name in :data:`~ratedist.gradients.models.MODELS`.
        steps: capture steps (numbers of optimizer updates), each in ``0..MAX_STEP``.
        out: the store directory (created if needed).
        minibatches: ``m``, stochastic gradients recorded per step, ``1..4096``.
        batch_size: examples per minibatch, for training and for the recorded gradients,
            ``1..n_train``.
        seed: ``0 <= seed < 2^32``; fixes initialisation, training batches and captures.
        optimizer: a name in :data:`OPTIMIZERS` (``adam``, ``sgd``).
        learning_rate: > 0.
        log: called with one line per step (captured or skipped); default silent.

    Returns:
        A :class:`CaptureReport`.

    Raises:
        ValueError: an unknown model or optimizer, a bad size, seed or step, or a store in
            ``out`` that holds another configuration.
        OSError: ``out`` cannot be written.
    """
    t0 = time.perf_counter()
    say = log or (lambda _line: None)
    gm = MODELS.get(model)
    opt_factory = OPTIMIZERS.get(optimizer)
    steps = sorted({check_int("steps", s, min_value=0, max_value=MAX_STEP) for s in steps})
    if not steps:
        raise ValueError("steps must name at least one step, got none")
    minibatches = check_int("minibatches", minibatches, min_value=1, max_value=4096)
    split = gm.data()
    n_train = int(split.x_train.shape[0])
    batch_size = check_int("batch_size", batch_size, min_value=1, max_value=n_train)
    seed = check_int("seed", seed, min_value=0, max_value=2**32 - 1)
    learning_rate = check_positive("learning_rate", learning_rate)

    directory = Path(out)
    config = _config(model, optimizer, learning_rate, seed, batch_size, minibatches)
    manifest = _merge_manifest(directory, _new_manifest(config, gm, steps))
    directory.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(directory)
    _write_json(directory / MANIFEST, manifest)

    layers = _layers_of(manifest)
    todo, skipped, recaptured = [], [], []
    for s in steps:
        path = directory / step_file_name(s)
        if not path.exists():
            todo.append(s)
            continue
        try:
            _read_step(path, s, layers, minibatches)
        except ValueError as exc:
            say(f"step {s}: {exc}; capturing it again")
            todo.append(s)
            recaptured.append(s)
        else:
            say(f"step {s}: already captured in {path.name}, skipped")
            skipped.append(s)
    if todo:
        root = jax.random.key(seed)
        x, y = jnp.asarray(split.x_train), jnp.asarray(split.y_train)
        x_test, y_test = jnp.asarray(split.x_test), jnp.asarray(split.y_test)
        params = jax.jit(gm.init_fn)(jax.random.fold_in(root, 0))
        opt_state = opt_factory(learning_rate).init(params)
        static = {"model": model, "batch_size": batch_size}
        done = 0  # updates made so far
        for t in todo:
            params, opt_state = _train(
                params,
                opt_state,
                x,
                y,
                root,
                done,
                t,
                optimizer=optimizer,
                learning_rate=learning_rate,
                **static,
            )
            done = t
            full, mini, metrics = _record(
                params, x, y, x_test, y_test, root, t, minibatches=minibatches, **static
            )
            path = directory / step_file_name(t)
            arrays = _step_arrays(t, full, mini, metrics)
            atomic_write(path, lambda fh, a=arrays: np.savez(fh, **a))
            say(
                f"step {t}: train loss {float(metrics['train_loss']):.4g}, test accuracy "
                f"{float(metrics['test_accuracy']):.3f} -> {path.name}"
            )
    return CaptureReport(
        directory, tuple(todo), tuple(skipped), tuple(recaptured), time.perf_counter() - t0
    )
