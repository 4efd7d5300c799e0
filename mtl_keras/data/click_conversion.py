"""Synthetic impressions → clicks → conversions with known click and conversion probabilities.

Public recommender data sets log a conversion only after a click, so nobody knows whether an unclicked
impression would have converted, and a debiasing model cannot be checked on the whole impression space.
Here every impression gets its true click probability and its true conversion probability (and a drawn
conversion outcome, clicked or not); the labels a model sees are only the logged ones (conversion observed
after a click). See docs/methods.md, "Click-conversion generator".

Generative model (one draw of every parameter from ``seed``, then independent splits):

* users ``u`` and items ``i`` are drawn with Zipf-like popularity (probability ∝ 1/rank^``popularity``);
  each item has a category (``num_categories``), each impression a device (3 values) and ``num_numeric``
  N(0, 1) context features ``x``;
* the conversion logit over the whole space is
  ``s_v = cvr_bias + a_u + b_i + c_cat + ⟨p_u, q_i⟩ + w_vᵀx`` (user, item and category effects, a
  user × item interaction of rank ``factors``, a linear context effect);
* the click logit is ``s_c = ctr_bias + a'_u + b'_i + c'_cat + d'_device + w_cᵀx + selection_bias · (s_v −
  cvr_bias)``: with ``selection_bias = 0`` clicks say nothing about conversions (the clicked rows are a fair
  sample of conversion propensities), a larger value makes users click where they would convert anyway,
  so clicked impressions convert more often than the impression space;
* click ~ Bernoulli(σ(s_c)), the conversion outcome ~ Bernoulli(σ(s_v)) for every impression, observed
  only when clicked. Given the features, clicking and converting are independent (the selection is on
  the features, not on a hidden cause), so the true CVR of an impression does not depend on its click.
"""

from __future__ import annotations

import dataclasses
import numbers

import numpy as np

from mtl_keras.data.base import MultiTaskDataset, Split, _check_positive_int, _check_seed
from mtl_keras.option_types import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt
from mtl_keras.tasks import Task

#: Label layouts of :func:`click_conversion`.
LAYOUTS = ("observed", "entire_space", "sequential")
DEVICES = ("mobile", "desktop", "tablet")


@dataclasses.dataclass(eq=False)
class ClickConversionDataset(MultiTaskDataset):
    """A `MultiTaskDataset` plus the ground truth of every impression.

    ``truth[split]`` holds float64 arrays over every impression of the split: ``"ctr"`` the true click
    probability, ``"cvr"`` the true conversion probability (clicked or not), ``"conversion"`` the drawn
    conversion outcome (also where it was not observed), ``"click"`` the drawn click, ``"logged_conversion"``
    the conversion as the log holds it (0 where a delayed conversion came after the cut, NaN where missing;
    equal to ``"conversion"`` by default) and ``"elapsed"`` the time from the impression to the cut.
    """

    truth: dict[str, dict[str, np.ndarray]] = dataclasses.field(default_factory=dict)


def _check_number(name: str, value: object, *, positive: bool = False) -> float:
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        number = float(value)
        if np.isfinite(number) and (number > 0.0 or not positive):
            return number
    expected = "a positive number" if positive else "a finite number"
    raise ValueError(f"Expected `{name}` to be {expected}. Received: {name}={value!r}")


def _popularity(count: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Probabilities ∝ 1/rank^exponent, assigned to the ``count`` ids in a random order."""
    weights = 1.0 / np.arange(1, count + 1, dtype=np.float64) ** exponent
    return rng.permutation(weights / weights.sum())


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def click_conversion(
    n: PositiveInt = 200_000,
    seed: NonNegativeInt = 0,
    *,
    n_validation: PositiveInt = 20_000,
    n_test: PositiveInt = 50_000,
    num_users: PositiveInt = 100_000,
    num_items: PositiveInt = 10_000,
    num_categories: PositiveInt = 32,
    num_numeric: PositiveInt = 4,
    factors: PositiveInt = 4,
    selection_bias: NonNegativeFloat = 1.0,
    popularity: PositiveFloat = 1.0,
    ctr_bias: float = -2.0,
    cvr_bias: float = -1.5,
    layout: str = "observed",
    conversion_delay: NonNegativeFloat = 0.0,
    missing_conversions: NonNegativeFloat = 0.0,
) -> ClickConversionDataset:
    """Impressions with user and item ids, clicks and conversions, and the true CTR and CVR of each.

    Args:
        n: number of training impressions.
        seed: seeds every parameter of the generative model and every draw.
        n_validation, n_test: sizes of the other splits (the same users, items and model).
        num_users, num_items: distinct user and item ids (``"u<k>"``, ``"i<k>"``; features of kind ``id``).
        num_categories: item categories (feature ``category``, kind ``categorical``).
        num_numeric: context features ``x_0 …`` (kind ``numeric``).
        factors: rank of the user × item interaction of the conversion logit.
        selection_bias: how strongly the click logit follows the conversion logit (0: not at all).
        popularity: Zipf exponent of user and item popularity (larger: a heavier head).
        ctr_bias, cvr_bias: the intercepts of the click and conversion logits.
        layout: ``"observed"``: binary tasks ``click`` and ``conversion`` (NaN where not clicked), as a log
            holds them; ``"entire_space"``: ESMM's tasks ``ctr`` (the click), ``cvr`` (all NaN: no loss)
            and ``ctcvr`` (click and conversion, over all impressions); ``"sequential"``: the steps of the
            funnel for AITM, ``ctr`` (the click) then ``ctcvr`` (click and conversion), both over all
            impressions.
        conversion_delay: mean delay of a conversion after its click, in units of the logging window
            (exponential); 0 (default): every conversion is logged. Each impression happened a
            Uniform(0, 1) time before the log was cut; a conversion whose delay exceeds that time is not
            in the log yet and its label reads 0 (the false negatives of delayed feedback).
        missing_conversions: the share of impressions whose conversion label is missing altogether (NaN in
            ``conversion`` / ``ctcvr``; partial labels), drawn independently of everything else.

    Returns:
        A :class:`ClickConversionDataset` (a `MultiTaskDataset`) with dict inputs ``user_id``,
        ``item_id``, ``category``, ``device``, ``x_0 …`` and the ground truth of every impression in
        ``truth``.
    """
    sizes = {
        "train": _check_positive_int("n", n),
        "validation": _check_positive_int("n_validation", n_validation),
        "test": _check_positive_int("n_test", n_test),
    }
    num_users = _check_positive_int("num_users", num_users)
    num_items = _check_positive_int("num_items", num_items)
    num_categories = _check_positive_int("num_categories", num_categories)
    num_numeric = _check_positive_int("num_numeric", num_numeric)
    factors = _check_positive_int("factors", factors)
    strength = _check_number("selection_bias", selection_bias)
    if strength < 0:
        raise ValueError(f"Expected `selection_bias` to be >= 0. Received: selection_bias={selection_bias!r}")
    exponent = _check_number("popularity", popularity, positive=True)
    ctr_bias = _check_number("ctr_bias", ctr_bias)
    cvr_bias = _check_number("cvr_bias", cvr_bias)
    if layout not in LAYOUTS:
        raise ValueError(f"Expected `layout` to be one of {list(LAYOUTS)}. Received: layout={layout!r}")
    delay = _check_number("conversion_delay", conversion_delay)
    if delay < 0:
        raise ValueError(
            f"Expected `conversion_delay` to be >= 0. Received: conversion_delay={conversion_delay!r}"
        )
    missing = _check_number("missing_conversions", missing_conversions)
    if not 0.0 <= missing < 1.0:
        raise ValueError(
            "Expected `missing_conversions` to be in [0, 1). "
            f"Received: missing_conversions={missing_conversions!r}"
        )
    rng = np.random.default_rng(_check_seed(seed))
    # the logging draws have their own stream: without them, the impressions are the same as before
    logging_rng = np.random.default_rng([_check_seed(seed), 1])

    # === the model, drawn once ===
    user_p, item_p = _popularity(num_users, exponent, rng), _popularity(num_items, exponent, rng)
    item_category = rng.integers(0, num_categories, size=num_items)
    cvr_user, cvr_item = rng.normal(0, 0.5, num_users), rng.normal(0, 0.7, num_items)
    cvr_category = rng.normal(0, 0.5, num_categories)
    user_factors = rng.normal(0, 1 / np.sqrt(factors), (num_users, factors))
    item_factors = rng.normal(0, 1, (num_items, factors))
    cvr_x = rng.normal(0, 0.4, num_numeric)
    ctr_user, ctr_item = rng.normal(0, 0.5, num_users), rng.normal(0, 0.5, num_items)
    ctr_category, ctr_device = rng.normal(0, 0.3, num_categories), np.array([0.0, -0.3, 0.2])
    ctr_x = rng.normal(0, 0.4, num_numeric)

    splits, truth = {}, {}
    for name, size in sizes.items():
        users = rng.choice(num_users, size=size, p=user_p)
        items = rng.choice(num_items, size=size, p=item_p)
        categories = item_category[items]
        devices = rng.integers(0, len(DEVICES), size=size)
        x = rng.standard_normal((size, num_numeric))
        interaction = np.einsum("nf,nf->n", user_factors[users], item_factors[items])
        cvr_part = cvr_user[users] + cvr_item[items] + cvr_category[categories] + interaction + x @ cvr_x
        ctr_logit = (
            ctr_bias
            + ctr_user[users]
            + ctr_item[items]
            + ctr_category[categories]
            + ctr_device[devices]
            + x @ ctr_x
            + strength * cvr_part
        )
        p_click, p_conversion = _sigmoid(ctr_logit), _sigmoid(cvr_bias + cvr_part)
        click = (rng.uniform(size=size) < p_click).astype(np.float64)
        conversion = (rng.uniform(size=size) < p_conversion).astype(np.float64)
        features: dict[str, np.ndarray] = {
            "user_id": np.char.add("u", users.astype(str)).astype(object),
            "item_id": np.char.add("i", items.astype(str)).astype(object),
            "category": np.char.add("c", categories.astype(str)).astype(object),
            "device": np.asarray(DEVICES, dtype=object)[devices],
        }
        for j in range(num_numeric):
            features[f"x_{j}"] = x[:, j].astype(np.float32)
        logged = conversion
        elapsed = logging_rng.uniform(size=size)
        if delay > 0:
            logged = np.where(logging_rng.exponential(delay, size=size) <= elapsed, conversion, 0.0)
        if missing > 0:
            logged = np.where(logging_rng.uniform(size=size) < missing, np.nan, logged)
        if layout == "observed":
            labels = {"click": click, "conversion": np.where(click == 1, logged, np.nan)}
        elif layout == "sequential":
            labels = {"ctr": click, "ctcvr": click * logged}
        else:
            labels = {"ctr": click, "cvr": np.full(size, np.nan), "ctcvr": click * logged}
        splits[name] = Split(x=features, y=labels)
        truth[name] = {
            "ctr": p_click,
            "cvr": p_conversion,
            "click": click,
            "conversion": conversion,
            "logged_conversion": logged,
            "elapsed": elapsed,
        }

    names = {"observed": ["click", "conversion"], "sequential": ["ctr", "ctcvr"]}.get(
        layout, ["ctr", "cvr", "ctcvr"]
    )
    kinds = {"user_id": "id", "item_id": "id", "category": "categorical", "device": "categorical"}
    kinds.update({f"x_{j}": "numeric" for j in range(num_numeric)})
    return ClickConversionDataset(
        name="click_conversion",
        tasks=[Task(task, "binary") for task in names],
        train=splits["train"],
        validation=splits["validation"],
        test=splits["test"],
        features=kinds,
        description=(
            f"Synthetic click -> conversion impressions: {num_users} users, {num_items} items, "
            f"selection_bias={strength}, layout={layout!r} (conversions observed only after a click), "
            f"conversion_delay={delay}, missing_conversions={missing}; "
            "true CTR and CVR of every impression in `truth`."
        ),
        truth=truth,
    )
