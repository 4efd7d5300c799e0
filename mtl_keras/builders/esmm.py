"""Entire Space Multi-task Model (ESMM) (Ma et al., SIGIR 2018).

A shared bottom feeds a CTR tower and a CVR tower; the model outputs p(CTR), p(CVR) and
p(CTCVR) = p(CTR)·p(CVR). Training uses two losses over the whole impression space: CTR (label: click) and
CTCVR (label: click and conversion). The CVR head is served but has no loss: it is learned only through the
CTCVR product, which avoids the sample selection bias of training CVR on clicked impressions alone.

:class:`~mtl_keras.MultiTaskModel` needs one label entry per head, so the CVR head is a task whose labels
are all NaN (a task without labels has loss 0 and no gradient). :func:`esmm_labels` builds the three label
arrays from click and conversion columns.

Shared layers (the variables more than one task's loss depends on): the shared bottom and the CTR tower,
which both losses read (CTCVR through the product). The CVR tower only affects the CTCVR loss. The model
declares no shared representation: the CTR tower is shared and lies after the bottom, so no single layer
output carries every shared gradient (use ``level="param"`` balancers).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

from mtl_keras._registry import suggest
from mtl_keras.builders._common import Graph, build_model, flatten, float32_output, tower
from mtl_keras.layers._checks import check_positive_ints, check_rate
from mtl_keras.model import MultiTaskModel
from mtl_keras.tasks import Task


def _check_names(ctr: Any, cvr: Any, ctcvr: Any) -> None:
    names = {"ctr": ctr, "cvr": cvr, "ctcvr": ctcvr}
    for argument, value in names.items():
        if not isinstance(value, str) or not value.isidentifier():
            raise ValueError(
                f"Expected `{argument}` to be a task name (a Python identifier). "
                f"Received: {argument}={value!r}"
            )
    if len(set(names.values())) != 3:
        raise ValueError(
            "Expected `ctr`, `cvr` and `ctcvr` to be three different task names. "
            f"Received: ctr={ctr!r}, cvr={cvr!r}, ctcvr={ctcvr!r}"
        )


def esmm_tasks(tasks: Any, *, ctr: str = "ctr", cvr: str = "cvr", ctcvr: str = "ctcvr") -> list[Task]:
    """The model's tasks ``[ctr, cvr, ctcvr]`` from the user's CTR and CTCVR tasks.

    ``tasks`` holds the CTR and CTCVR tasks (names, which become binary tasks, ``Task`` objects or config
    dicts) and optionally a CVR task (to choose its metrics); a CVR task is added when it is left out.
    """
    _check_names(ctr, cvr, ctcvr)
    if isinstance(tasks, (str, Task, dict)):
        tasks = [tasks]
    if not isinstance(tasks, Sequence):
        raise ValueError(
            f"Expected `tasks` to be a list holding the {ctr!r} and {ctcvr!r} tasks. "
            f"Received: tasks={tasks!r}"
        )
    given: dict[str, Task] = {}
    for task in tasks:
        if isinstance(task, str):
            task = Task(task, "binary")
        elif isinstance(task, dict):
            task = Task.from_config(task)
        elif not isinstance(task, Task):
            raise ValueError(
                f"Expected a Task, a task name or a task config dict in `tasks`. Received: {task!r}"
            )
        if task.name not in (ctr, cvr, ctcvr):
            raise ValueError(
                f"Expected `tasks` to hold exactly the CTR task {ctr!r} and the CTCVR task {ctcvr!r} (and "
                f"optionally the CVR task {cvr!r}). Received a task named {task.name!r}."
                + suggest(task.name, [ctr, cvr, ctcvr])
            )
        if task.name in given:
            raise ValueError(f"Task names must be unique. Received task {task.name!r} twice in `tasks`.")
        if task.kind != "binary" or task.output_units != 1:
            raise ValueError(
                f"Expected ESMM task {task.name!r} to be a binary task with one output unit. "
                f"Received: kind={task.kind!r}, units={task.output_units}"
            )
        given[task.name] = task
    missing = [name for name in (ctr, ctcvr) if name not in given]
    if missing:
        raise ValueError(
            f"Expected `tasks` to hold the CTR task {ctr!r} and the CTCVR task {ctcvr!r}. "
            f"Missing: {missing}; received tasks {sorted(given)}."
        )
    return [given[ctr], given.get(cvr, Task(cvr, "binary")), given[ctcvr]]


def esmm_labels(
    click: Any, conversion: Any, *, ctr: str = "ctr", cvr: str = "cvr", ctcvr: str = "ctcvr"
) -> dict[str, np.ndarray]:
    """Labels for :func:`esmm`: ``{ctr: click, ctcvr: click·conversion, cvr: NaN}``.

    Args:
        click: 0/1 per impression (NaN: unknown).
        conversion: 0/1 per impression; only read where ``click == 1`` (a conversion needs a click, so
            non-clicked impressions may hold 0 or NaN there; NaN on a clicked impression is unknown).

    The CVR labels are all NaN: ESMM has no CVR loss, the CVR head learns through the CTCVR product.
    """
    _check_names(ctr, cvr, ctcvr)
    clicks = np.asarray(click, dtype=np.float32)
    conversions = np.asarray(conversion, dtype=np.float32)
    if clicks.shape != conversions.shape:
        raise ValueError(
            "Expected `click` and `conversion` to have the same shape (one entry per impression). "
            f"Received: click.shape={clicks.shape}, conversion.shape={conversions.shape}"
        )
    for argument, values in (("click", clicks), ("conversion", conversions)):
        known = values[~np.isnan(values)]
        if not np.isin(known, (0.0, 1.0)).all():
            bad = sorted(set(known[~np.isin(known, (0.0, 1.0))].tolist()))[:5]
            raise ValueError(f"Expected `{argument}` to hold 0, 1 or NaN. Received values {bad}")
    if np.any((clicks == 0) & (conversions == 1)):
        index = int(np.flatnonzero(((clicks == 0) & (conversions == 1)).ravel())[0])
        raise ValueError(
            f"Expected conversions only on clicked impressions. Received conversion=1 with click=0 at "
            f"index {index}."
        )
    products = np.where(clicks == 1, conversions, np.float32(0.0)).astype(np.float32)
    products[np.isnan(clicks)] = np.nan
    return {ctr: clicks, cvr: np.full_like(clicks, np.nan), ctcvr: products}


def graph(
    tasks: list[Task],
    features: Any,
    *,
    prefix: str = "",
    ctr: str = "ctr",
    cvr: str = "cvr",
    ctcvr: str = "ctcvr",
    shared_units: Sequence[int] = (64,),
    tower_units: Sequence[int] = (32, 16),
    dropout: float = 0.0,
) -> Graph:
    by_name = {task.name: task for task in esmm_tasks(tasks, ctr=ctr, cvr=cvr, ctcvr=ctcvr)}
    if len(tasks) != 3:
        raise ValueError(
            f"Expected the three ESMM tasks {[ctr, cvr, ctcvr]}. Received tasks {[t.name for t in tasks]}."
        )
    shared_units = check_positive_ints(shared_units, "shared_units", allow_empty=False)
    tower_units = check_positive_ints(tower_units, "tower_units")
    dropout = check_rate(dropout, "dropout")

    h = flatten(features, f"{prefix}flatten")
    bottom = []
    for i, units in enumerate(shared_units):
        layer = keras.layers.Dense(units, activation="relu", name=f"{prefix}shared_{i}")
        h = layer(h)
        bottom.append(layer)
    ctr_tower = tower(by_name[ctr], tower_units, dropout=dropout, prefix=prefix)
    p_ctr = float32_output(ctr_tower(h), ctr, activation=by_name[ctr].activation, prefix=prefix)
    cvr_logits = tower(by_name[cvr], tower_units, dropout=dropout, prefix=prefix)(h)
    p_cvr = float32_output(cvr_logits, cvr, activation=by_name[cvr].activation, prefix=prefix)
    # The product of the two float32 probabilities is taken in float32 too.
    product = keras.layers.Multiply(dtype="float32", name=f"{prefix}product_{ctcvr}")([p_ctr, p_cvr])
    p_ctcvr = float32_output(product, ctcvr, prefix=prefix)
    # The CVR output has no loss (its labels are NaN): it makes nothing shared.
    return Graph(
        outputs={ctr: p_ctr, cvr: p_cvr, ctcvr: p_ctcvr},
        shared_layers=[*bottom, ctr_tower],
        loss_free=(cvr,),
    )


def esmm(
    tasks: Any,
    inputs: Any,
    *,
    ctr: str = "ctr",
    cvr: str = "cvr",
    ctcvr: str = "ctcvr",
    shared_units: Sequence[int] = (64,),
    tower_units: Sequence[int] = (32, 16),
    dropout: float = 0.0,
    balancer: Any = None,
    name: str = "esmm",
) -> MultiTaskModel:
    """ESMM: a shared bottom, a CTR and a CVR tower, outputs ``{ctr, cvr, ctcvr = ctr·cvr}``.

    Args:
        tasks: the CTR and CTCVR tasks: names (binary tasks) or binary ``Task`` objects; a binary CVR task
            may be added to choose its metrics, otherwise one is created. The model's tasks are
            ``[ctr, cvr, ctcvr]``.
        inputs: an input size, a shape, :class:`~mtl_keras.builders.inputs.RawFeatures` (its categorical
            features are the embedded ids) or keras inputs.
        ctr, cvr, ctcvr: the three task (and output) names.
        shared_units: sizes of the shared bottom's ReLU Dense layers, read by both towers.
        tower_units: hidden sizes of the CTR and CVR towers, before their sigmoid output.
        dropout: dropout in the towers.
        balancer: default balancer used by ``compile``.
        name: model name.

    Train with ``y = esmm_labels(click, conversion)``: CTR and CTCVR labels over all impressions and all-NaN
    CVR labels, so the CVR head has no loss of its own (its logged loss is 0). Shared layers are the bottom
    (``shared_<i>``) and the CTR tower (both losses depend on it); the CVR tower only serves the CTCVR loss.
    No shared representation is declared, since the shared CTR tower comes after the bottom.
    """
    task_list = esmm_tasks(tasks, ctr=ctr, cvr=cvr, ctcvr=ctcvr)
    return build_model(
        graph,
        task_list,
        inputs,
        name=name,
        balancer=balancer,
        ctr=ctr,
        cvr=cvr,
        ctcvr=ctcvr,
        shared_units=shared_units,
        tower_units=tower_units,
        dropout=dropout,
    )
