"""The aggregators against independent solutions computed here from the papers' definitions.

The references are solved in the parameter space with scipy / numpy (primal definitions where the code
under test solves a dual on the Gram matrix), never by calling the code under test.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import tensorflow as tf
from scipy import optimize

from mtl_keras.balancers.aggregators import (
    IMTL,
    MGDA,
    AlignedMTL,
    CAGrad,
    DualProj,
    GradDrop,
    GradVac,
    NashMTL,
    PCGrad,
    UPGrad,
)

CASES = [(3, 0), (3, 1), (4, 2), (4, 3)]  # (number of tasks, seed)
NUM_PARAMS = 6
TOL = 1e-4


def random_jacobian(num_tasks: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(num_tasks, NUM_PARAMS))


def aggregate(aggregator: object, jacobian: np.ndarray) -> np.ndarray:
    return aggregator.aggregate(tf.constant(jacobian, tf.float64)).numpy()  # type: ignore[attr-defined]


# === Independent references ===


def slsqp(fun, x0, constraints, jac=None, bounds=None) -> np.ndarray:  # type: ignore[no-untyped-def]
    result = optimize.minimize(
        fun,
        x0,
        jac=jac,
        bounds=bounds,
        constraints=constraints,
        method="SLSQP",
        options={"ftol": 1e-12, "maxiter": 2000},
    )
    assert result.success, result.message
    return np.asarray(result.x)


def min_norm_in_hull(jacobian: np.ndarray) -> np.ndarray:
    """MGDA: the minimum-norm point of the convex hull of the rows."""
    num = len(jacobian)
    gram = jacobian @ jacobian.T
    weights = slsqp(
        lambda w: w @ gram @ w,
        np.full(num, 1.0 / num),
        [{"type": "eq", "fun": lambda w: w.sum() - 1.0}],
        jac=lambda w: 2.0 * gram @ w,
        bounds=[(0.0, 1.0)] * num,
    )
    return weights @ jacobian


def project_onto_dual_cone(jacobian: np.ndarray, vector: np.ndarray) -> np.ndarray:
    """argmin ‖x − vector‖ subject to J x ≥ 0, solved in the parameter space."""
    return slsqp(
        lambda x: 0.5 * np.sum((x - vector) ** 2),
        vector,
        [{"type": "ineq", "fun": lambda x: jacobian @ x, "jac": lambda x: jacobian}],
        jac=lambda x: x - vector,
    )


def cagrad_primal(jacobian: np.ndarray, c: float) -> np.ndarray:
    """max_d min_i g_iᵀ d subject to ‖d − g0‖ ≤ c ‖g0‖ (the paper's primal problem), as (d, τ)."""
    g0 = jacobian.mean(axis=0)
    radius = c * np.linalg.norm(g0)
    ones = np.ones((len(jacobian), 1))
    solution = slsqp(
        lambda v: -v[-1],
        np.append(g0, np.min(jacobian @ g0)),
        [
            {
                "type": "ineq",
                "fun": lambda v: jacobian @ v[:-1] - v[-1],
                "jac": lambda v: np.hstack([jacobian, -ones]),
            },
            {
                "type": "ineq",
                "fun": lambda v: radius**2 - np.sum((v[:-1] - g0) ** 2),
                "jac": lambda v: np.append(-2.0 * (v[:-1] - g0), 0.0),
            },
        ],
        jac=lambda v: np.append(np.zeros(len(v) - 1), -1.0),
    )
    return solution[:-1]


def nash_bargaining(jacobian: np.ndarray) -> np.ndarray:
    """d = Jᵀ α with α > 0 solving G α = 1/α."""
    gram = jacobian @ jacobian.T
    result = optimize.root(lambda a: gram @ a - 1.0 / a, 1.0 / np.sqrt(np.diag(gram)), tol=1e-12)
    assert result.success and np.all(result.x > 0), result.message
    return np.asarray(result.x) @ jacobian


def imtl_g(jacobian: np.ndarray) -> np.ndarray:
    """IMTL-G closed form of the paper: α_{2:T} = g_1 Uᵀ (D Uᵀ)⁻¹, α_1 = 1 − Σ α_{2:T}."""
    units = jacobian / np.linalg.norm(jacobian, axis=1, keepdims=True)
    diff_g = jacobian[:1] - jacobian[1:]
    diff_u = units[:1] - units[1:]
    rest = jacobian[0] @ diff_u.T @ np.linalg.inv(diff_g @ diff_u.T)
    alpha = np.concatenate([[1.0 - rest.sum()], rest])
    return alpha @ jacobian


def aligned(jacobian: np.ndarray) -> np.ndarray:
    """Sum of the rows of σ_min U Wᵀ (J = U Σ Wᵀ), the closest matrix with equal singular values."""
    u, s, wt = np.linalg.svd(jacobian, full_matrices=False)
    return (s.min() * u @ wt).sum(axis=0)


def pcgrad_numpy(jacobian: np.ndarray, orders: tuple[tuple[int, ...], ...]) -> np.ndarray:
    """PCGrad with the given order of the other tasks for every task, projecting on the original g_j."""
    projected = []
    for i, order in enumerate(orders):
        g = jacobian[i].copy()
        for j in order:
            dot = g @ jacobian[j]
            if dot < 0:
                g -= dot / (jacobian[j] @ jacobian[j]) * jacobian[j]
        projected.append(g)
    return np.sum(projected, axis=0)


def all_orders(num_tasks: int) -> list[tuple[tuple[int, ...], ...]]:
    per_task = [
        list(itertools.permutations([j for j in range(num_tasks) if j != i])) for i in range(num_tasks)
    ]
    return list(itertools.product(*per_task))


# === Deterministic aggregators ===


@pytest.mark.parametrize(("num_tasks", "seed"), CASES)
def test_mgda(num_tasks: int, seed: int) -> None:
    jacobian = random_jacobian(num_tasks, seed)
    np.testing.assert_allclose(aggregate(MGDA(), jacobian), min_norm_in_hull(jacobian), atol=TOL)


@pytest.mark.parametrize(("num_tasks", "seed"), CASES)
def test_upgrad(num_tasks: int, seed: int) -> None:
    jacobian = random_jacobian(num_tasks, seed)
    expected = np.mean([project_onto_dual_cone(jacobian, g) for g in jacobian], axis=0)
    np.testing.assert_allclose(aggregate(UPGrad(), jacobian), expected, atol=TOL)


@pytest.mark.parametrize(("num_tasks", "seed"), CASES)
def test_dualproj(num_tasks: int, seed: int) -> None:
    jacobian = random_jacobian(num_tasks, seed)
    expected = project_onto_dual_cone(jacobian, jacobian.mean(axis=0))
    np.testing.assert_allclose(aggregate(DualProj(), jacobian), expected, atol=TOL)


@pytest.mark.parametrize("c", [0.5, 0.9])
@pytest.mark.parametrize(("num_tasks", "seed"), CASES)
def test_cagrad(num_tasks: int, seed: int, c: float) -> None:
    jacobian = random_jacobian(num_tasks, seed)
    expected = cagrad_primal(jacobian, c)
    np.testing.assert_allclose(aggregate(CAGrad(c=c, rescale=0), jacobian), expected, atol=TOL)
    np.testing.assert_allclose(aggregate(CAGrad(c=c, rescale=1), jacobian), expected / (1 + c**2), atol=TOL)


@pytest.mark.parametrize(("num_tasks", "seed"), CASES)
def test_nash_mtl(num_tasks: int, seed: int) -> None:
    jacobian = random_jacobian(num_tasks, seed)
    expected = nash_bargaining(jacobian)
    np.testing.assert_allclose(aggregate(NashMTL(max_norm=None), jacobian), expected, atol=1e-3)
    clipped = expected / max(1.0, np.linalg.norm(expected))
    np.testing.assert_allclose(aggregate(NashMTL(max_norm=1.0), jacobian), clipped, atol=1e-3)


@pytest.mark.parametrize(("num_tasks", "seed"), CASES)
def test_imtl(num_tasks: int, seed: int) -> None:
    jacobian = random_jacobian(num_tasks, seed)
    np.testing.assert_allclose(aggregate(IMTL(), jacobian), imtl_g(jacobian), atol=TOL)


@pytest.mark.parametrize(("num_tasks", "seed"), CASES)
def test_aligned_mtl(num_tasks: int, seed: int) -> None:
    jacobian = random_jacobian(num_tasks, seed)
    np.testing.assert_allclose(aggregate(AlignedMTL(), jacobian), aligned(jacobian), atol=TOL)


def test_aligned_mtl_rank_deficient() -> None:
    """More tasks than parameters: only the non-zero singular values are aligned."""
    jacobian = np.random.default_rng(5).normal(size=(4, 2))
    np.testing.assert_allclose(aggregate(AlignedMTL(), jacobian), aligned(jacobian), atol=TOL)


# === Absent tasks (zero rows) ===

ABSENT = [
    # (aggregator, factor): result with a zero row == factor(T) * result without it.
    (MGDA, lambda t: 1.0),
    (IMTL, lambda t: 1.0),
    (NashMTL, lambda t: 1.0),
    (AlignedMTL, lambda t: 1.0),
    (UPGrad, lambda t: (t - 1) / t),
    (DualProj, lambda t: (t - 1) / t),
    (CAGrad, lambda t: (t - 1) / t),
]


@pytest.mark.parametrize(("cls", "factor"), ABSENT, ids=[cls.__name__ for cls, _ in ABSENT])
def test_zero_row_is_an_absent_task(cls: type, factor) -> None:  # type: ignore[no-untyped-def]
    present = random_jacobian(3, 7)
    with_absent = np.insert(present, 1, 0.0, axis=0)
    expected = factor(4) * aggregate(cls(), present)
    np.testing.assert_allclose(aggregate(cls(), with_absent), expected, atol=TOL)


# === Randomised aggregators ===


def test_pcgrad_matches_one_of_the_orders() -> None:
    jacobian = random_jacobian(3, 11)
    candidates = {orders: pcgrad_numpy(jacobian, orders) for orders in all_orders(3)}
    aggregator = PCGrad(seed=0)
    seen = set()
    for _ in range(12):
        result = aggregate(aggregator, jacobian)
        matches = [orders for orders, value in candidates.items() if np.allclose(result, value, atol=1e-10)]
        assert matches, result
        seen.update(matches)
    assert len(seen) > 1  # the orders really are drawn at random


def test_pcgrad_two_tasks_order_independent() -> None:
    jacobian = np.array([[1.0, -2.0, 0.5], [-1.0, 1.0, 3.0]])
    expected = pcgrad_numpy(jacobian, ((1,), (0,)))
    for seed in range(3):
        np.testing.assert_allclose(aggregate(PCGrad(seed=seed), jacobian), expected, atol=1e-10)


def gradvac_two_tasks(jacobian: np.ndarray, steps: int, beta: float) -> list[np.ndarray]:
    """Algorithm 1 of the GradVac paper for two tasks (the order of the other tasks is trivial)."""
    targets = np.zeros((2, 2))
    results = []
    for _ in range(steps):
        modified = []
        for i, j in ((0, 1), (1, 0)):
            g = jacobian[i].copy()
            cos = g @ jacobian[j] / (np.linalg.norm(g) * np.linalg.norm(jacobian[j]))
            target = targets[i, j]
            if cos < target:
                g += (
                    np.linalg.norm(g)
                    * (target * np.sqrt(1 - cos**2) - cos * np.sqrt(1 - target**2))
                    / (np.linalg.norm(jacobian[j]) * np.sqrt(1 - target**2))
                    * jacobian[j]
                )
            targets[i, j] = (1 - beta) * target + beta * cos
            modified.append(g)
        results.append(np.sum(modified, axis=0))
    return results


def test_gradvac_two_tasks() -> None:
    jacobian = np.array([[-4.0, 1.0, 1.0], [6.0, 1.0, 1.0]])
    for beta in (0.01, 0.5):
        aggregator = GradVac(beta=beta, seed=0)
        for expected in gradvac_two_tasks(jacobian, 4, beta):
            np.testing.assert_allclose(aggregate(aggregator, jacobian), expected, atol=1e-10)
        # The first call, with all targets at 0, is PCGrad.
        np.testing.assert_allclose(
            aggregate(GradVac(beta=beta), jacobian), [0.5848, 3.8012, 3.8012], atol=1e-4
        )


def test_gradvac_first_call_is_pcgrad() -> None:
    jacobian = random_jacobian(3, 13)
    candidates = [pcgrad_numpy(jacobian, orders) for orders in all_orders(3)]
    result = aggregate(GradVac(seed=4), jacobian)
    assert any(np.allclose(result, value, atol=1e-10) for value in candidates)


def test_graddrop_keeps_one_sign_per_coordinate() -> None:
    jacobian = np.random.default_rng(3).normal(size=(3, 200))
    positive = np.where(jacobian > 0, jacobian, 0.0).sum(axis=0)
    negative = np.where(jacobian < 0, jacobian, 0.0).sum(axis=0)
    result = aggregate(GradDrop(seed=0), jacobian)
    kept_positive = np.isclose(result, positive, atol=1e-12)
    assert np.all(kept_positive | np.isclose(result, negative, atol=1e-12))
    # The positive side is kept with probability P = ½ (1 + Σ g / Σ |g|): about 100 of 200 here.
    purity = 0.5 * (1 + jacobian.sum(axis=0) / np.abs(jacobian).sum(axis=0))
    assert abs(kept_positive.sum() - purity.sum()) < 4 * np.sqrt(np.sum(purity * (1 - purity)))


def test_graddrop_agreeing_signs_and_leak() -> None:
    jacobian = np.abs(np.random.default_rng(4).normal(size=(3, 20))) * np.sign(np.arange(20) - 9.5)
    np.testing.assert_allclose(aggregate(GradDrop(seed=1), jacobian), jacobian.sum(axis=0), atol=1e-12)
    mixed = np.random.default_rng(5).normal(size=(3, 20))
    np.testing.assert_allclose(aggregate(GradDrop(leak=1.0), mixed), mixed.sum(axis=0), atol=1e-12)


# === Scale ===

EQUIVARIANT = [MGDA, UPGrad, DualProj, CAGrad, IMTL, AlignedMTL, PCGrad]


@pytest.mark.parametrize("scale", [1e18, 1e-18])
@pytest.mark.parametrize("cls", EQUIVARIANT, ids=[cls.__name__ for cls in EQUIVARIANT])
def test_float32_extreme_scales(cls: type, scale: float) -> None:
    """A(k J) = k A(J) for float32 gradients whose Gram matrix over- or underflows float32."""
    jacobian = random_jacobian(3, 9)
    result = cls().aggregate(tf.constant(scale * jacobian, tf.float32)).numpy()
    np.testing.assert_allclose(result / scale, aggregate(cls(), jacobian), rtol=1e-4, atol=1e-5)


def test_nash_mtl_is_scale_invariant() -> None:
    jacobian = random_jacobian(3, 9)
    result = NashMTL(max_norm=None).aggregate(tf.constant(1e18 * jacobian, tf.float32)).numpy()
    np.testing.assert_allclose(result, nash_bargaining(jacobian), atol=1e-3)


def test_graddrop_counter_uniform_is_uniform_and_independent() -> None:
    """The counter-based draws: uniform on [0, 1) (chi² over 64 bins), uncorrelated between neighbouring
    coordinates and between calls, reproducible, and a block's draws equal the same coordinates drawn whole."""
    from scipy import stats

    from mtl_keras.balancers.aggregators.graddrop import _keys, counter_uniform

    size = 200_000
    first = counter_uniform(0, size, *_keys(tf.constant([7, 0], tf.int64)), tf.float64).numpy()
    second = counter_uniform(0, size, *_keys(tf.constant([7, 1], tf.int64)), tf.float64).numpy()
    other_seed = counter_uniform(0, size, *_keys(tf.constant([8, 0], tf.int64)), tf.float64).numpy()
    for draws in (first, second, other_seed):
        assert draws.min() >= 0.0 and draws.max() < 1.0
        counts, _ = np.histogram(draws, bins=64, range=(0.0, 1.0))
        assert stats.chisquare(counts).pvalue > 1e-4
        assert abs(np.corrcoef(draws[:-1], draws[1:])[0, 1]) < 0.01
    assert abs(np.corrcoef(first, second)[0, 1]) < 0.01
    assert abs(np.corrcoef(first, other_seed)[0, 1]) < 0.01
    again = counter_uniform(0, size, *_keys(tf.constant([7, 0], tf.int64)), tf.float64).numpy()
    np.testing.assert_array_equal(first, again)
    part = counter_uniform(1000, 500, *_keys(tf.constant([7, 0], tf.int64)), tf.float64).numpy()
    np.testing.assert_array_equal(part, first[1000:1500])


@pytest.mark.parametrize("num_tasks", [8, 12])
def test_many_tasks(num_tasks: int) -> None:
    """T = 8 solves its (T+1)-systems by unrolled elimination, T = 12 by tf.linalg.solve: both match the
    independent solutions. (CAGrad uses the same solver; its SLSQP reference fails to converge at T = 8.)"""
    jacobian = np.random.default_rng(num_tasks).normal(size=(num_tasks, 20))
    np.testing.assert_allclose(aggregate(MGDA(), jacobian), min_norm_in_hull(jacobian), atol=TOL)
    expected = np.mean([project_onto_dual_cone(jacobian, g) for g in jacobian], axis=0)
    np.testing.assert_allclose(aggregate(UPGrad(), jacobian), expected, atol=TOL)
    expected = project_onto_dual_cone(jacobian, jacobian.mean(axis=0))
    np.testing.assert_allclose(aggregate(DualProj(), jacobian), expected, atol=TOL)
    np.testing.assert_allclose(
        aggregate(NashMTL(max_norm=None), jacobian), nash_bargaining(jacobian), atol=1e-3
    )


# === Edges (docs/methods.md, "Gradient aggregators") ===


def test_mean_is_exact_in_float64() -> None:
    """1/T is formed in the Jacobian's dtype, not rounded through float32."""
    from mtl_keras.balancers.aggregators import Mean

    jacobian = random_jacobian(3, 21)
    np.testing.assert_allclose(aggregate(Mean(), jacobian), jacobian.mean(axis=0), rtol=1e-15, atol=1e-15)


def test_imtl_rank_deficient_is_a_zero_step() -> None:
    """Three tasks in a 2-D parameter space: the only equal-projection direction is 0."""
    jacobian = np.array([[1.0, 0.2], [-0.3, 1.0], [0.5, 0.5]])
    assert np.linalg.matrix_rank(jacobian) < len(jacobian)
    np.testing.assert_allclose(aggregate(IMTL(), jacobian), np.zeros(2), atol=1e-8)


def dual_cone_trace_normalised(jacobian: np.ndarray, lower: np.ndarray, eps: float) -> np.ndarray:
    """TorchJD's convention: w = argmin_{w ≥ lower} ½ wᵀ (G / tr(G) + ε I) w, returned as Jᵀ w."""
    gram = jacobian @ jacobian.T
    h = gram / np.trace(gram) + eps * np.eye(len(gram))
    w = slsqp(
        lambda w: 0.5 * w @ h @ w,
        lower + 1.0,
        [],
        jac=lambda w: h @ w,
        bounds=[(lo, None) for lo in lower],
    )
    return w @ jacobian


@pytest.mark.parametrize("num_tasks", [2, 3, 5])
def test_dual_cone_eps_conversion_to_trace_normalisation(num_tasks: int) -> None:
    """eps = ε · tr(G) / ‖G‖_F reproduces the trace-normalised regulariser ε (TorchJD's)."""
    jacobian = random_jacobian(num_tasks, 30 + num_tasks)
    jacobian[1] = 0.5 * jacobian[1] - jacobian[0]  # a conflict, so that ε matters
    gram = jacobian @ jacobian.T
    epsilon = 0.05  # large, so that the two conventions differ visibly
    ours = epsilon * np.trace(gram) / np.linalg.norm(gram)
    expected = np.mean(
        [dual_cone_trace_normalised(jacobian, row, epsilon) for row in np.eye(num_tasks)], axis=0
    )
    np.testing.assert_allclose(aggregate(UPGrad(eps=ours), jacobian), expected, atol=1e-6)
    assert not np.allclose(aggregate(UPGrad(eps=epsilon), jacobian), expected, atol=1e-4)
    mean = np.full(num_tasks, 1.0 / num_tasks)
    np.testing.assert_allclose(
        aggregate(DualProj(eps=ours), jacobian),
        dual_cone_trace_normalised(jacobian, mean, epsilon),
        atol=1e-6,
    )


# === Hard Jacobians (issue 15): the optimum's objective, computed here with SciPy, to 1e-4 relative ===

_BASE = np.array([[1.0, 2.0, 0.0, 1.0], [0.5, -1.0, 2.0, 0.0], [-1.0, 0.3, 0.4, 2.0]])
HARD = {
    "opposite rows": np.array([_BASE[0], -_BASE[0], _BASE[1]]),
    "duplicated row": np.array([_BASE[0], _BASE[0], _BASE[1]]),
    "rank < T, 0 outside the hull": np.array([_BASE[0], _BASE[1], _BASE[0] + _BASE[1]]),
    "rank < T, 0 inside the hull": np.array([_BASE[0], _BASE[1], -(_BASE[0] + _BASE[1])]),
    "rank < T, 0 strictly inside the hull, g0 != 0": np.array(
        [_BASE[0], _BASE[1], -(_BASE[0] + _BASE[1]) / 2]
    ),
}


def _scale(jacobian: np.ndarray) -> float:
    return float(np.max(np.sum(jacobian**2, axis=1)))


@pytest.mark.parametrize("name", list(HARD))
def test_hard_mgda(name: str) -> None:
    jacobian = HARD[name]
    expected = np.sum(min_norm_in_hull(jacobian) ** 2)
    assert abs(np.sum(aggregate(MGDA(), jacobian) ** 2) - expected) <= 1e-4 * _scale(jacobian)


@pytest.mark.parametrize("name", list(HARD))
def test_hard_dual_cone(name: str) -> None:
    jacobian = HARD[name]
    scale = _scale(jacobian)
    mean = jacobian.mean(axis=0)
    result = aggregate(DualProj(), jacobian)
    assert np.all(jacobian @ result >= -1e-6 * scale)
    expected = np.sum((project_onto_dual_cone(jacobian, mean) - mean) ** 2)
    assert abs(np.sum((result - mean) ** 2) - expected) <= 1e-4 * scale
    expected_up = np.mean([project_onto_dual_cone(jacobian, g) for g in jacobian], axis=0)
    np.testing.assert_allclose(aggregate(UPGrad(), jacobian), expected_up, atol=1e-4 * np.sqrt(scale))


def cagrad_dual_value_t3(jacobian: np.ndarray, c: float) -> float:
    """min over the simplex of g_wᵀ g0 + c‖g0‖ ‖g_w‖ for T = 3 by nested grids (no solver: these duals have
    their minimum at a kink, where SLSQP stops); equals the primal optimum by strong duality."""
    gram = jacobian @ jacobian.T
    mean = np.full(3, 1.0 / 3.0)
    radius = c * np.sqrt(mean @ gram @ mean)
    center, width = np.array([1.0 / 3.0, 1.0 / 3.0]), 1.0
    best = np.inf
    for _ in range(6):
        a, b = np.meshgrid(*(np.linspace(x - width, x + width, 401) for x in center), indexing="ij")
        w = np.stack([a.ravel(), b.ravel(), 1.0 - a.ravel() - b.ravel()], axis=1)
        w = w[np.all(w >= 0.0, axis=1)]
        values = w @ gram @ mean + radius * np.sqrt(np.maximum(np.einsum("ni,ij,nj->n", w, gram, w), 0.0))
        k = int(np.argmin(values))
        best, center, width = min(best, float(values[k])), w[k, :2], width / 50.0
    return best


def test_hard_cagrad() -> None:
    """The worst improvement min_i g_iᵀ d of CAGrad's d equals the optimum (the dual's value), d in the ball."""
    failures = []
    for name, jacobian in HARD.items():
        scale = _scale(jacobian)
        g0 = jacobian.mean(axis=0)
        expected = cagrad_dual_value_t3(jacobian, 0.5)
        result = aggregate(CAGrad(c=0.5, rescale=0), jacobian)
        inside = np.linalg.norm(result - g0) <= 0.5 * np.linalg.norm(g0) * (1 + 1e-6) + 1e-9
        if not (inside and abs(np.min(jacobian @ result) - expected) <= 1e-4 * scale):
            failures.append(name)
    assert not failures, failures


@pytest.mark.parametrize("seed", range(6))
def test_cagrad_on_random_rank_deficient_jacobians(seed: int) -> None:
    """Rank(J) < T = 3 (rank 1 and 2): CAGrad's d stays in the ball and reaches the optimum (nested-grid dual)."""
    rng = np.random.default_rng(seed)
    for rank in (1, 2):
        jacobian = rng.normal(size=(3, rank)) @ rng.normal(size=(rank, 6))
        scale = _scale(jacobian)
        g0 = jacobian.mean(axis=0)
        result = aggregate(CAGrad(c=0.5, rescale=0), jacobian)
        assert np.linalg.norm(result - g0) <= 0.5 * np.linalg.norm(g0) * (1 + 1e-6) + 1e-9
        expected = cagrad_dual_value_t3(jacobian, 0.5)
        assert abs(np.min(jacobian @ result) - expected) <= 1e-4 * scale, (seed, rank)
