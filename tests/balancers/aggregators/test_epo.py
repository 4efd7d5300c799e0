"""EPO against its linear programme solved here by enumerating the vertices of the feasible polytope, and its
claimed behaviour: gradient descent with its direction ends on the requested preference ray, on the front.

The LP is written here from the paper's definitions (Mahapatra & Rajan 2020, section 4), not with the
implementation's helpers: with l̂ = r⊙l / Σ r⊙l, μ = Σ l̂ log(m l̂), a = r ⊙ (log(m l̂) − μ) and c = G a,
balance mode maximises cᵀα, descent mode Σ (Gα), over the simplex with the mode's constraints.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import tensorflow as tf
from hard_jacobians import ALL, present
from scipy import optimize

from mtl_keras.balancers.aggregators import EPO


def lp_problem(gram: np.ndarray, losses: np.ndarray, r: np.ndarray, eps: float):
    """(objective, A, b) of max objectiveᵀα s.t. Aα ≥ b, α on the simplex; all tasks present and r > 0."""
    m = len(losses)
    weighted = r * losses
    share = weighted / weighted.sum()
    mu = float(np.sum(share * np.log(m * share)))
    a = r * (np.log(m * share) - mu)
    c = gram @ a
    if mu > eps:
        if np.all(c <= 0):
            return c, gram, np.zeros(m)
        keep = [j for j in range(m) if weighted[j] == weighted.max() or c[j] <= 0]
        bounds = np.array([0.0 if weighted[j] == weighted.max() else c[j] for j in keep])
        return c, gram[keep], bounds
    matrix = np.vstack([gram, c[None, :]])
    return gram.sum(axis=0), matrix, np.concatenate([np.zeros(m), [min(c.max(), 0.0)]])


def vertex_optimum(objective: np.ndarray, matrix: np.ndarray, bounds: np.ndarray) -> float:
    """The LP's optimal value by enumerating vertices: T − 1 active inequalities plus Σα = 1."""
    m = len(objective)
    rows = np.vstack([np.eye(m), matrix])  # α ≥ 0, then Aα ≥ b
    rhs = np.concatenate([np.zeros(m), bounds])
    best = -np.inf
    for active in itertools.combinations(range(len(rows)), m - 1):
        system = np.vstack([rows[list(active)], np.ones((1, m))])
        if abs(np.linalg.det(system)) < 1e-12:
            continue
        alpha = np.linalg.solve(system, np.concatenate([rhs[list(active)], [1.0]]))
        scale = 1e-9 * max(1.0, np.abs(rows).max())
        if np.all(rows @ alpha >= rhs - scale):
            best = max(best, float(objective @ alpha))
    assert np.isfinite(best), "the LP is infeasible"
    return best


def epo_alpha(jacobian: np.ndarray, losses: np.ndarray, r: np.ndarray, eps: float = 1e-4) -> np.ndarray:
    aggregator = EPO(preference=list(r), eps=eps)
    aggregator.observe_losses(tf.constant(losses, tf.float64))
    return aggregator.row_weights(tf.constant(jacobian @ jacobian.T)).numpy()


CASES = [name for name, j in ALL.items() if present(j).all()]


@pytest.mark.parametrize("mode", ["balance", "descent"])
@pytest.mark.parametrize("name", CASES)
def test_weights_solve_the_linear_programme(name: str, mode: str) -> None:
    jacobian = ALL[name]
    num_tasks = len(jacobian)
    rng = np.random.default_rng(len(name))
    r = rng.uniform(0.2, 1.0, num_tasks)
    # On the ray (descent) the losses are 1/r; off it they are random.
    losses = 1.0 / r if mode == "descent" else rng.uniform(0.2, 3.0, num_tasks)
    gram = jacobian @ jacobian.T
    scaled = gram / np.diag(gram).max()  # the LP is posed on G / max diag (same solutions)
    objective, matrix, bounds = lp_problem(scaled, losses, r, 1e-4)
    alpha = epo_alpha(jacobian, losses, r)
    assert np.all(alpha >= -1e-12) and abs(alpha.sum() - 1.0) < 1e-9
    feasible = np.all(matrix @ alpha >= bounds - 1e-7 * np.abs(matrix).max())
    best = vertex_optimum(objective, matrix, bounds)
    if feasible:
        np.testing.assert_allclose(objective @ alpha, best, rtol=1e-6, atol=1e-9 * np.abs(objective).max())
    else:  # pragma: no cover - only when the enumeration finds no feasible vertex, which fails above
        pytest.fail(f"EPO's α violates the LP's constraints: {matrix @ alpha - bounds}")


def test_absent_tasks_and_zero_preferences_get_no_weight_and_nothing_is_nan() -> None:
    jacobian = ALL["zero row"]
    alpha = epo_alpha(jacobian, np.array([1.0, 0.0, 2.0]), np.array([0.5, 0.5, 0.5]))
    assert alpha[1] == 0 and np.all(np.isfinite(alpha)) and abs(alpha.sum() - 1) < 1e-9
    # r = (1, 0): only task 0 is on the ray; on it, the step descends task 0 alone (in the LP's sense).
    jacobian = ALL["T=2"]
    alpha = epo_alpha(jacobian, np.array([1.0, 5.0]), np.array([1.0, 0.0]))
    g = jacobian @ jacobian.T
    assert (g @ alpha)[0] == pytest.approx(max(g[0, 0], g[0, 1]), rel=1e-9)
    assert np.all(epo_alpha(np.zeros((2, 3)), np.array([1.0, 1.0]), np.array([1.0, 1.0])) == 0)


@pytest.mark.parametrize("preference", [(0.5, 0.5), (0.2, 0.8), (0.4, 0.35, 0.25)])
def test_descent_ends_on_the_preference_ray_and_on_the_front(preference) -> None:
    # L_i = |θ − e_i|²: the Pareto set is the simplex spanned by the unit vectors e_i; these rays cross it.
    r = np.array(preference)
    num_tasks = len(r)
    targets = tf.constant(np.eye(num_tasks))
    theta = tf.Variable(np.full(num_tasks, -1.0) + np.arange(num_tasks), dtype=tf.float64)
    aggregator = EPO(preference=list(r))

    @tf.function
    def step() -> tf.Tensor:
        with tf.GradientTape() as tape:
            losses = tf.reduce_sum((theta[None, :] - targets) ** 2, axis=1)
        jacobian = tape.jacobian(losses, theta)
        aggregator.observe_losses(losses)
        theta.assign_sub(0.05 * aggregator.aggregate(jacobian))
        return losses

    for _ in range(600):
        losses = step()
    weighted = r * losses.numpy()
    # Within EPO's eps (μ ≤ 1e-4): for two tasks the ratio is ≤ 1 + 2·sqrt(2·eps) ≈ 1.028.
    assert weighted.max() / weighted.min() < (1.03 if num_tasks == 2 else 1.05), weighted
    assert float(tf.reduce_sum(theta)) == pytest.approx(1.0, abs=1e-6)  # on the front
    np.testing.assert_allclose(theta.numpy(), _ray_point(r), atol=0.01)


def _ray_point(r: np.ndarray) -> np.ndarray:
    """θ with Σ θ = 1 and r_i |θ − e_i|² equal for all i (unknowns θ and the common value k)."""
    eye = np.eye(len(r))

    def equations(z: np.ndarray) -> np.ndarray:
        theta, k = z[:-1], z[-1]
        return np.concatenate([r * np.sum((theta - eye) ** 2, axis=1) - k, [theta.sum() - 1.0]])

    solution = optimize.fsolve(equations, np.concatenate([np.full(len(r), 1.0 / len(r)), [1.0]]), xtol=1e-12)
    assert np.max(np.abs(equations(solution))) < 1e-9
    return solution[:-1]


def test_options_are_checked_and_saved() -> None:
    with pytest.raises(ValueError, match="preference"):
        EPO(preference=[0.0, 0.0])
    with pytest.raises(ValueError, match="eps"):
        EPO(eps=0.0)
    aggregator = EPO(preference=[1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="one entry per task"):
        aggregator.aggregate(tf.ones((2, 4)))
    assert EPO.from_config(EPO(preference=[1.0, 2.0], eps=1e-3).get_config()).get_config() == {
        "preference": [1.0, 2.0],
        "eps": 1e-3,
    }


@pytest.mark.parametrize("preference", [(0.3, 0.7), (0.8, 0.2)])
def test_a_model_trained_with_epo_ends_on_its_ray_where_linear_weights_do_not(preference) -> None:
    # a = x0 + x1 and c = 2 (x3 − x4) through one linear shared unit: the unit trades a's error for c's.
    import keras

    from mtl_keras import balancers, builders
    from mtl_keras.tasks import Task

    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 6)).astype("float32")
    y = {"a": (x[:, 0] + x[:, 1])[:, None], "c": (2.0 * (x[:, 3] - x[:, 4]))[:, None]}
    r = np.array(preference)

    def train(balancer):
        keras.utils.set_random_seed(0)
        tasks = [Task("a", "regression"), Task("c", "regression")]
        model = builders.hard_sharing(tasks, 6, trunk=(1,), tower_units=(), activation="linear")
        model.compile(keras.optimizers.SGD(0.05), balancer=balancer)
        model.fit(tf.data.Dataset.from_tensors((x, y)).repeat(250), epochs=1, verbose=0)
        result = model.evaluate(x, y, batch_size=256, verbose=0, return_dict=True)
        return model, np.array([result["a_loss"], result["c_loss"]])

    model, losses = train(EPO(preference=list(r)))
    weighted = r * losses
    assert weighted.max() / weighted.min() < 1.03, losses  # on the ray (EPO's eps = 1e-4)
    # Pareto-stationary: the min-norm point of the hull of the two shared gradients is ~0 (computed here).
    shared = model.get_layer("shared_0").trainable_variables
    with tf.GradientTape(persistent=True) as tape:
        out = model(x)
        task_losses = [tf.reduce_mean((out[t] - y[t]) ** 2) for t in ("a", "c")]
    g = np.stack(
        [np.concatenate([tf.reshape(v, [-1]) for v in tape.gradient(loss, shared)]) for loss in task_losses]
    )
    t = np.clip((g[1] - g[0]) @ g[1] / max((g[1] - g[0]) @ (g[1] - g[0]), 1e-30), 0.0, 1.0)
    min_norm = np.linalg.norm(t * g[0] + (1 - t) * g[1])
    assert min_norm < 0.02 * np.linalg.norm(g, axis=1).max(), (min_norm, g)
    # The linear scalarisation with the same preference lands elsewhere, off the ray.
    _, linear = train(balancers.get("static", weights=list(r)))
    assert (r * linear).max() / (r * linear).min() > 1.2, linear
