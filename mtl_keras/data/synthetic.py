"""Synthetic multi-task data sets from papers: MMoE's controllable-correlation regression pair, sin/cos, and
GradNorm's toy with tasks of very different scales.

Each generator draws the task functions once (from ``seed``) and then independent train / validation / test
inputs, so the three splits share the same tasks. ``n`` is the number of training examples.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np

from mtl_keras.data.base import MultiTaskDataset, Split, _check_positive_int, _check_seed
from mtl_keras.option_types import Correlation, NonNegativeFloat, NonNegativeInt, PositiveInt
from mtl_keras.tasks import Task

#: The choices of the sinusoid parameters of `synthetic_mmoe`.
SIN_PARAMS = ("fixed", "random")


def _check_nonnegative(name: str, value: object) -> float:
    if isinstance(value, numbers.Real) and not isinstance(value, bool) and float(value) >= 0.0:
        return float(value)
    raise ValueError(f"Expected `{name}` to be a non-negative number. Received: {name}={value!r}")


def _split_sizes(n: int, n_validation: int, n_test: int) -> dict[str, int]:
    return {
        "train": _check_positive_int("n", n),
        "validation": _check_positive_int("n_validation", n_validation),
        "test": _check_positive_int("n_test", n_test),
    }


# === MMoE (Ma et al. 2018) ===


def mmoe_weights(p: float, dim: int, c: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``w1 = c·u1``, ``w2 = c·(p·u1 + sqrt(1 - p²)·u2)`` for random orthonormal ``u1, u2`` in R^dim.

    ``cos(w1, w2) = p``. ``u1, u2`` are the Q factor of a QR decomposition of a Gaussian ``dim × 2`` matrix.
    """
    q, r = np.linalg.qr(rng.standard_normal((dim, 2)))
    u = q * np.sign(np.diag(r))  # fix the QR sign ambiguity so the result only depends on the draw
    u1, u2 = u[:, 0], u[:, 1]
    return c * u1, c * (p * u1 + np.sqrt(1.0 - p * p) * u2)


def synthetic_mmoe(
    p: Correlation,
    n: PositiveInt = 10_000,
    seed: NonNegativeInt = 0,
    dim: PositiveInt = 100,
    *,
    n_validation: PositiveInt = 1_000,
    n_test: PositiveInt = 1_000,
    c: float = 1.0,
    num_sin: NonNegativeInt = 10,
    sin_params: str = "fixed",
    noise_std: NonNegativeFloat = 0.1,
) -> MultiTaskDataset:
    """The synthetic regression pair of Ma et al., "Modeling Task Relationships in Multi-task Learning with
    Multi-gate Mixture-of-Experts" (KDD 2018), whose correlation is controlled by ``p = cos(w1, w2)``.

    ``x ~ N(0, I_dim)``; ``y_i = w_iᵀx + Σ_{j=1..m} sin(α_j·w_iᵀx + β_j) + ε_i`` with ``w1, w2`` from
    :func:`mmoe_weights`.

    Args:
        p: cosine similarity of the task weight vectors, in [-1, 1].
        n: number of training examples.
        seed: seeds the weights, the sinusoid parameters (when random), inputs and noise.
        dim: input dimension d (100 in the paper).
        n_validation, n_test: sizes of the other splits.
        c: scale of ``w1, w2`` (1 in the paper).
        num_sin: number of sinusoids m (10 in the paper).
        sin_params: ``"fixed"`` (default): ``α_j = j``, ``β_j = j²`` for j = 1..m, the fixed values of our
        method
            reference; ``"random"``: ``α_j, β_j ~ N(0, 0.01)`` (variance 0.01) drawn once from ``seed``, as
            the paper's text describes. With ``"random"`` the sinusoids are nearly linear and the label
            correlation is close to ``p``; with ``"fixed"`` they are strongly non-linear and lower it.
        noise_std: standard deviation of ε_i. The paper's ``N(0, 0.01)`` is read as variance 0.01 (the usual
            ``N(μ, σ²)`` notation), so std 0.1.

    Returns:
        A `MultiTaskDataset` named ``"synthetic_mmoe"`` with float32 inputs ``(n, dim)`` and regression tasks
        ``y1``, ``y2`` (labels of shape ``(n,)``).
    """
    if not isinstance(p, numbers.Real) or isinstance(p, bool) or not -1.0 <= float(p) <= 1.0:
        raise ValueError(f"Expected `p` to be a number in [-1, 1]. Received: p={p!r}")
    p = float(p)
    dim = _check_positive_int("dim", dim)
    if dim < 2:
        raise ValueError(
            f"Expected `dim` to be at least 2 (two orthonormal vectors are needed). Received: dim={dim}"
        )
    num_sin = _check_positive_int("num_sin", num_sin, allow_zero=True)
    noise_std = _check_nonnegative("noise_std", noise_std)
    if not isinstance(c, numbers.Real) or isinstance(c, bool):
        raise ValueError(f"Expected `c` to be a number. Received: c={c!r}")
    if sin_params not in SIN_PARAMS:
        raise ValueError(
            f"Expected `sin_params` to be one of {list(SIN_PARAMS)}. Received: sin_params={sin_params!r}"
        )
    sizes = _split_sizes(n, n_validation, n_test)
    rng = np.random.default_rng(_check_seed(seed))

    w1, w2 = mmoe_weights(p, dim, float(c), rng)
    if sin_params == "fixed":
        j = np.arange(1, num_sin + 1, dtype=np.float64)
        alpha, beta = j, j**2
    else:
        alpha = rng.normal(0.0, 0.1, size=num_sin)
        beta = rng.normal(0.0, 0.1, size=num_sin)

    def label(z: np.ndarray) -> np.ndarray:
        nonlinear = np.sin(z[:, None] * alpha[None, :] + beta[None, :]).sum(axis=1)
        return z + nonlinear + rng.normal(0.0, noise_std, size=z.shape)

    splits = {}
    for split_name, size in sizes.items():
        x = rng.standard_normal((size, dim))
        y = {"y1": label(x @ w1), "y2": label(x @ w2)}
        splits[split_name] = Split(x=x.astype(np.float32), y=y)
    return MultiTaskDataset(
        name="synthetic_mmoe",
        tasks=[Task("y1"), Task("y2")],
        description=(
            f"MMoE synthetic regression pair (Ma et al. 2018), p={p}, d={dim}, c={c}, m={num_sin}, "
            f"sin_params={sin_params!r}, noise_std={noise_std}."
        ),
        train=splits["train"],
        validation=splits["validation"],
        test=splits["test"],
    )


# === sin / cos ===


def sincos(
    n: PositiveInt = 1_000,
    seed: NonNegativeInt = 0,
    *,
    n_validation: PositiveInt = 200,
    n_test: PositiveInt = 200,
    noise_std: NonNegativeFloat = 0.0,
) -> MultiTaskDataset:
    """Two regression tasks of one input: ``sin(x)`` and ``cos(x)`` for ``x ~ U[-π, π]``.

    Args:
        n: number of training examples.
        seed: seeds inputs and noise.
        n_validation, n_test: sizes of the other splits.
        noise_std: standard deviation of Gaussian noise added to each label (0: noiseless).

    Returns:
        A `MultiTaskDataset` named ``"sincos"`` with float32 inputs ``(n, 1)`` and tasks ``sin``, ``cos``.
    """
    sizes = _split_sizes(n, n_validation, n_test)
    noise_std = _check_nonnegative("noise_std", noise_std)
    rng = np.random.default_rng(_check_seed(seed))
    splits = {}
    for split_name, size in sizes.items():
        x = rng.uniform(-np.pi, np.pi, size=(size, 1))
        y = {
            "sin": np.sin(x[:, 0]) + rng.normal(0.0, noise_std, size=size),
            "cos": np.cos(x[:, 0]) + rng.normal(0.0, noise_std, size=size),
        }
        splits[split_name] = Split(x=x.astype(np.float32), y=y)
    return MultiTaskDataset(
        name="sincos",
        tasks=[Task("sin"), Task("cos")],
        description=f"sin(x) and cos(x), x ~ U[-pi, pi], noise_std={noise_std}.",
        train=splits["train"],
        validation=splits["validation"],
        test=splits["test"],
    )


# === GradNorm toy (Chen et al. 2018) ===


def gradnorm_toy(
    num_tasks: PositiveInt = 2,
    sigmas: Sequence[float] = (1.0, 100.0),
    n: PositiveInt = 10_000,
    seed: NonNegativeInt = 0,
    *,
    n_validation: PositiveInt = 1_000,
    n_test: PositiveInt = 1_000,
    input_dim: PositiveInt = 250,
    output_dim: PositiveInt = 100,
    b_variance: NonNegativeFloat = 10.0,
    eps_variance: NonNegativeFloat = 3.5,
) -> MultiTaskDataset:
    """The toy regression of Chen et al., "GradNorm: Gradient Normalization for Adaptive Loss Balancing in
    Deep Multitask Networks" (ICML 2018): ``f_i(x) = σ_i·tanh((B + ε_i)·x)``, tasks of very different scales.

    ``x ∈ R^250 ~ N(0, I)``; ``B`` (output_dim × input_dim, shared by all tasks) has i.i.d. ``N(0, 10)``
    elements and ``ε_i`` (one per task) i.i.d. ``N(0, 3.5)`` elements. The paper does not say whether 10 and
    3.5 are variances or standard deviations; we read ``N(μ, σ²)`` as usual, i.e. variances (std √10 and
    √3.5), as for the ``N(0, 0.01)`` noise of the MMoE data. The choice hardly matters: either way the
    pre-activations have a std of tens (≈ √(250·13.5) ≈ 58 here, ≈ 167 with stds), so tanh is saturated and
    the targets are close to ±σ_i. Set ``b_variance=100, eps_variance=12.25`` for the other reading.

    Args:
        num_tasks: number of tasks T.
        sigmas: one scale σ_i per task.
        n: number of training examples.
        seed: seeds B, ε_i and the inputs.
        n_validation, n_test: sizes of the other splits.
        input_dim, output_dim: 250 and 100 in the paper.
        b_variance, eps_variance: element variances of B and ε_i.

    Returns:
        A `MultiTaskDataset` named ``"gradnorm_toy"`` with float32 inputs ``(n, input_dim)`` and regression
        tasks ``task_0`` … with ``units=output_dim`` (labels ``(n, output_dim)``).
    """
    num_tasks = _check_positive_int("num_tasks", num_tasks)
    sigma_values = [float(s) for s in sigmas] if isinstance(sigmas, Sequence) else []
    if len(sigma_values) != num_tasks:
        raise ValueError(
            f"Expected `sigmas` to hold one scale per task ({num_tasks} numbers). Received: sigmas={sigmas!r}"
        )
    input_dim = _check_positive_int("input_dim", input_dim)
    output_dim = _check_positive_int("output_dim", output_dim)
    b_std = np.sqrt(_check_nonnegative("b_variance", b_variance))
    eps_std = np.sqrt(_check_nonnegative("eps_variance", eps_variance))
    sizes = _split_sizes(n, n_validation, n_test)
    rng = np.random.default_rng(_check_seed(seed))

    b = rng.normal(0.0, b_std, size=(output_dim, input_dim))
    matrices = [b + rng.normal(0.0, eps_std, size=(output_dim, input_dim)) for _ in range(num_tasks)]
    names = [f"task_{i}" for i in range(num_tasks)]
    splits = {}
    for split_name, size in sizes.items():
        x = rng.standard_normal((size, input_dim))
        y = {
            name: sigma * np.tanh(x @ m.T)
            for name, sigma, m in zip(names, sigma_values, matrices, strict=True)
        }
        splits[split_name] = Split(x=x.astype(np.float32), y=y)
    return MultiTaskDataset(
        name="gradnorm_toy",
        tasks=[Task(name, units=output_dim) for name in names],
        description=(
            f"GradNorm toy (Chen et al. 2018): sigma_i * tanh((B + eps_i) x), sigmas={sigma_values}, "
            f"B ~ N(0, {b_variance}), eps_i ~ N(0, {eps_variance}) (variances)."
        ),
        train=splits["train"],
        validation=splits["validation"],
        test=splits["test"],
    )
