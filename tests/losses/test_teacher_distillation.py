"""Distillation from single-task teachers (recipe ``distill``): the per-task term with Hinton's T² factor
against NumPy written here from the definitions (Hinton, Vinyals & Dean 2015), on logits, and the loss
term over a batch whose labels are missing."""

import keras
import numpy as np
import pytest

from mtl_keras.losses import Distillation, distillation_loss
from mtl_keras.tasks import Task


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


def _log_softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def test_binary_term_is_the_cross_entropy_of_sigmoid_logit_over_t_times_t_squared():
    rng = np.random.default_rng(1)
    zt, zs, t = rng.normal(size=(6, 1)) * 2, rng.normal(size=(6, 1)) * 2, 3.0
    soft, mine = _sigmoid(zt / t), _sigmoid(zs / t)
    want = t**2 * np.mean(-(soft * np.log(mine) + (1 - soft) * np.log(1 - mine)))
    got = distillation_loss(Task("b", "binary"), _sigmoid(zt), _sigmoid(zs), t, temperature_squared=True)
    np.testing.assert_allclose(float(got), want, rtol=1e-5)


def test_multiclass_term_is_the_cross_entropy_of_softmax_logit_over_t_times_t_squared():
    rng = np.random.default_rng(2)
    zt, zs, t = rng.normal(size=(5, 4)), rng.normal(size=(5, 4)), 2.5
    soft = np.exp(_log_softmax(zt / t))
    want = t**2 * np.mean(-(soft * _log_softmax(zs / t)).sum(axis=-1))
    teacher, student = np.exp(_log_softmax(zt)), np.exp(_log_softmax(zs))
    task = Task("c", "multiclass", num_classes=4)
    got = distillation_loss(task, teacher, student, t, temperature_squared=True)
    np.testing.assert_allclose(float(got), want, rtol=1e-5)
    # Cross-entropy and KL differ by the teacher's entropy, a constant of the student: same gradients.
    kl = t**2 * np.mean((soft * (np.log(soft) - _log_softmax(zs / t))).sum(axis=-1))
    entropy = t**2 * np.mean(-(soft * np.log(soft)).sum(axis=-1))
    np.testing.assert_allclose(float(got), kl + entropy, rtol=1e-5)


def test_regression_term_is_the_squared_difference_and_has_no_t_factor():
    a, b = np.array([[1.0], [-2.0], [0.5]]), np.array([[1.5], [0.0], [0.5]])
    got = distillation_loss(Task("r"), a, b, 4.0, temperature_squared=True)
    np.testing.assert_allclose(float(got), np.mean((a - b) ** 2), rtol=1e-6)


def test_the_term_covers_every_example_whether_labelled_or_not():
    tasks = [Task("b", "binary"), Task("r")]
    inputs = keras.Input((3,))
    teacher = keras.Model(
        inputs,
        {"b": keras.layers.Dense(1, activation="sigmoid")(inputs), "r": keras.layers.Dense(1)(inputs)},
    )
    x = np.random.default_rng(3).normal(size=(8, 3)).astype("float32")
    want_teacher = teacher.predict(x, verbose=0)
    student = {"b": np.full((8, 1), 0.3, "float32"), "r": np.zeros((8, 1), "float32")}
    labels = {"b": np.full((8, 1), np.nan), "r": np.full((8, 1), np.nan)}  # no example labelled
    term = Distillation(teacher, tasks, weight=0.5, temperature=2.0, temperature_squared=True)
    soft, mine = (
        _sigmoid(np.log(want_teacher["b"] / (1 - want_teacher["b"])) / 2),
        _sigmoid(np.log(0.3 / 0.7) / 2),
    )
    binary = 4 * np.mean(-(soft * np.log(mine) + (1 - soft) * np.log(1 - mine)))
    regression = np.mean(want_teacher["r"] ** 2)
    np.testing.assert_allclose(float(term(x, labels, student)), 0.5 * (binary + regression), rtol=1e-4)
    assert not teacher.trainable


def test_bad_weight_and_temperature_are_errors_naming_them():
    teacher = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    with pytest.raises(ValueError, match=r"`temperature` to be a positive number\. Received: temperature=0"):
        Distillation(teacher, [Task("r")], temperature=0)
    with pytest.raises(ValueError, match=r"`weight` to be a non-negative number\. Received: weight=-1"):
        Distillation(teacher, [Task("r")], weight=-1)
