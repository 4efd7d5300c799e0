"""A two-task linear model whose gradients are written in closed form with NumPy.

x (n, 3) → shared Dense(2): z = x W + b → heads Dense(1) "a" and "b": p_i = z v_i + c_i, both regression
(MSE). With the labelled rows m_i of task i (NaN labels are missing), L_i = Σ m (p_i − y_i)² / Σ m, so
dL_i/dp_i = e_i = 2 m (p_i − y_i) / Σ m, and

    dL_i/dv_i = zᵀ e_i,  dL_i/dc_i = Σ e_i,  dL_i/dz = e_i v_iᵀ,  dL_i/dW = xᵀ (e_i v_iᵀ),  dL_i/db = Σ_n e_i v_iᵀ.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from mtl_keras import MultiTaskModel, Task, balancers
from mtl_keras.training import Runner, Step, StepMetrics, TaskLosses

TASKS = ("a", "b")
#: the variables in the order of ``model.trainable_variables``
NAMES = ("W", "b", "v_a", "c_a", "v_b", "c_b")


def build(seed: int = 0, frozen: bool = False) -> MultiTaskModel:
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((3,), name="x")
    z = keras.layers.Dense(2, name="shared", bias_initializer="random_normal")(inputs)
    heads = {t: keras.layers.Dense(1, name=t, bias_initializer="random_normal")(z) for t in TASKS}
    model = MultiTaskModel(
        inputs,
        heads,
        tasks=[Task(t, "regression") for t in TASKS],
        shared_layers=["shared"],
        representation="shared",
    )
    if frozen:
        model.get_layer("shared").trainable = False
    return model


def data(n: int = 8, seed: int = 1) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """A batch where task b misses a third of its labels and conflicts with task a."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)).astype("float32")
    y = {
        "a": (x @ [1.0, -2.0, 0.5] + 3.0).astype("float32"),
        "b": (-(x @ [1.0, -2.0, 0.5]) - 3.0).astype("float32"),
    }
    y["b"][::3] = np.nan
    return x, y


def weights_of(model: MultiTaskModel) -> dict[str, np.ndarray]:
    shared, a, b = (model.get_layer(name) for name in ("shared", "a", "b"))
    arrays = [shared.kernel, shared.bias, a.kernel, a.bias, b.kernel, b.bias]
    return {name: np.asarray(v, np.float64) for name, v in zip(NAMES, arrays, strict=True)}


def reference(w: dict[str, np.ndarray], x: np.ndarray, y: dict[str, np.ndarray]) -> dict[str, Any]:
    """Losses L (T,), per-task gradients ``grads[i][name]`` (zero for the other task's head), the
    representation z and its per-task gradients ``dz[i]`` (n, 2)."""
    x = x.astype(np.float64)
    z = x @ w["W"] + w["b"]
    losses, grads, dz = [], [], []
    for task in TASKS:
        v, c = w[f"v_{task}"], w[f"c_{task}"]
        p = (z @ v + c)[:, 0]
        m = ~np.isnan(y[task])
        r = np.where(m, p - np.nan_to_num(y[task]), 0.0)
        losses.append(np.sum(r**2) / m.sum())
        e = 2.0 * r / m.sum()
        dz_i = np.outer(e, v[:, 0])
        g = {name: np.zeros_like(value) for name, value in w.items()}
        g["W"], g["b"] = x.T @ dz_i, dz_i.sum(axis=0)
        g[f"v_{task}"], g[f"c_{task}"] = z.T @ e[:, None], np.array([e.sum()])
        grads.append(g)
        dz.append(dz_i)
    return {"losses": np.array(losses), "grads": grads, "z": z, "dz": dz, "x": x}


def combine(grads: list[dict[str, np.ndarray]], weights: Any) -> dict[str, np.ndarray]:
    return {name: sum(wt * g[name] for wt, g in zip(weights, grads, strict=True)) for name in NAMES}


def flat_shared(g: dict[str, np.ndarray]) -> np.ndarray:
    return np.concatenate([g["W"].ravel(), g["b"].ravel()])


def pcgrad(rows: np.ndarray) -> np.ndarray:
    """PCGrad for two tasks (the order is irrelevant with two): project each row off a conflicting other."""
    g1, g2 = rows
    p1 = g1 - min(g1 @ g2, 0.0) / (g2 @ g2) * g2
    p2 = g2 - min(g2 @ g1, 0.0) / (g1 @ g1) * g1
    return p1 + p2


def step_gradients(
    model: MultiTaskModel, step: Step, balancer: Any, x: np.ndarray, y: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Run ``step`` on its own (a fresh runner, no optimizer update) and return its gradients by name."""
    resolved = balancers.resolve(balancer)
    resolved.build(list(TASKS))
    if not getattr(model, "optimizer", None):
        model.compile(keras.optimizers.SGD(0.0))
    runner = Runner(
        model,
        step,
        resolved,
        TaskLosses(model.tasks, [t.get_loss() for t in model.tasks]),
        StepMetrics.for_tasks(model.tasks, {}, log_conflicts=True),
    )
    grads, state = runner.compute((x, y))
    by_id = {id(v): np.asarray(g, np.float64) for v, g in zip(state.variables, grads, strict=True)}
    shared, a, b = (model.get_layer(name) for name in ("shared", "a", "b"))
    arrays = [shared.kernel, shared.bias, a.kernel, a.bias, b.kernel, b.bias]
    return {name: by_id[id(v)] for name, v in zip(NAMES, arrays, strict=True) if id(v) in by_id}


def assert_close(actual: dict[str, np.ndarray], expected: dict[str, np.ndarray], rtol: float = 1e-5) -> None:
    assert sorted(actual) == sorted(expected)
    for name in expected:
        np.testing.assert_allclose(actual[name], expected[name], rtol=rtol, atol=1e-6, err_msg=name)
