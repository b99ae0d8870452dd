"""``ratedist gradients capture|fit``: output, exit codes, one-line errors."""

import json

import pytest

pytest.importorskip("sklearn")

from ratedist import cli
from ratedist.commands import gradients as command
from ratedist.gradients.capture import step_file_name

CAPTURE = ["--model", "logistic-digits", "--minibatches", "4", "--batch-size", "16", "--quiet"]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    assert cli.main(["gradients", "capture", *CAPTURE, "--steps", "0,3", "--out", str(out)]) == 0
    return out


def _one_error_line(capsys, *fragments):
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("ratedist gradients: error: "), err
    for f in fragments:
        assert f in err, (f, err)


def test_capture_resumes(store, capsys):
    capsys.readouterr()
    argv = ["gradients", "capture", *CAPTURE, "--steps", "3,0", "--out", str(store)]
    assert cli.main(argv) == 0
    assert capsys.readouterr().out.startswith("captured 0 step(s), skipped 2 already on disk")


def test_fit_prints_a_row_per_layer_and_warns_about_unfittable_ones(store, capsys):
    capsys.readouterr()
    assert cli.main(["gradients", "fit", str(store)]) == 0
    cap = capsys.readouterr()
    assert "step 0: train loss" in cap.out and "step 3: train loss" in cap.out
    rows = [line for line in cap.out.splitlines() if line.startswith("  dense/")]
    assert len(rows) == 4
    # dense/w: 4 x 640 samples; dense/b: 4 x 10 = 40 < 50, reported in its row and warned
    w_rows = [r for r in rows if r.startswith("  dense/w")]
    assert all(any(f in r for f in ("gen-gaussian", "student-t", "laplace")) for r in w_rows)
    assert all("error: layer 'dense/b'" in r for r in rows if r.startswith("  dense/b"))
    warnings = cap.err.splitlines()
    assert len(warnings) == 2 and all(
        w.startswith("ratedist gradients: warning: not fitted: layer 'dense/b' at step ")
        for w in warnings
    )


def test_fit_json(store, capsys):
    capsys.readouterr()
    assert cli.main(["gradients", "fit", str(store), "--step", "3", "--json", "--qq"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["model"] == "logistic-digits" and out["samples"] == "minibatch"
    (step,) = out["steps"]
    assert step["step"] == 3 and set(step["metrics"]) >= {"train_loss", "test_accuracy"}
    w = step["layers"]["dense/w"]
    assert w["best"] in w["fits"] and w["delta_aic"] >= 0 and w["tail"]["k"] >= 10
    assert len(w["fits"][w["best"]]["qq"]["theoretical"]) == 99
    assert "40 nonzero samples" in step["layers"]["dense/b"]["error"]


def test_fit_errors_exit_2_with_one_line(store, tmp_path, capsys):
    assert cli.main(["gradients", "fit", str(store), "--step", "9"]) == 2
    _one_error_line(capsys, "step 9 was not captured", "captured: 0, 3")
    assert cli.main(["gradients", "fit", str(tmp_path / "nope")]) == 2
    _one_error_line(capsys, "nope'", "no such capture directory")
    assert cli.main(["gradients", "fit", str(tmp_path)]) == 2
    _one_error_line(capsys, "manifest.json is missing")
    assert cli.main(["gradients", "fit", str(store), "--max-samples", "10"]) == 2
    _one_error_line(capsys, "--max-samples must be >= 50, got 10")
    assert cli.main(["gradients", "fit", str(store), "--qq"]) == 2
    _one_error_line(capsys, "--qq needs --json")


def test_fit_names_a_truncated_step_file(store, tmp_path, capsys):
    out = tmp_path / "trunc"
    out.mkdir()
    for f in store.iterdir():
        (out / f.name).write_bytes(f.read_bytes())
    path = out / step_file_name(3)
    path.write_bytes(path.read_bytes()[:100])
    assert cli.main(["gradients", "fit", str(out)]) == 2
    _one_error_line(capsys, f"{path}' is truncated or corrupt")


def _fail_if_called(*args, **kwargs):
    raise AssertionError("the capture started before the arguments were checked")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--steps", "0,x"], "--steps must be comma-separated integers"),
        (["--steps", "0", "--batch-size", "0"], "--batch-size must be >= 1, got 0"),
        (["--steps", "0", "--minibatches", "5000"], "--minibatches must be <= 4096, got 5000"),
        (["--steps", "0", "--lr", "-1"], "--lr must be > 0, got -1.0"),
    ],
)
def test_capture_argument_errors_exit_2_before_training(
    extra, message, tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr(command, "capture_gradients", _fail_if_called)
    argv = ["gradients", "capture", "--model", "mlp-digits", "--out", str(tmp_path / "o"), *extra]
    assert cli.main(argv) == 2
    _one_error_line(capsys, message)


def test_capture_checks_out_before_training(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(command, "capture_gradients", _fail_if_called)
    (tmp_path / "file").write_text("x")
    argv = ["gradients", "capture", *CAPTURE, "--steps", "0", "--out", str(tmp_path / "file")]
    assert cli.main(argv) == 2
    _one_error_line(capsys, f"--out {str(tmp_path / 'file')!r} exists and is not a directory")


def test_capture_refuses_another_configuration_in_the_same_directory(store, capsys):
    argv = ["gradients", "capture", *CAPTURE, "--steps", "0", "--out", str(store), "--seed", "1"]
    assert cli.main(argv) == 2
    _one_error_line(capsys, "holds a capture with seed=0, this run has seed=1")


def test_an_action_is_required(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["gradients"])
    assert exc.value.code == 2
    assert "required: ACTION" in capsys.readouterr().err
