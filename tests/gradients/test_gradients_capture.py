"""Gradient capture: the registered models, the store's round trip, resuming, bad files."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("sklearn")

from ratedist.gradients import capture as capture_mod
from ratedist.gradients.capture import (
    FORMAT,
    MANIFEST,
    SAMPLE_KINDS,
    capture_gradients,
    load_capture,
    parse_steps,
    step_file_name,
)
from ratedist.gradients.models import MODELS, flatten_layers, minibatch_indices

#: A tiny run: the fastest model, three steps, 3 minibatches of 8 examples.
TINY = {"model": "logistic-digits", "minibatches": 3, "batch_size": 8, "seed": 5}
STEPS = [0, 2, 5]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    out = tmp_path_factory.mktemp("capture") / "run"
    rep = capture_gradients(
        TINY["model"], STEPS, out, **{k: v for k, v in TINY.items() if k != "model"}
    )
    assert rep.captured == tuple(STEPS) and rep.skipped == ()
    return out


def _copy(src, dst):
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


# ------------------------------------------------------------------------------ models
@pytest.mark.parametrize("name", MODELS.names())
def test_every_model_initializes_trains_and_scores(name):
    gm = MODELS.get(name)
    split = gm.data()
    params = jax.jit(gm.init_fn)(jax.random.key(0))  # eager: one compilation per random draw
    layers = flatten_layers(params)
    assert all(v.dtype == jnp.float32 for v in layers.values())
    assert all("/" in k for k in layers)
    x, y = jnp.asarray(split.x_train[:16]), jnp.asarray(split.y_train[:16])
    # jitted: op-by-op execution of the conv net's gradient costs ~4x the compilation
    loss, grads = jax.jit(jax.value_and_grad(gm.loss))(params, x, y)
    assert np.isfinite(float(loss)) and 0 <= float(jax.jit(gm.accuracy)(params, x, y)) <= 1
    assert {k: v.shape for k, v in flatten_layers(grads).items()} == {
        k: v.shape for k, v in layers.items()
    }
    assert split.x_train.shape[0] + split.x_test.shape[0] in (1797, 569)
    assert split.x_train.flags.writeable is False


def test_minibatches_have_distinct_examples_and_bad_sizes_are_named():
    idx = np.asarray(minibatch_indices(jax.random.key(1), 20, 20))
    assert sorted(idx) == list(range(20))
    with pytest.raises(ValueError, match="batch_size must be <= 20, got 21"):
        minibatch_indices(jax.random.key(1), 20, 21)


# ------------------------------------------------------------------------------ the store
def test_manifest_records_the_configuration(store):
    m = json.loads((store / MANIFEST).read_text())
    assert m["format"] == FORMAT and m["steps"] == STEPS
    assert {k: m[k] for k in TINY} == TINY
    assert (m["optimizer"], m["learning_rate"]) == ("adam", 1e-3)
    assert m["x64"] is True  # tests/conftest.py enables it
    assert m["layers"] == [
        {"name": "dense/b", "shape": [10]},
        {"name": "dense/w", "shape": [64, 10]},
    ]
    assert m["n_params"] == 650 and m["n_train"] + m["n_test"] == 1797
    assert {"init", "train_batch_t", "capture_batch_t_j", "split"} <= set(m["seeds"])
    assert sorted(p.name for p in store.iterdir()) == sorted(
        [MANIFEST, *(step_file_name(s) for s in STEPS)]
    )
    assert oct(os.stat(store / step_file_name(0)).st_mode & 0o777) != oct(0o600)


def test_round_trip_and_the_step_0_gradient_recomputed(store):
    cap = load_capture(store)
    assert list(cap.steps) == STEPS and cap.missing_steps == ()
    sg = cap.steps[0]
    assert sg.minibatch["dense/w"].shape == (3, 64, 10) and sg.full["dense/b"].shape == (10,)
    # Step 0 is the initialisation fold_in(key(seed), 0): the full-batch gradient again.
    gm = MODELS.get(TINY["model"])
    split = gm.data()
    params = jax.jit(gm.init_fn)(jax.random.fold_in(jax.random.key(TINY["seed"]), 0))
    g = flatten_layers(jax.jit(jax.grad(gm.loss))(params, split.x_train, split.y_train))
    for layer, arr in g.items():
        np.testing.assert_allclose(sg.full[layer], np.asarray(arr), rtol=1e-6, atol=1e-9)
    # the minibatch gradients differ from each other and from the full one
    mb = sg.minibatch["dense/w"]
    assert not np.array_equal(mb[0], mb[1]) and not np.array_equal(mb[0], sg.full["dense/w"])
    assert sg.metrics["train_loss"] > cap.steps[5].metrics["train_loss"]


def test_sample_kinds(store):
    cap = load_capture(store, steps=[2])
    sg = cap.steps[2]
    assert set(SAMPLE_KINDS.names()) == {"minibatch", "full", "noise"}
    np.testing.assert_array_equal(cap.samples(2, "dense/w"), sg.minibatch["dense/w"].ravel())
    np.testing.assert_array_equal(cap.samples(2, "dense/b", "full"), sg.full["dense/b"])
    noise = cap.samples(2, "dense/w", "noise")
    np.testing.assert_allclose(
        noise, (sg.minibatch["dense/w"] - sg.full["dense/w"]).ravel(), rtol=0, atol=0
    )
    assert noise.dtype == np.float64
    with pytest.raises(ValueError, match="unknown layer 'dense/x'; layers: dense/b, dense/w"):
        cap.samples(2, "dense/x")
    with pytest.raises(ValueError, match="step 0 is not loaded"):
        cap.samples(0, "dense/w")
    with pytest.raises(ValueError, match="unknown sample kind 'adam'"):
        cap.samples(2, "dense/w", "adam")


def test_resume_skips_complete_steps_and_matches_an_uninterrupted_run(store, tmp_path):
    out = _copy(store, tmp_path / "resumed")
    lines = []
    rep = capture_gradients(
        TINY["model"],
        [*STEPS, 7],
        out,
        log=lines.append,
        **{k: v for k, v in TINY.items() if k != "model"},
    )
    assert rep.skipped == tuple(STEPS) and rep.captured == (7,)
    assert sum("skipped" in line for line in lines) == 3
    assert json.loads((out / MANIFEST).read_text())["steps"] == [*STEPS, 7]
    fresh = tmp_path / "fresh"
    capture_gradients(TINY["model"], [7], fresh, **{k: v for k, v in TINY.items() if k != "model"})
    a, b = load_capture(out, steps=[7]).steps[7], load_capture(fresh).steps[7]
    for layer in a.full:
        np.testing.assert_array_equal(a.full[layer], b.full[layer])
        np.testing.assert_array_equal(a.minibatch[layer], b.minibatch[layer])


def test_a_truncated_step_file_is_named_on_load_and_recaptured(store, tmp_path):
    out = _copy(store, tmp_path / "trunc")
    path = out / step_file_name(2)
    original = load_capture(store, steps=[2]).steps[2]
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=rf"{step_file_name(2)}' is truncated or corrupt"):
        load_capture(out)
    rep = capture_gradients(
        TINY["model"], STEPS, out, **{k: v for k, v in TINY.items() if k != "model"}
    )
    assert rep.recaptured == (2,) and rep.captured == (2,) and rep.skipped == (0, 5)
    again = load_capture(out, steps=[2]).steps[2]
    np.testing.assert_array_equal(again.minibatch["dense/w"], original.minibatch["dense/w"])


def test_a_missing_layer_is_named(store, tmp_path):
    out = _copy(store, tmp_path / "nolayer")
    path = out / step_file_name(5)
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files if k != "minibatch/dense/b"}
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=r"has no layer 'dense/b' \(array 'minibatch/dense/b'"):
        load_capture(out)


def test_load_errors(store, tmp_path):
    with pytest.raises(FileNotFoundError, match="no such capture directory"):
        load_capture(tmp_path / "nope")
    with pytest.raises(ValueError, match=r"is not a gradient capture: manifest\.json is missing"):
        load_capture(tmp_path)
    with pytest.raises(ValueError, match=r"step 3 was not captured .* captured: 0, 2, 5"):
        load_capture(store, steps=[3])
    bad = _copy(store, tmp_path / "badjson")
    (bad / MANIFEST).write_text("{")
    with pytest.raises(ValueError, match=r"manifest\.json' is not valid JSON"):
        load_capture(bad)


def test_an_interrupted_capture_loads_what_is_there(store, tmp_path):
    out = _copy(store, tmp_path / "partial")
    (out / step_file_name(5)).unlink()
    cap = load_capture(out)
    assert list(cap.steps) == [0, 2] and cap.missing_steps == (5,)


def test_another_configuration_in_the_same_directory_is_refused(store, tmp_path):
    out = _copy(store, tmp_path / "other")
    with pytest.raises(ValueError, match="holds a capture with seed=5, this run has seed=6"):
        capture_gradients(TINY["model"], [0], out, minibatches=3, batch_size=8, seed=6)
    # float32 training rounds differently without x64: not the same run
    with jax.enable_x64(False), pytest.raises(ValueError, match="x64=True, this run has x64=False"):
        capture_gradients(TINY["model"], [9], out, minibatches=3, batch_size=8, seed=5)


def test_capture_argument_errors():
    with pytest.raises(ValueError, match="unknown gradient model 'resnet'; known: cnn-digits"):
        capture_gradients("resnet", [0], "unused")
    with pytest.raises(ValueError, match="unknown optimizer 'lion'"):
        capture_gradients("mlp-digits", [0], "unused", optimizer="lion")
    with pytest.raises(ValueError, match="batch_size must be <= 1438"):
        capture_gradients("mlp-digits", [0], "unused", batch_size=5000)
    with pytest.raises(ValueError, match="steps must name at least one step"):
        capture_gradients("mlp-digits", [], "unused")
    assert parse_steps("100, 0,100") == [0, 100]
    with pytest.raises(ValueError, match="--steps must be comma-separated integers"):
        parse_steps("0;100")
    with pytest.raises(ValueError, match=r"--steps: steps must lie in 0\.\.10000000, got -1"):
        parse_steps("-1")


def test_capture_leaves_no_temporary_files(store):
    assert not [p for p in store.iterdir() if p.name.endswith(".tmp")]
    assert capture_mod.FORMAT.endswith("/1")
