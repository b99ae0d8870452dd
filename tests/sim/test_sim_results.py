"""A result directory as one table: rows, config columns, metrics read back from the files.

References are read from the ``.npz`` members directly with ``np.load`` (not through the
table code), and the configs from their JSON text.
"""

import csv
import io
import json

import jax
import numpy as np
import pytest

from ratedist.cli import main
from ratedist.commands import results as results_command
from ratedist.compressors import make
from ratedist.sim import ef21, run, tridiagonal_quadratic
from ratedist.sim.results import STEP_CHOICES, load_results, results_columns
from ratedist.sim.store import ResultStore

STEPS = 4
PROB = {"name": "tridiagonal_quadratic", "n_workers": 3, "dim": 6}


def _config(alg, seed, gamma, replicas=None):
    return {
        "problem": PROB,
        "algorithm": alg,
        "steps": STEPS,
        "gamma": gamma,
        "gamma_multiplier": 1.0,
        "seed": seed,
        "engine": "vmap",
        "replicas": replicas,
        "dtype": "float64",
    }


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory):
    """Three results (one with 2 replicas) saved under configs that differ in the type of
    gamma (the table reads configs as stored; two runs keep the compilations few)."""
    d = tmp_path_factory.mktemp("results")
    store = ResultStore(d)
    prob = tridiagonal_quadratic(3, 6)
    alg = ef21(make("top-k:k=1"))
    plain = run(alg, prob, steps=STEPS, key=jax.random.key(0), gamma=0.1)
    reps = run(alg, prob, steps=STEPS, key=jax.random.key(1), gamma=0.05, replicas=2)
    store.save(_config({"name": "gd"}, 0, 0.1), plain, {"algorithm": "gd", "L_plus": 1.5})
    store.save(_config({"name": "ef21", "compressor": "top-k:k=1"}, 1, "theory"), plain, {})
    store.save(_config({"name": "ef21", "compressor": "top-k:k=1"}, 2, "theory", 2), reps, {})
    return d


def _raw(store_dir):
    """``{hash: (npz members, config)}`` read directly from the files."""
    out = {}
    for p in sorted(store_dir.glob("*.npz")):
        with np.load(p) as z:
            members = {k: z[k] for k in z.files}
        out[p.stem] = (members, json.loads(members["config_json"].item()))
    return out


def test_final_rows_hold_the_last_step_of_every_run_and_replica(store_dir):
    cols = results_columns(store_dir)
    raw = _raw(store_dir)
    assert len(cols["hash"]) == 1 + 1 + 2
    for i, h in enumerate(cols["hash"]):
        z, cfg = raw[h]
        r = int(cols["replica"][i])
        f = z["f"][r] if z["f"].ndim == 2 else z["f"]
        assert cols["step"][i] == STEPS
        assert cols["f"][i] == f[-1]
        bits = sum(z[f"bits_{b}"] for b in ("value", "index", "side", "flag", "full"))
        bits = bits[r] if bits.ndim == 3 else bits
        assert cols["bits_up_container"][i] == bits[-1].sum()
        werr = z["worker_error"][r] if z["worker_error"].ndim == 3 else z["worker_error"]
        assert cols["worker_error_mean"][i] == pytest.approx(werr[-1].mean(), rel=1e-15)
        assert cols["problem.dim"][i] == cfg["problem"]["dim"] == 6
        assert cols["seed"][i] == cfg["seed"]
        assert cols["algorithm.name"][i] == cfg["algorithm"]["name"]
        assert cols["gamma_used"][i] == float(z["gamma"])
    assert sorted(cols["replica"].tolist()) == [0, 0, 0, 1]


def test_config_columns_missing_and_mixed_types(store_dir):
    cols = results_columns(store_dir)
    by_seed = dict(zip(cols["seed"], range(len(cols["seed"])), strict=False))
    assert cols["algorithm.compressor"][by_seed[0]] is None  # gd has no compressor
    assert cols["meta.L_plus"][by_seed[0]] == 1.5
    assert cols["meta.L_plus"][by_seed[1]] is None
    # gamma is 0.1 in one config and "theory" in the others: every value as JSON text
    assert {cols["gamma"][i] for i in range(len(cols["gamma"]))} == {"0.1", '"theory"'}


def test_all_steps_and_every_k(store_dir):
    cols = results_columns(store_dir, steps="all")
    assert len(cols["step"]) == 4 * (STEPS + 1)
    raw = _raw(store_dir)
    rows = [i for i, h in enumerate(cols["hash"]) if raw[h][1]["seed"] == 1]
    np.testing.assert_array_equal(cols["step"][rows], np.arange(STEPS + 1))
    np.testing.assert_array_equal(cols["f"][rows], raw[cols["hash"][rows[0]]][0]["f"])
    thin = results_columns(store_dir, steps="all", every=3)
    assert len(thin["step"]) == 4 * 3  # steps 0, 3 and the last (4) of each row
    assert set(thin["step"].tolist()) == {0, 3, 4}


def test_bad_arguments_and_directories(tmp_path, store_dir):
    with pytest.raises(ValueError, match="steps"):
        results_columns(store_dir, steps="last")
    with pytest.raises(ValueError, match="every"):
        results_columns(store_dir, steps="all", every=0)
    with pytest.raises(ValueError, match="does not exist"):
        results_columns(tmp_path / "missing")
    with pytest.raises(ValueError, match=r"no result files"):
        results_columns(tmp_path)
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match=r"bad\.npz"):
        results_columns(tmp_path)


def test_parser_choices_follow_the_library():
    assert tuple(STEP_CHOICES) == results_command._STEPS


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["results", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and len(err.strip().splitlines()) == 1


def test_dataframe_and_cli_csv_parquet(store_dir, tmp_path, capsys):
    pd = pytest.importorskip("pandas")
    df = load_results(store_dir)
    assert len(df) == 4 and df["f"].notna().all()
    assert main(["results", str(store_dir), "--csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["hash"] for r in rows] == df["hash"].tolist()
    np.testing.assert_allclose([float(r["f"]) for r in rows], df["f"], rtol=1e-15)
    pytest.importorskip("pyarrow")
    target = tmp_path / "r.parquet"
    assert main(["results", str(store_dir), "--parquet", str(target)]) == 0
    pd.testing.assert_frame_equal(pd.read_parquet(target), df)
