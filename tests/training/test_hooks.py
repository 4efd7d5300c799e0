"""The hooks of the step interface: after the update, aggregator state of the Jacobian's size, extra loss
terms under every step kind, per-task gradients for a lookahead, the frozen-trunk fallback, and a weighting
registered in a user's own module used by name."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import keras
import numpy as np
import pytest
import tensorflow as tf
from training.tiny_model import NAMES, build, combine, data, flat_shared, reference, weights_of

from mtl_keras import balancers
from mtl_keras.balancers import WEIGHTINGS, Aggregator, Weighting
from mtl_keras.balancers.base import state_variable

LR = 0.1


class HalfWeights(Weighting):
    """λ = 1/2 for every task; after each update, keeps the step's losses and one watched variable."""

    watched: keras.Variable | None = None

    def build(self, num_tasks: int) -> None:
        super().build(num_tasks)
        self.last_losses = self.add_variable(tf.zeros([num_tasks]), "last_losses")
        self.seen = self.add_variable(tf.zeros([1]), "seen_after_update")

    def weights(self) -> tf.Tensor:
        return tf.fill([self.num_tasks or 1], 0.5)

    def weigh(self, losses, *, gradient_norms=None, training=True):
        return self.weights(), tf.zeros_like(losses)

    def after_step(self, losses: tf.Tensor) -> None:
        self.last_losses.assign(losses)
        if self.watched is not None:
            self.seen.assign(tf.reshape(tf.convert_to_tensor(self.watched), [1]))


@pytest.fixture(scope="module", autouse=True)
def registered_half_weights() -> Iterator[None]:
    """Register the weighting as a user's module would, and forget it after this module's tests."""
    WEIGHTINGS.register("test_half_weights")(HalfWeights)
    yield
    WEIGHTINGS._items.pop("test_half_weights", None)


def _update(model, x, y) -> dict[str, np.ndarray]:
    before = weights_of(model)
    model.train_on_batch(x, y)
    after = weights_of(model)
    return {name: (before[name] - after[name]) / LR for name in NAMES}


def test_a_weighting_registered_in_a_user_module_works_by_name_and_sees_the_update():
    model = build()
    x, y = data()
    ref = reference(weights_of(model), x, y)
    model.compile(keras.optimizers.SGD(LR), balancer="test_half_weights")
    assert isinstance(model.balancer.weighting, HalfWeights)
    assert isinstance(balancers.get("test_half_weights"), HalfWeights)
    model.balancer.weighting.watched = model.get_layer("a").bias
    gradient = _update(model, x, y)
    expected = combine(ref["grads"], (0.5, 0.5))
    for name in NAMES:
        np.testing.assert_allclose(gradient[name], expected[name], rtol=1e-4, atol=1e-6, err_msg=name)
    weighting = model.balancer.weighting
    np.testing.assert_allclose(weighting.last_losses.numpy(), ref["losses"], rtol=1e-5)
    # after_step ran after optimizer.apply: it saw the updated bias of head a.
    np.testing.assert_allclose(weighting.seen.numpy(), model.get_layer("a").bias.numpy(), rtol=1e-6)
    assert not np.allclose(weighting.seen.numpy(), weights_of(build())["c_a"])


class TrackedSum(Aggregator):
    """MoCo-like state of the Jacobian's size: y_k ← β y_k + (1 − β) Σ_i J_ik per block; the update is y."""

    beta = 0.5

    def build_blocks(self, block_shapes):
        self.tracked = [
            state_variable(tf.zeros(shape), name=f"tracked_{k}") for k, shape in enumerate(block_shapes)
        ]

    def _aggregate_rows(self, rows):
        result = []
        for variable, task_grads in zip(self.tracked, zip(*rows, strict=True), strict=True):
            value = self.beta * variable + (1.0 - self.beta) * tf.add_n(list(task_grads))
            variable.assign(value)
            result.append(value)
        return result


def test_aggregator_state_of_the_jacobian_size_carries_over_steps():
    model = build()
    x, y = data()
    aggregator = TrackedSum()
    model.compile(keras.optimizers.SGD(LR), balancer=aggregator)
    assert [tuple(v.shape) for v in aggregator.tracked] == [(3, 2), (2,)]
    # NumPy: two SGD steps with the tracked shared update, heads with their own gradients.
    w = weights_of(model)
    tracked = {"W": np.zeros((3, 2)), "b": np.zeros(2)}
    for _ in range(2):
        summed = combine(reference(w, x, y)["grads"], (1.0, 1.0))
        for name in ("W", "b"):
            tracked[name] = 0.5 * tracked[name] + 0.5 * summed[name]
            summed[name] = tracked[name]
        w = {name: w[name] - LR * summed[name] for name in NAMES}
        model.train_on_batch(x, y)
    for name, variable in zip(("W", "b"), aggregator.tracked, strict=True):
        np.testing.assert_allclose(variable.numpy(), tracked[name], rtol=1e-4, atol=1e-6)
    for name, value in weights_of(model).items():
        np.testing.assert_allclose(value, w[name], rtol=1e-4, atol=1e-6, err_msg=name)


STEP_KINDS = [
    ("static", "param"),  # summed
    ("mean", "param"),  # fixed linear combination
    ("pcgrad", "param"),  # parameter-level Jacobian
    ("pcgrad", "rep"),  # representation-level Jacobian
    ("db_mtl", "param"),  # per-task norms, reused for the shared update
    ("gradnorm+pcgrad", "param"),  # per-task norms around a Jacobian step
]


@pytest.mark.parametrize(("balancer", "level"), STEP_KINDS, ids=[f"{b}@{lv}" for b, lv in STEP_KINDS])
def test_extra_loss_term_adds_its_gradient_under_every_step_kind(balancer, level):
    """An extra term 0.3·mean(p_a²) changes one SGD step by exactly lr·∇(term): dp_a = 0.6 p_a / n."""
    x, y = data()

    def term(x, labels, predictions):
        return 0.3 * tf.reduce_mean(tf.square(predictions["a"]))

    plain, extra, extra_by_compile = build(), build(), build()
    w = weights_of(plain)
    plain.compile(keras.optimizers.SGD(LR), balancer=balancer, balancer_level=level)
    extra.compile(keras.optimizers.SGD(LR), balancer=balancer, balancer_level=level)
    extra.add_loss_term(term)
    extra_by_compile.compile(
        keras.optimizers.SGD(LR), balancer=balancer, balancer_level=level, extra_losses=[term]
    )
    base = _update(plain, x, y)
    z = x.astype(np.float64) @ w["W"] + w["b"]
    p = (z @ w["v_a"] + w["c_a"])[:, 0]
    e = 0.6 * p / len(p)
    dz = np.outer(e, w["v_a"][:, 0])
    term_grad = {name: np.zeros_like(value) for name, value in w.items()}
    term_grad.update({"W": x.T @ dz, "b": dz.sum(0), "v_a": z.T @ e[:, None], "c_a": np.array([e.sum()])})
    for model in (extra, extra_by_compile):
        gradient = _update(model, x, y)
        for name in NAMES:
            np.testing.assert_allclose(
                gradient[name] - base[name], term_grad[name], rtol=1e-3, atol=1e-5, err_msg=name
            )


def test_extra_loss_term_is_part_of_the_logged_loss():
    x, y = data()
    model = build()
    model.compile(keras.optimizers.SGD(0.0), extra_losses=[lambda x, labels, predictions: tf.constant(5.0)])
    logs = model.test_on_batch(x, y, return_dict=True)
    assert logs["loss"] == pytest.approx(logs["a_loss"] + logs["b_loss"] + 5.0, rel=1e-6)


def test_task_gradient_hook_sees_each_tasks_unweighted_gradient_before_the_update():
    model = build()
    x, y = data()
    ref = reference(weights_of(model), x, y)
    seen = tf.Variable(tf.zeros([2, 8]))

    def hook(gradients, losses):
        seen.assign(tf.stack([tf.concat([tf.reshape(g, [-1]) for g in task], 0) for task in gradients]))

    model.compile(keras.optimizers.SGD(LR), loss_weights=[2.0, 0.5])
    model.add_task_gradient_hook(hook)
    model.train_on_batch(x, y)
    expected = np.stack([flat_shared(g) for g in ref["grads"]])
    np.testing.assert_allclose(seen.numpy(), expected, rtol=1e-5, atol=1e-7)


def test_frozen_trunk_falls_back_to_the_summed_step(caplog):
    model = build(frozen=True)
    x, y = data()
    ref = reference(weights_of(model), x, y)
    with caplog.at_level(logging.WARNING, logger="mtl_keras.training.select"):
        model.compile(keras.optimizers.SGD(LR), balancer="pcgrad", log_conflicts=True)
    notices = [r for r in caplog.records if "frozen trunk" in r.getMessage()]
    assert len(notices) == 1
    gradient = _update(model, x, y)
    expected = combine(ref["grads"], (1.0, 1.0))
    for name in ("v_a", "c_a", "v_b", "c_b"):
        np.testing.assert_allclose(gradient[name], expected[name], rtol=1e-4, atol=1e-6, err_msg=name)
    np.testing.assert_array_equal(gradient["W"], 0.0)
