"""1-bit gradient-coding bounds (ratedist.bounds.gradient_coding) against independent checks.

* variance terms ≡ Monte Carlo of the simulator's own pieces (participation sampler, coded
  worker oracle, stochastic sign, decoding aggregation) at a fixed x, within 5 SE, and the
  decoded gradient is unbiased (worst coordinate within 5 SE);
* closed forms of E||a||^2 and Cov(c) ≡ exact enumeration of the straggler masks
  (ratedist.sim.decoding_moments) to 1e-12; the sampled moments ≡ the exact ones within 5 SE;
* the a priori variance bounds are >= the exact variance at random points;
* the SGD bounds hold for SGD with Gaussian noise of the stated variance simulated in numpy
  (5 SE), constant and diminishing steps; the first-step identity within 5 SE;
* the diminishing-step bounds' schedule and bits (the record itself:
  test_bounds_diminishing.py);
* bad input raises ValueError naming the argument.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ratedist import bounds, sim
from ratedist.compressors import make

K_SE = 5.0
RTOL = 1e-12  # exact identities in float64


# ------------------------------------------------------------------------- simulator pieces
@pytest.fixture(scope="module")
def base():
    return sim.logistic_nonconvex(
        n_workers=8, lam=0.1, n_samples=160, dim=6, seed=1, solve_f_star=False
    )


def _decoded_draws(c, participation, hp, x, key, draws):
    """``g = sum_i w_i(mask) Q(y_i(x))`` with the round's own stage functions, ``draws`` times."""
    prob, n = c.problem, c.problem.n_workers
    oracle = c.oracle(prob)
    comp = make("stochastic-sign", scale="l2")
    weight = c.aggregation.weight
    idx = jnp.arange(n)

    def one(k):
        kp, kq = jax.random.split(k)
        mask = participation.sample(kp, 1, n, hp)

        def worker(data_i, i):
            y = oracle(x, data_i, jax.random.fold_in(kq, n + i), hp)[2]
            q = comp.update(y, comp.init(y), key=jax.random.fold_in(kq, i))[0]
            return weight(mask, i, n, hp) * q

        return jnp.sum(jax.vmap(worker)(prob.data, idx), axis=0)

    return np.asarray(jax.jit(jax.vmap(one))(jax.random.split(key, draws)))


CASES = [
    ("random_replication", {"d": 2, "p": 0.3}, "bernoulli", 0.3),
    ("random_replication", {"d": 3, "p": 0.1}, "bernoulli", 0.1),
    ("frc", {"s": 1}, "exactly", 1),
    ("crc", {"s": 1}, "exactly", 1),
    ("uncoded", {}, "exactly", 2),
]


@pytest.mark.parametrize(("name", "params", "law", "arg"), CASES)
def test_variance_terms_match_simulator_pieces(base, key, name, params, law, arg):
    code = sim.make_code(name, n=8, **params)
    c = sim.coded(base, code)
    part = sim.PARTICIPATION.get(law)(arg)
    hp = {"straggle_p": arg} if law == "bernoulli" else {}
    mom = sim.decoding_moments(code, part)
    assert mom.exact and mom.bias < 1e-9
    x = np.random.default_rng(2).standard_normal(base.dim)
    gj = jax.vmap(base.grad_fn, in_axes=(None, 0))(jnp.asarray(x), base.data)
    parts = np.asarray(gj) / 8  # g_j = grad f_j / k
    grad = parts.sum(axis=0)
    y = code.B @ parts
    mse = bounds.onebit_message_mse(base.dim, "l2", norm_sq=np.sum(y * y, axis=1))
    sq = bounds.quantization_variance(mom.weight_sq, mse)
    ss = bounds.straggler_variance_at(mom.coefficient_second, parts)
    draws = 40000
    g = _decoded_draws(c, part, hp, jnp.asarray(x), key, draws)
    err = np.sum((g - grad) ** 2, axis=1)
    se = err.std(ddof=1) / math.sqrt(draws)
    assert abs(err.mean() - (sq + ss)) <= K_SE * se, (err.mean(), sq, ss, se)
    # unbiased: the worst coordinate of the mean within 5 SE
    dev = np.abs(g.mean(axis=0) - grad) / (g.std(axis=0, ddof=1) / math.sqrt(draws))
    assert dev.max() <= K_SE
    # the a priori bound (||grad f_j|| <= G_j for every x) is above the exact value; here
    # G_j = (1/m) sum_r ||a_r|| + lam sqrt(d) 3 sqrt(3)/8 (sigmoid <= 1, |2t/(1+t^2)^2| <= that)
    X = np.asarray(base.data["X"])
    G = np.linalg.norm(X, axis=2).mean(axis=1) + 0.1 * math.sqrt(base.dim) * 3 * math.sqrt(3) / 8
    prior = bounds.coded_variance(mom, code.B, dim=base.dim, scale="l2", partition_grad_bound=G)
    assert prior.total >= sq + ss
    assert prior.stochastic == 0.0


# ------------------------------------------------------------ moments: closed forms, sampling
def test_closed_forms_equal_enumeration():
    n = 8
    frc = sim.decoding_moments(sim.frc(n, 1), sim.exactly_stragglers(1))
    assert frc.exact and frc.weight_sq_norm == bounds.frc_weight_sq_norm(n, 1)
    assert frc.weight_sq_norm_max == bounds.frc_weight_sq_norm(n, 1)
    assert np.all(frc.coefficient_second == 0)  # exact decoding: no straggler variance
    for s in (0, 1):  # FRC at any pattern with <= s stragglers
        m = sim.decoding_moments(sim.frc(n, 1), sim.exactly_stragglers(s))
        assert m.weight_sq_norm == pytest.approx(n / 2, rel=RTOL)
    for s in (1, 3):
        for code, d in ((sim.uncoded(n), 1), (sim.random_replication(n, 2, rescale="count"), 2)):
            m = sim.decoding_moments(code, sim.exactly_stragglers(s))
            want = bounds.count_weight_sq_norm(n, d, n - s)
            assert m.weight_sq_norm == pytest.approx(want, rel=RTOL)
            assert m.weight_sq_norm_max == pytest.approx(want, rel=RTOL)
    for d, p in ((1, 0.1), (2, 0.3), (3, 0.0)):
        code = sim.random_replication(n, d, p=p, seed=d)
        m = sim.decoding_moments(code, sim.bernoulli_stragglers(p))
        assert m.exact and m.masks == (2**n if p > 0 else 1)
        assert m.bias < 1e-12
        assert m.weight_sq_norm == pytest.approx(
            bounds.probability_weight_sq_norm(n, d, p), rel=RTOL
        )
        np.testing.assert_allclose(
            m.coefficient_second,
            bounds.probability_coefficient_covariance(code.B, p),
            rtol=RTOL,
            atol=1e-14,
        )
        G = np.full(n, 1.3)
        tight = bounds.straggler_variance_bound(m.coefficient_second, G)
        assert tight <= bounds.replication_straggler_variance(d, p, 1.3) * (1 + RTOL)


def test_everyone_and_pattern_laws():
    code = sim.random_replication(8, 2, p=0.3)
    m = sim.decoding_moments(code, sim.everyone())
    assert m.masks == 1 and m.bias == pytest.approx(0.3 / 0.7, rel=RTOL)  # 1/(1-p) - 1
    mask = np.ones((2, 8), bool)
    mask[1, :3] = False
    m = sim.decoding_moments(sim.uncoded(8), sim.pattern_stragglers(mask))
    assert m.weight_sq_norm == pytest.approx((8 + 64 / 5) / 2, rel=RTOL)


CLOSED = [
    (lambda: sim.random_replication(8, 2, p=0.3), lambda: sim.bernoulli_stragglers(0.3)),
    (lambda: sim.random_replication(8, 3, p=0.1), lambda: sim.bernoulli_stragglers(0.2)),
    (lambda: sim.random_replication(8, 2, rescale="count"), lambda: sim.exactly_stragglers(3)),
    (lambda: sim.uncoded(8), lambda: sim.exactly_stragglers(2)),
    (lambda: sim.frc(8, 1), lambda: sim.exactly_stragglers(1)),
    (lambda: sim.frc(9, 2), lambda: sim.exactly_stragglers(1)),
]


@pytest.mark.parametrize(("make_code", "make_law"), CLOSED)
def test_closed_form_moments_equal_enumeration(make_code, make_law):
    """Past max_masks the closed form is used; at n = 8 it must equal the enumeration,
    including a biased pairing (design p = 0.1 under Bernoulli(0.2))."""
    code, law = make_code(), make_law()
    enum = sim.decoding_moments(code, law)
    closed = sim.decoding_moments(code, law, max_masks=1)
    assert enum.exact and enum.masks > 1
    assert closed.exact and closed.masks == 0 and "closed form" in closed.law
    for field in ("weight_sq", "coefficient_mean", "coefficient_second"):
        np.testing.assert_allclose(
            getattr(closed, field), getattr(enum, field), rtol=RTOL, atol=1e-14
        )
    assert closed.weight_sq_norm == pytest.approx(enum.weight_sq_norm, rel=RTOL)
    assert closed.weight_sq_norm_max == pytest.approx(enum.weight_sq_norm_max, rel=RTOL)


def test_sampled_moments_agree_with_exact():
    """No closed form for the cyclic code: past max_masks the moments are a Monte Carlo
    estimate (exact=False), within 5 SE of the enumeration."""
    code, law = sim.crc(8, 1), sim.exactly_stragglers(1)
    exact = sim.decoding_moments(code, law)
    samples = 20000
    mc = sim.decoding_moments(code, law, max_masks=4, samples=samples, seed=3)
    assert not mc.exact and mc.masks == samples
    norms = np.sum(sim.codes.decoding_vectors(code, ~np.eye(8, dtype=bool)) ** 2, axis=1)
    se = norms.std() / math.sqrt(samples)  # the 8 patterns are equally likely
    assert exact.weight_sq_norm == pytest.approx(norms.mean(), rel=RTOL)
    assert abs(mc.weight_sq_norm - exact.weight_sq_norm) <= K_SE * se
    assert mc.weight_sq_norm_max <= exact.weight_sq_norm_max * (1 + RTOL)


# --------------------------------------------------------- SGD bounds vs numpy simulations
def _sgd(grad, f, x0, gammas, sigma, reps, rng):
    """SGD with N(0, sigma^2/d I) noise on the exact gradient; returns f and ||grad||^2 paths."""
    x = np.tile(x0, (reps, 1))
    d = x0.size
    fs, gs = [f(x)], [np.sum(grad(x) ** 2, axis=1)]
    for gamma in gammas:
        x = x - gamma * (grad(x) + sigma / math.sqrt(d) * rng.standard_normal(x.shape))
        fs.append(f(x))
        gs.append(np.sum(grad(x) ** 2, axis=1))
    return np.stack(fs, axis=1), np.stack(gs, axis=1)


def _mean_se(a):
    return a.mean(), a.std(ddof=1) / math.sqrt(a.size)


def test_convex_and_nonconvex_bounds_hold_for_sgd():
    rng = np.random.default_rng(5)
    h = np.array([0.05, 0.3, 1.0, 2.0])  # quadratic 0.5 sum h x^2: L = 2, x* = 0, f* = 0
    L, x0, s2, T = 2.0, np.array([3.0, -2.0, 1.0, 0.5]), 0.4, 300

    def f(x):
        return 0.5 * x**2 @ h

    def grad(x):
        return x * h

    for gamma in (1 / L, 0.2 / L):
        fs, gs = _sgd(grad, f, x0, [gamma] * (T + 1), math.sqrt(s2), 400, rng)
        b = bounds.coded_convex_bound(dist0_sq=x0 @ x0, L=L, sigma_sq=s2, gamma=gamma)
        m, se = _mean_se(fs[:, 1 : T + 1].mean(axis=1))
        assert m <= b(T) + K_SE * se
        b = bounds.coded_nonconvex_bound(delta0=f(x0), L=L, sigma_sq=s2, gamma=gamma)
        m, se = _mean_se(gs[:, :T].mean(axis=1))
        assert m <= b(T) + K_SE * se
    # diminishing steps, weighted averages
    gamma0 = 1 / L
    w = gamma0 / np.sqrt(np.arange(T) + 1.0)
    fs, gs = _sgd(grad, f, x0, w, math.sqrt(s2), 400, rng)
    b = bounds.coded_convex_diminishing_bound(dist0_sq=x0 @ x0, L=L, sigma_sq=s2, gamma0=gamma0)
    m, se = _mean_se(fs[:, 1 : T + 1] @ w / w.sum())
    assert m <= b(T) + K_SE * se
    b = bounds.coded_nonconvex_diminishing_bound(delta0=f(x0), L=L, sigma_sq=s2, gamma0=gamma0)
    m, se = _mean_se(gs[:, :T] @ w / w.sum())
    assert m <= b(T) + K_SE * se


def test_nonconvex_bound_on_a_nonconvex_function():
    # f = sum (1 - cos x): L = 1, f* = 0, nonconvex
    rng = np.random.default_rng(6)
    x0, s2, T = np.array([2.5, -3.0, 1.0]), 0.3, 200

    def f(x):
        return np.sum(1 - np.cos(x), axis=1)

    def grad(x):
        return np.sin(x)

    _, gs = _sgd(grad, f, x0, [1.0] * T, math.sqrt(s2), 400, rng)
    b = bounds.coded_nonconvex_bound(delta0=float(np.sum(1 - np.cos(x0))), L=1.0, sigma_sq=s2)
    m, se = _mean_se(gs[:, :T].mean(axis=1))
    assert m <= b(T) + K_SE * se


def test_first_step_identity():
    rng = np.random.default_rng(7)
    h = np.array([0.5, 1.0, 2.0])
    x0, gamma, kappa, s0 = np.array([1.0, -2.0, 0.5]), 0.4, 1 / 0.7, 0.3
    g0 = h * x0
    out = bounds.first_step_bounds(
        delta0=0.5 * x0**2 @ h,
        grad0_sq=g0 @ g0,
        L=2.0,
        gamma=gamma,
        kappa=kappa,
        sigma0_sq=s0,
        dist0_sq=x0 @ x0,
        inner0=g0 @ x0,
    )
    draws = 200000
    x1 = x0 - gamma * (kappa * g0 + math.sqrt(s0 / 3) * rng.standard_normal((draws, 3)))
    d1 = np.sum(x1 * x1, axis=1)
    assert abs(d1.mean() - out.dist1_sq) <= K_SE * d1.std(ddof=1) / math.sqrt(draws)
    f1 = 0.5 * (x1 * x1) @ h
    assert f1.mean() <= out.delta1 + K_SE * f1.std(ddof=1) / math.sqrt(draws)
    with pytest.raises(ValueError, match="dist0_sq and inner0"):
        bounds.first_step_bounds(
            delta0=1.0, grad0_sq=1.0, L=1.0, gamma=0.5, kappa=1.0, sigma0_sq=0.0, dist0_sq=1.0
        )


# -------------------------------------------------------------------- DiminishingStepBound
def test_diminishing_schedule_and_bits():
    bd = bounds.coded_nonconvex_diminishing_bound(delta0=1.0, L=2.0, sigma_sq=0.5, offset=4)
    assert bd.step_size == pytest.approx(2 / 2.0)  # gamma0 = sqrt(offset)/L: first step 1/L
    assert bd.schedule(0) == pytest.approx(0.5)
    np.testing.assert_allclose(bd.schedule(np.array([0, 5])), [0.5, 1 / 3])
    assert bd.a == 2.0 and bd.b == pytest.approx(1.0)
    T = bd.iterations_to(0.1)
    assert bd.bits_per_worker_to(0.1, 10.0, initial_bits=3.0) == 3.0 + 10.0 * T


# ------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    ("call", "arg"),
    [
        (lambda: bounds.onebit_message_mse(10, "bound", R=0.0), "R"),
        (lambda: bounds.onebit_message_mse(10, "bound", R=-1.0), "R"),
        (lambda: bounds.onebit_message_mse(10, "bound"), "R"),
        (lambda: bounds.onebit_message_mse(10, "l2"), "norm_sq"),
        (lambda: bounds.onebit_message_mse(10, "l2", norm_sq=-1.0), "norm_sq"),
        (lambda: bounds.onebit_message_mse(10, "sign", R=1.0), "scale"),
        (lambda: bounds.onebit_message_mse(0, "l2", norm_sq=1.0), "dim"),
        (lambda: bounds.probability_weight_sq_norm(8, 2, 1.0), "p"),
        (lambda: bounds.probability_weight_sq_norm(8, 2, -0.1), "p"),
        (lambda: bounds.replication_straggler_variance(2, 1.5, 1.0), "p"),
        (lambda: bounds.replication_straggler_variance(2, 0.1, -1.0), "G"),
        (lambda: bounds.count_weight_sq_norm(8, 1, 0), "answering"),
        (lambda: bounds.frc_weight_sq_norm(8, 2), "n"),
        (lambda: bounds.probability_coefficient_covariance(np.eye(3)[:, :2] * [1, 2], 0.1), "B"),
        (lambda: bounds.coded_convex_bound(dist0_sq=1.0, L=2.0, sigma_sq=1.0, gamma=0.6), "gamma"),
        (lambda: bounds.coded_convex_bound(dist0_sq=-1.0, L=2.0, sigma_sq=1.0), "dist0_sq"),
        (lambda: bounds.coded_convex_bound(dist0_sq=1.0, L=0.0, sigma_sq=1.0), "L"),
        (lambda: bounds.coded_nonconvex_bound(delta0=1.0, L=2.0, sigma_sq=1.0, gamma=0.6), "gamma"),
        (lambda: bounds.coded_nonconvex_bound(delta0=1.0, L=2.0, sigma_sq=-1.0), "sigma_sq"),
        (
            lambda: bounds.coded_convex_diminishing_bound(
                dist0_sq=1.0, L=2.0, sigma_sq=1.0, gamma0=0.6
            ),
            "gamma0",
        ),
        (
            lambda: bounds.coded_nonconvex_diminishing_bound(
                delta0=1.0, L=2.0, sigma_sq=1.0, offset=0
            ),
            "offset",
        ),
        (lambda: bounds.horizon_step_size(10, L=1.0, c=0.0), "c"),
        (lambda: bounds.horizon_step_size(0, L=1.0, c=1.0), "T"),
        (lambda: bounds.convex_horizon_constant(dist0_sq=1.0, sigma_sq=0.0), "sigma_sq"),
        (lambda: bounds.message_norm_bounds(np.ones((2, 3)), [1.0, 2.0]), "partition_grad_bound"),
        (lambda: bounds.quantization_variance([1.0, 1.0], [1.0, 1.0, 1.0]), "message_mse"),
        (lambda: bounds.straggler_variance_at(np.eye(2), np.ones((3, 4))), "partition_grads"),
        (lambda: bounds.straggler_variance_bound(np.ones((2, 3)), 1.0), "coefficient_second"),
        (lambda: bounds.decoding_moments_from_weights(np.ones((2, 3)), np.ones((4, 2))), "weights"),
        (
            lambda: bounds.decoding_moments_from_weights(
                np.ones((2, 3)), np.ones((3, 2)), [0.5, 0.6]
            ),
            "probs",
        ),
        (lambda: bounds.step_sums(10, 0), "offset"),
        (
            lambda: bounds.coded_variance(
                sim.decoding_moments(sim.frc(4, 1), sim.bernoulli_stragglers(0.3)),
                sim.frc(4, 1).B,
                dim=3,
                scale="l2",
                partition_grad_bound=1.0,
            ),
            "moments",
        ),
        (lambda: bounds.count_rescaling_moments(np.eye(4), stragglers=4), "stragglers"),
        (lambda: bounds.frc_moments(8, 1, 2), "stragglers"),
        (lambda: bounds.probability_rescaling_moments(np.eye(4), p=1.0), "p"),
        (lambda: bounds.probability_rescaling_moments(np.eye(4), p=0.1, law_p=2.0), "law_p"),
        (
            lambda: bounds.moments_from_weight_law(
                np.eye(3), np.ones(2), np.eye(3), weight_sq_norm_max=1.0
            ),
            "mean",
        ),
        (lambda: sim.decoding_moments(sim.frc(4, 1), sim.exactly_stragglers(4)), "s"),
        (lambda: sim.decoding_moments(sim.frc(4, 1), sim.everyone(), max_masks=0), "max_masks"),
    ],
)
def test_bad_input_names_the_argument(call, arg):
    with pytest.raises(ValueError, match=arg):
        call()


def test_wrong_types():
    with pytest.raises(TypeError, match="participation"):
        sim.decoding_moments(sim.frc(4, 1), "bernoulli")
    with pytest.raises(TypeError, match="code"):
        sim.decoding_moments(np.eye(4), sim.everyone())


def test_records_say_what_they_bound():
    cb = bounds.coded_convex_bound(dist0_sq=1.0, L=1.0, sigma_sq=1.0)
    nb = bounds.coded_nonconvex_bound(delta0=1.0, L=1.0, sigma_sq=1.0)
    assert "f(x^t) − f*" in cb.quantity and "x̄_T" in cb.quantity
    assert nb.quantity == bounds.SublinearBound(1.0, 0.0, 1.0, "t").quantity
    assert "||∇f" in nb.quantity
    assert cb.transient == pytest.approx(0.5) and cb.floor == pytest.approx(1.0)  # gamma = 1/L
    for b in (cb, nb):
        assert any("unbiased" in a.lower() or "E[g^t" in a for a in b.assumptions)
        assert "2403.14716" in b.theorem
