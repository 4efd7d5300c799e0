"""The per-task-norm step (GradNorm, DB-MTL) against closed-form NumPy gradients and norms."""

import numpy as np
import tensorflow as tf
from training.tiny_model import (
    assert_close,
    build,
    combine,
    data,
    flat_shared,
    reference,
    step_gradients,
    weights_of,
)

from mtl_keras.balancers import NormScope, Weighting
from mtl_keras.balancers.weightings import DBMTL
from mtl_keras.training import PerTaskNormStep, SummedStep, norm_variables


class NormSpy(Weighting):
    """Static weights (2, 0.5); keeps the gradient norms it is handed."""

    norms_over = NormScope.LAST_SHARED_LAYER

    def build(self, num_tasks):
        super().build(num_tasks)
        self.seen = self.add_variable(tf.zeros([num_tasks]), "seen_norms")

    def weigh(self, losses, *, gradient_norms=None, training=True):
        if training:
            self.seen.assign(gradient_norms)
        return tf.constant([2.0, 0.5]), tf.zeros_like(losses)

    def weights(self):
        return tf.constant([2.0, 0.5])


def test_db_mtl_reuses_the_norm_gradients_for_the_shared_update():
    """First step: m_i = ‖∇_W L_i‖ / L_i (the bias-corrected EMA), λ_i = (max m / m_i) / L_i; every variable
    gets Σ λ_i ∇L_i."""
    model = build()
    x, y = data()
    ref = reference(weights_of(model), x, y)
    norms = np.array([np.linalg.norm(flat_shared(g)) for g in ref["grads"]])
    m = norms / ref["losses"]
    lam = (m.max() / m) / ref["losses"]
    step = PerTaskNormStep(norm_variables(model, NormScope.SHARED))
    grads = step_gradients(model, step, DBMTL(), x, y)
    assert_close(grads, combine(ref["grads"], lam), rtol=1e-4)


def test_norms_are_those_of_the_unweighted_task_gradients_and_the_inner_step_updates():
    model = build()
    x, y = data()
    ref = reference(weights_of(model), x, y)
    spy = NormSpy()
    step = PerTaskNormStep(norm_variables(model, NormScope.LAST_SHARED_LAYER), SummedStep())
    grads = step_gradients(model, step, spy, x, y)
    expected = [np.linalg.norm(flat_shared(g)) for g in ref["grads"]]
    np.testing.assert_allclose(spy.seen.numpy(), expected, rtol=1e-5)
    assert_close(grads, combine(ref["grads"], (2.0, 0.5)))
