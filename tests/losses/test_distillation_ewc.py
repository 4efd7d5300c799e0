"""The LwF distillation term and the EWC Fisher diagonal and penalty against NumPy written here from the
papers' definitions (Li & Hoiem 2016; Kirkpatrick et al. 2017), not from the implementation."""

import keras
import numpy as np
import tensorflow as tf

from mtl_keras import MultiTaskModel
from mtl_keras.losses import EWCPenalty, diagonal_fisher, distillation_loss
from mtl_keras.tasks import Task


def _softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def test_multiclass_distillation_is_the_cross_entropy_of_tempered_probabilities():
    rng = np.random.default_rng(0)
    teacher, student = _softmax(rng.normal(size=(5, 4))), _softmax(rng.normal(size=(5, 4)))
    t = 2.0
    soft = teacher ** (1 / t) / (teacher ** (1 / t)).sum(axis=-1, keepdims=True)  # LwF's y'
    mine = student ** (1 / t) / (student ** (1 / t)).sum(axis=-1, keepdims=True)
    want = np.mean(-(soft * np.log(mine)).sum(axis=-1))
    got = distillation_loss(Task("c", "multiclass", num_classes=4), teacher, student, t)
    np.testing.assert_allclose(float(got), want, rtol=1e-5)


def test_binary_and_regression_distillation():
    p, q, t = np.array([[0.9], [0.2], [0.5]]), np.array([[0.6], [0.3], [0.7]]), 3.0
    soft = 1 / (1 + np.exp(-np.log(p / (1 - p)) / t))
    mine = 1 / (1 + np.exp(-np.log(q / (1 - q)) / t))
    want = np.mean(-(soft * np.log(mine) + (1 - soft) * np.log(1 - mine)))
    np.testing.assert_allclose(float(distillation_loss(Task("b", "binary"), p, q, t)), want, rtol=1e-5)
    a, b = np.array([[1.0], [2.0]]), np.array([[1.5], [0.0]])
    standardised = Task("r", "regression", label_mean=0.0, label_std=2.0)
    np.testing.assert_allclose(float(distillation_loss(Task("r"), a, b)), np.mean((a - b) ** 2), rtol=1e-6)
    np.testing.assert_allclose(
        float(distillation_loss(standardised, a, b)), np.mean(((a - b) / 2) ** 2), rtol=1e-6
    )


def _linear_model():
    keras.utils.set_random_seed(0)
    x = keras.Input((3,))
    out = keras.layers.Dense(1, name="linear")(x)
    return MultiTaskModel(x, {"r": out}, tasks=[Task("r")])


def test_fisher_diagonal_is_the_mean_squared_per_example_gradient():
    model = _linear_model()
    rng = np.random.default_rng(1)
    x = rng.normal(size=(10, 3)).astype("float32")
    y = rng.normal(size=10).astype("float32")
    y[3] = np.nan  # a missing label adds nothing
    w, b = (v.numpy() for v in model.get_layer("linear").weights)
    residual = (x @ w)[:, 0] + b[0] - np.nan_to_num(y)
    residual[3] = 0.0
    # NLL = ½ (y − ŷ)²: ∂/∂w = (ŷ − y) x, ∂/∂b = ŷ − y
    want_w = np.mean((residual[:, None] * x) ** 2, axis=0)[:, None]
    want_b = np.array([np.mean(residual**2)])
    batches = tf.data.Dataset.from_tensor_slices((x, {"r": y})).batch(4)
    variables = model.get_layer("linear").trainable_variables
    fisher = diagonal_fisher(model, [Task("r")], batches, variables)
    np.testing.assert_allclose(fisher[0], want_w, rtol=1e-5)
    np.testing.assert_allclose(fisher[1], want_b, rtol=1e-5)
    assert diagonal_fisher(model, [Task("r")], batches, variables, max_examples=4)[1].shape == (1,)


def test_ewc_penalty_is_half_lambda_fisher_weighted_squared_distance():
    model = _linear_model()
    variables = model.get_layer("linear").trainable_variables
    fisher = [np.array([[1.0], [2.0], [0.5]]), np.array([3.0])]
    penalty = EWCPenalty(variables, fisher, strength=10.0)
    assert float(penalty()) == 0.0
    start = [v.numpy().copy() for v in variables]
    shift = [np.array([[0.1], [-0.2], [0.3]]), np.array([0.5])]
    for v, s, d in zip(variables, start, shift, strict=True):
        v.assign(s + d)
    want = 0.5 * 10.0 * sum(float((f * d**2).sum()) for f, d in zip(fisher, shift, strict=True))
    np.testing.assert_allclose(float(penalty()), want, rtol=1e-5)
