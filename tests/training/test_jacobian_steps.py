"""The parameter- and representation-level Jacobian steps against closed-form NumPy gradients."""

import numpy as np
import pytest
from training.tiny_model import (
    assert_close,
    build,
    combine,
    data,
    flat_shared,
    pcgrad,
    reference,
    step_gradients,
    weights_of,
)

from mtl_keras.balancers.aggregators import GradDrop, PCGrad
from mtl_keras.balancers.weightings import Static
from mtl_keras.training import ParameterJacobianStep, RepresentationJacobianStep

LAMBDA = (2.0, 0.5)


def _heads(ref: dict, weights=LAMBDA) -> dict:
    expected = combine(ref["grads"], weights)
    return {k: v for k, v in expected.items() if k not in ("W", "b")}


def test_parameter_level_pcgrad():
    model = build()
    x, y = data()
    ref = reference(weights_of(model), x, y)
    rows = np.stack([wt * flat_shared(g) for wt, g in zip(LAMBDA, ref["grads"], strict=True)])
    assert rows[0] @ rows[1] < 0  # the tasks conflict: PCGrad projects
    direction = pcgrad(rows)
    grads = step_gradients(model, ParameterJacobianStep(PCGrad(seed=0)), Static(weights=LAMBDA), x, y)
    expected = {"W": direction[:6].reshape(3, 2), "b": direction[6:], **_heads(ref)}
    assert_close(grads, expected)


def test_parameter_level_without_aggregator_sums_the_rows():
    model = build()
    x, y = data()
    ref = reference(weights_of(model), x, y)
    grads = step_gradients(
        model, ParameterJacobianStep(None, log_conflicts=True), Static(weights=LAMBDA), x, y
    )
    assert_close(grads, combine(ref["grads"], LAMBDA))


@pytest.mark.parametrize("aggregator", [PCGrad(seed=0), GradDrop(leak=1.0)], ids=["gramian", "jacobian"])
def test_representation_level(aggregator):
    """Rows are λ_i dL_i/dz (n·2 entries); the aggregated direction D is back-propagated once:
    dW = xᵀ D, db = Σ_n D. GradDrop with leak 1 is the (non-Gramian) sum of the rows."""
    model = build()
    x, y = data()
    ref = reference(weights_of(model), x, y)
    rows = np.stack([wt * dz.ravel() for wt, dz in zip(LAMBDA, ref["dz"], strict=True)])
    direction = (pcgrad(rows) if isinstance(aggregator, PCGrad) else rows.sum(axis=0)).reshape(-1, 2)
    step = RepresentationJacobianStep(model._representation_model(), aggregator)
    grads = step_gradients(model, step, Static(weights=LAMBDA), x, y)
    expected = {"W": ref["x"].T @ direction, "b": direction.sum(axis=0), **_heads(ref)}
    assert_close(grads, expected)
