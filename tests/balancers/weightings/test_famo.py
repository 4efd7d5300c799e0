"""FAMO (docs/methods.md, "FAMO") against a NumPy run written from the paper, and its claimed behaviour."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import toy_data, toy_tasks

from mtl_keras import balancers, builders


def numpy_famo(loss_sequence, lr, decay):
    """FAMO from the paper (Algorithm 1), in float64: per step the weights z_i/L_i normalised, then (from
    the second step) one Adam step of ξ on J_softmax(ξ)ᵀ δ + γ ξ, over the tasks present in both steps."""
    num_tasks = loss_sequence.shape[1]
    xi, m, v, t = np.zeros(num_tasks), np.zeros(num_tasks), np.zeros(num_tasks), np.zeros(num_tasks)
    previous = None
    weights = []
    for losses in loss_sequence:
        present = losses > 0
        if previous is not None:
            s = [i for i in range(num_tasks) if present[i] and previous[i] > 0]
            delta = np.log(previous[s] + 1e-8) - np.log(losses[s] + 1e-8)
            zs = np.exp(xi[s]) / np.exp(xi[s]).sum()
            jacobian = np.diag(zs) - np.outer(zs, zs)  # ∂softmax/∂ξ
            grad = jacobian.T @ delta + decay * xi[s]
            for j, i in enumerate(s):
                t[i] += 1
                m[i] = 0.9 * m[i] + 0.1 * grad[j]
                v[i] = 0.999 * v[i] + 0.001 * grad[j] ** 2
                xi[i] -= lr * (m[i] / (1 - 0.9 ** t[i])) / (np.sqrt(v[i] / (1 - 0.999 ** t[i])) + 1e-8)
        previous = np.where(present, losses, 0.0)
        z = np.exp(xi) / np.exp(xi).sum()
        raw = np.where(present, z / (losses + 1e-8), 0.0)
        weights.append(raw / raw.sum())
    return np.array(weights), xi


def test_famo_matches_a_numpy_run_of_the_paper_with_missing_labels():
    rng = np.random.default_rng(0)
    losses = rng.uniform(0.2, 3.0, size=(25, 3))
    losses[5, 1] = 0.0  # task 1 has no labels in step 5: no δ in steps 5 and 6, λ_1 = 0 in step 5
    losses[12:15, 2] = 0.0
    expected_weights, expected_xi = numpy_famo(losses, lr=0.025, decay=1e-3)
    famo = balancers.get("famo")
    famo.build(3)
    for step, row in enumerate(losses):
        weights, offsets = famo.weigh(tf.constant(row, tf.float32))
        np.testing.assert_allclose(weights.numpy(), expected_weights[step], rtol=1e-5, atol=1e-7)
        np.testing.assert_array_equal(offsets.numpy(), 0.0)
    np.testing.assert_allclose(famo.logits.numpy(), expected_xi, rtol=1e-4, atol=1e-6)
    assert famo.steps.numpy().tolist() == [24, 22, 20]  # Adam steps only with a δ


def test_a_task_without_labels_keeps_its_logit():
    famo = balancers.get("famo")
    famo.build(2)
    for row in ([1.0, 1.0], [0.8, 0.9]):
        famo.weigh(tf.constant(row))
    before = famo.logits.numpy()[1]
    assert before != 0.0
    for row in ([0.7, 0.0], [0.6, 0.0], [0.5, 0.7]):  # no δ for task 1 in any of these steps
        famo.weigh(tf.constant(row))
    assert famo.logits.numpy()[1] == before
    famo.weigh(tf.constant([0.4, 0.0]))
    assert famo.weights().numpy()[1] == 0.0


def test_famo_equalises_the_decrease_of_the_log_losses():
    """The paper's first-order model: with orthogonal task gradients, one step decreases log L_i by
    δ_i = η z_i r_i (r_i = ‖∇ log L_i‖², here fixed, 5× apart). Starting from z uniform (δ 5× apart), FAMO
    moves z towards 1/r, where every log loss decreases at the same rate; the static log weighting (its
    logits frozen) keeps the 5× gap."""
    rates = tf.constant([0.1, 0.5])

    def decreases(learning_rate):
        famo = balancers.get("famo", learning_rate=learning_rate, weight_decay=0.0)
        famo.build(2)

        @tf.function
        def run(steps):
            log_losses = tf.zeros(2)
            delta = tf.zeros(2)
            for _ in tf.range(steps):
                famo.weigh(tf.exp(log_losses))
                delta = 0.05 * famo.task_probabilities() * rates
                log_losses -= delta
            return delta

        return run(tf.constant(1500)).numpy()

    frozen = decreases(1e-12)
    assert frozen[1] / frozen[0] == pytest.approx(5.0, rel=1e-3)
    famo = decreases(0.025)
    assert famo[1] / famo[0] == pytest.approx(1.0, abs=0.05)


def test_famo_trains_in_a_model_and_its_state_is_saved(tmp_path):
    x, y = toy_data(n=96)
    model = builders.hard_sharing(toy_tasks(), 12, trunk=(8,))
    model.compile(keras.optimizers.Adam(0.01), balancer=balancers.get("famo", learning_rate=0.05))
    history = model.fit(x, y, epochs=2, batch_size=32, verbose=0).history
    famo = model.balancer.weighting
    assert np.all(famo.logits.numpy() != 0)
    assert sum(history[f"{t}_weight"][-1] for t in "abc") == pytest.approx(1.0, rel=1e-5)
    path = str(tmp_path / "famo.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.balancer.weighting.get_config() == {"learning_rate": 0.05, "weight_decay": 1e-3}
    for a, b in zip(famo.variables, loaded.balancer.weighting.variables, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


@pytest.mark.parametrize(
    ("options", "message"),
    [({"learning_rate": 0.0}, "learning_rate"), ({"weight_decay": -1.0}, "weight_decay")],
)
def test_bad_options_name_the_option(options, message):
    with pytest.raises(ValueError, match=message):
        balancers.get("famo", **options)
