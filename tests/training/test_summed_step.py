"""The summed and the fixed-linear-combination steps against closed-form NumPy gradients (missing labels)."""

import numpy as np
from training.tiny_model import (
    NAMES,
    assert_close,
    build,
    combine,
    data,
    reference,
    step_gradients,
    weights_of,
)

from mtl_keras.balancers.aggregators import Mean
from mtl_keras.balancers.weightings import Static
from mtl_keras.training import LinearCombinationStep, SummedStep

LAMBDA = (2.0, 0.5)


def test_summed_step_is_the_gradient_of_the_weighted_sum():
    model = build()
    x, y = data()
    ref = reference(weights_of(model), x, y)
    grads = step_gradients(model, SummedStep(), Static(weights=LAMBDA), x, y)
    assert_close(grads, combine(ref["grads"], LAMBDA))


def test_linear_combination_step_weighs_only_the_shared_update():
    """Mean with static weights λ: the shared variables get (1/T) Σ λ_i ∇L_i, each head λ_i ∇L_i."""
    model = build()
    x, y = data()
    ref = reference(weights_of(model), x, y)
    mean = Mean()
    grads = step_gradients(model, LinearCombinationStep(mean), [Static(weights=LAMBDA), mean], x, y)
    expected = combine(ref["grads"], LAMBDA)
    for name in ("W", "b"):
        expected[name] = expected[name] / 2.0
    assert_close(grads, expected)


def test_missing_labels_only_drop_their_rows():
    """Task b's loss is the mean over its labelled rows: the same as the batch without the unlabelled rows."""
    model = build()
    x, y = data()
    keep = ~np.isnan(y["b"])
    only_b = (0.0, 1.0)
    with_nan = step_gradients(model, SummedStep(), Static(weights=only_b), x, y)
    without = step_gradients(
        model, SummedStep(), Static(weights=only_b), x[keep], {k: v[keep] for k, v in y.items()}
    )
    for name in NAMES:
        np.testing.assert_allclose(with_nan[name], without[name], rtol=1e-5, atol=1e-7, err_msg=name)
