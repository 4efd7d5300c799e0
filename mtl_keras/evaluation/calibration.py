"""Calibration of classification outputs: expected calibration error, reliability data, post-hoc fits.

Binary tasks are binned on the predicted probability ``p`` of the positive class; multiclass tasks on the
top-label confidence ``max_k p_k`` (a hit when the arg-max is the label). Bins are ``bins`` equal-width
intervals of ``[0, 1]``; a value ``v`` falls in bin ``min(floor(v * bins), bins - 1)`` (so 1.0 is in the
last bin). With ``n_b`` examples in bin ``b``, mean confidence ``conf_b`` and observed frequency ``acc_b``::

    ECE = sum_b n_b / N * |acc_b - conf_b|

Examples whose label is NaN (no label) are left out. The post-hoc fits use the validation split:
:func:`fit_temperature` minimises the negative log-likelihood over ``log T`` (a 1-D convex problem) and
:func:`fit_isotonic` fits a non-decreasing map ``p -> frequency`` (binary only). See docs/methods.md.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

logger = logging.getLogger("mtl_keras")

#: Probabilities are clipped to [EPSILON, 1 - EPSILON] before taking logits or logs.
EPSILON = 1e-7
#: ``log T`` is searched in this interval (T from about 0.007 to 150).
LOG_T_BOUNDS = (-5.0, 5.0)


def _labelled(probabilities: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    if p.ndim == 2 and p.shape[1] == 1:
        p = p[:, 0]
    if len(p) != len(y):
        raise ValueError(
            f"Expected one label per prediction. Received {len(p)} predictions, {len(y)} labels."
        )
    keep = ~np.isnan(y)
    return p[keep], y[keep]


def _check_bins(bins: Any) -> int:
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
        raise ValueError(f"Expected `bins` to be a positive integer. Received: bins={bins!r}")
    return int(bins)


def confidences(probabilities: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(confidence, hit)`` per labelled example: ``(p, y)`` for a binary ``(n,)`` / ``(n, 1)`` output,
    ``(max_k p_k, argmax == y)`` for a multiclass ``(n, K)`` output."""
    p, y = _labelled(probabilities, labels)
    if p.ndim == 1:
        return p, y
    if p.ndim != 2:
        raise ValueError(f"Expected probabilities of shape (n,), (n, 1) or (n, K). Received {p.shape}.")
    return p.max(axis=1), (p.argmax(axis=1) == y).astype(np.float64)


def reliability(probabilities: Any, labels: Any, bins: int = 15) -> dict[str, list[Any]]:
    """Reliability-diagram data: per bin its edges, example count, mean confidence and observed frequency
    (None for an empty bin)."""
    bins = _check_bins(bins)
    confidence, hit = confidences(probabilities, labels)
    index = np.minimum(np.floor(confidence * bins).astype(np.int64), bins - 1)
    counts = np.bincount(index, minlength=bins)
    conf_sum = np.bincount(index, weights=confidence, minlength=bins)
    hit_sum = np.bincount(index, weights=hit, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf, freq = conf_sum / counts, hit_sum / counts
    return {
        "edges": np.linspace(0.0, 1.0, bins + 1).tolist(),
        "count": counts.astype(int).tolist(),
        "confidence": [None if c == 0 else float(v) for c, v in zip(counts, mean_conf, strict=True)],
        "frequency": [None if c == 0 else float(v) for c, v in zip(counts, freq, strict=True)],
    }


def expected_calibration_error(probabilities: Any, labels: Any, bins: int = 15) -> float:
    """ECE of one task's outputs (see the module docstring); NaN when no example is labelled."""
    data = reliability(probabilities, labels, bins)
    total = sum(data["count"])
    if total == 0:
        return math.nan
    return float(
        sum(
            n / total * abs(f - c)
            for n, f, c in zip(data["count"], data["frequency"], data["confidence"], strict=True)
            if n
        )
    )


# === Post-hoc calibration ===


def logits(probabilities: Any) -> np.ndarray:
    """Binary ``(n,)``: ``log(p / (1 - p))``; multiclass ``(n, K)``: ``log p`` (softmax logits up to a
    per-row constant)."""
    p = np.clip(np.asarray(probabilities, dtype=np.float64), EPSILON, 1.0 - EPSILON)
    if p.ndim == 2 and p.shape[1] == 1:
        p = p[:, 0]
    return np.log(p / (1.0 - p)) if p.ndim == 1 else np.log(p)


def apply_temperature(probabilities: Any, temperature: float) -> np.ndarray:
    """The probabilities with their logits divided by ``temperature`` (shape kept)."""
    p = np.asarray(probabilities, dtype=np.float64)
    z = logits(p) / temperature
    if z.ndim == 1:
        return (1.0 / (1.0 + np.exp(-z))).reshape(p.shape)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _nll(z: np.ndarray, y: np.ndarray) -> float:
    if z.ndim == 1:  # binary: log(1 + e^-z) for y = 1, log(1 + e^z) for y = 0
        return float(np.mean(np.logaddexp(0.0, -z) * y + np.logaddexp(0.0, z) * (1.0 - y)))
    shifted = z - z.max(axis=1, keepdims=True)
    log_softmax = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return float(-np.mean(log_softmax[np.arange(len(y)), y.astype(np.int64)]))


def fit_temperature(probabilities: Any, labels: Any) -> float:
    """The temperature ``T`` minimising the validation NLL of ``softmax(z / T)`` (``sigmoid`` for binary).

    The NLL is convex in ``1 / T``; it is minimised over ``log T`` in :data:`LOG_T_BOUNDS` with SciPy's
    bounded scalar minimiser. 1.0 when no example is labelled.
    """
    from scipy.optimize import minimize_scalar

    p, y = _labelled(probabilities, labels)
    if len(y) == 0:
        return 1.0
    z = logits(p)
    result = minimize_scalar(
        lambda log_t: _nll(z / math.exp(log_t), y),
        bounds=LOG_T_BOUNDS,
        method="bounded",
        options={"xatol": 1e-6},
    )
    if min(abs(result.x - bound) for bound in LOG_T_BOUNDS) < 1e-3:
        logger.warning(
            "The fitted temperature %.4g is at the edge of the searched range (log T in %s): the outputs "
            "carry little information about the labels, or are far off.",
            math.exp(result.x),
            LOG_T_BOUNDS,
        )
    return float(math.exp(result.x))


def fit_isotonic(probabilities: Any, labels: Any) -> tuple[list[float], list[float]]:
    """A binary task's isotonic map as knots ``(x, y)``: served as linear interpolation between knots,
    constant beyond them (scikit-learn's ``IsotonicRegression`` with ``out_of_bounds="clip"``)."""
    from sklearn.isotonic import IsotonicRegression

    p, y = _labelled(probabilities, labels)
    if p.ndim != 1:
        raise ValueError(f"Isotonic calibration is for binary outputs (n,) or (n, 1). Received {p.shape}.")
    if len(y) == 0:
        return [0.0, 1.0], [0.0, 1.0]
    model = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(p, y)
    return [float(v) for v in model.X_thresholds_], [float(v) for v in model.y_thresholds_]


# === Model outputs ===


def collect_outputs(
    model: Any, batches: Any, task_names: Sequence[str]
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """``(outputs, labels)`` of ``model`` over a ``(x, y)`` dataset, keyed by task, in order."""
    outputs: dict[str, list[np.ndarray]] = {t: [] for t in task_names}
    labels: dict[str, list[np.ndarray]] = {t: [] for t in task_names}
    for batch in batches:  # (x, y) or (x, y, sample_weight)
        x, y = batch[0], batch[1]
        result = model(x, training=False)
        for task in task_names:
            outputs[task].append(np.asarray(result[task], dtype=np.float64))
            labels[task].append(np.asarray(y[task], dtype=np.float64).reshape(-1))
    return (
        {t: np.concatenate(v) for t, v in outputs.items()},
        {t: np.concatenate(v) for t, v in labels.items()},
    )


def task_ece(
    outputs: Mapping[str, np.ndarray], labels: Mapping[str, np.ndarray], bins: int = 15
) -> dict[str, float]:
    """``{task: ECE}`` for the given tasks' outputs."""
    return {t: expected_calibration_error(outputs[t], labels[t], bins) for t in outputs}


__all__ = [
    "EPSILON",
    "apply_temperature",
    "collect_outputs",
    "confidences",
    "expected_calibration_error",
    "fit_isotonic",
    "fit_temperature",
    "logits",
    "reliability",
    "task_ece",
]
