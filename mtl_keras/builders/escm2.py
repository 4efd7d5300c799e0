"""ESCM²: ESMM plus a counterfactual CVR risk over the entire impression space (Wang et al., SIGIR 2022).

The ESMM graph (:mod:`mtl_keras.builders.esmm`: shared bottom, CTR and CVR towers, CTCVR = CTR·CVR) gets a
fourth head, ``counterfactual``, that stacks ``[p_cvr, p_ctr]`` (IPS) or ``[p_cvr, p_ctr, ê]`` (DR, with ``ê``
from an imputation tower on the bottom). Its loss is :class:`~mtl_keras.losses.CounterfactualCVR`, the
IPS or doubly robust estimate of the CVR risk over every impression with the CTR tower's output as the
propensity of a click. The objective is ``L_ctr + L_ctcvr + λ · L_counterfactual`` with ``λ`` the
counterfactual task's weight (``compile(loss_weights={counterfactual: λ})``, or ``tasks.<name>.weight``).

The counterfactual head is a training head: it is served like every output, but only ``cvr`` is the CVR
prediction. :func:`escm2_labels` builds the four label arrays from click and conversion columns.

Shared layers: the bottom, the CTR tower (CTR, CTCVR and the propensity) and the CVR tower (CTCVR and the
counterfactual risk). The imputation tower serves the counterfactual head only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

import keras
import numpy as np
from annotated_types import Interval

from mtl_keras.builders._common import Graph, build_model, float32_output
from mtl_keras.builders.esmm import esmm_labels, esmm_tasks
from mtl_keras.builders.esmm import graph as esmm_graph
from mtl_keras.layers._checks import check_positive_ints
from mtl_keras.layers.towers import Tower
from mtl_keras.losses.counterfactual_cvr import VARIANTS, CounterfactualCVR
from mtl_keras.model import MultiTaskModel
from mtl_keras.option_types import NonEmptyUnits, Rate, Units
from mtl_keras.tasks import Task

#: A lower bound of a propensity: (0, 1].
Propensity = Annotated[float, Interval(gt=0, le=1)]


def _check_variant(variant: Any) -> str:
    if variant not in VARIANTS:
        raise ValueError(f"Expected `variant` to be one of {list(VARIANTS)}. Received: variant={variant!r}")
    return str(variant)


def counterfactual_task(name: str, variant: str = "ips", min_propensity: float = 0.05) -> Task:
    """The counterfactual head's task: ``units`` 2 (IPS) or 3 (DR), the counterfactual CVR loss, no metrics."""
    loss = CounterfactualCVR(_check_variant(variant), min_propensity)
    return Task(name, "regression", units=loss.width, loss=loss, metrics=())


def escm2_tasks(
    tasks: Any,
    *,
    variant: str = "ips",
    min_propensity: float = 0.05,
    ctr: str = "ctr",
    cvr: str = "cvr",
    ctcvr: str = "ctcvr",
    counterfactual: str = "counterfactual",
) -> list[Task]:
    """The model's tasks ``[ctr, cvr, ctcvr, counterfactual]``: ESMM's (:func:`~mtl_keras.builders.esmm.esmm_tasks`) and the counterfactual task (a given one is replaced: its loss is the builder's)."""
    if not isinstance(counterfactual, str) or not counterfactual.isidentifier():
        raise ValueError(
            "Expected `counterfactual` to be a task name (a Python identifier). "
            f"Received: counterfactual={counterfactual!r}"
        )
    if counterfactual in (ctr, cvr, ctcvr):
        raise ValueError(
            f"Expected `counterfactual` to differ from the ESMM task names {[ctr, cvr, ctcvr]}. "
            f"Received: counterfactual={counterfactual!r}"
        )
    if isinstance(tasks, (str, Task, dict)):
        tasks = [tasks]
    if isinstance(tasks, Sequence):

        def name_of(task: Any) -> Any:
            return (
                task if isinstance(task, str) else task.get("name") if isinstance(task, dict) else task.name
            )

        tasks = [task for task in tasks if name_of(task) != counterfactual]
    task_list = esmm_tasks(tasks, ctr=ctr, cvr=cvr, ctcvr=ctcvr)
    return [*task_list, counterfactual_task(counterfactual, variant, min_propensity)]


def escm2_labels(
    click: Any,
    conversion: Any,
    *,
    variant: str = "ips",
    ctr: str = "ctr",
    cvr: str = "cvr",
    ctcvr: str = "ctcvr",
    counterfactual: str = "counterfactual",
) -> dict[str, np.ndarray]:
    """Labels for :func:`escm2`: :func:`~mtl_keras.builders.esmm.esmm_labels` plus the counterfactual
    head's ``[click, conversion]`` per impression (conversion 0 where not clicked), zero-padded to three
    columns for DR. Impressions with an unknown click are NaN there (no loss)."""
    width = CounterfactualCVR(_check_variant(variant)).width
    labels = esmm_labels(click, conversion, ctr=ctr, cvr=cvr, ctcvr=ctcvr)
    clicks, products = labels[ctr].reshape(-1), labels[ctcvr].reshape(-1)
    stacked = np.zeros((clicks.shape[0], width), dtype=np.float32)
    stacked[:, 0], stacked[:, 1] = clicks, products
    stacked[np.isnan(clicks)] = np.nan
    return {**labels, counterfactual: stacked}


def graph(
    tasks: list[Task],
    features: Any,
    *,
    prefix: str = "",
    variant: str = "ips",
    min_propensity: float = 0.05,
    ctr: str = "ctr",
    cvr: str = "cvr",
    ctcvr: str = "ctcvr",
    counterfactual: str = "counterfactual",
    shared_units: Sequence[int] = (64,),
    tower_units: Sequence[int] = (32, 16),
    imputation_units: Sequence[int] = (16,),
    dropout: float = 0.0,
) -> Graph:
    variant = _check_variant(variant)
    by_name = {task.name: task for task in tasks}
    if sorted(by_name) != sorted([ctr, cvr, ctcvr, counterfactual]):
        raise ValueError(
            f"Expected the four ESCM² tasks {[ctr, cvr, ctcvr, counterfactual]}. "
            f"Received tasks {[t.name for t in tasks]}."
        )
    imputation_units = check_positive_ints(imputation_units, "imputation_units")
    base = esmm_graph(
        [by_name[ctr], by_name[cvr], by_name[ctcvr]],
        features,
        prefix=prefix,
        ctr=ctr,
        cvr=cvr,
        ctcvr=ctcvr,
        shared_units=shared_units,
        tower_units=tower_units,
        dropout=dropout,
    )
    columns = [base.outputs[cvr], base.outputs[ctr]]
    if variant == "dr":
        bottom = base.shared_layers[len(check_positive_ints(shared_units, "shared_units")) - 1].output
        imputation = Tower(
            units=imputation_units,
            output_units=1,
            output_activation="linear",
            name=f"{prefix}tower_{counterfactual}_imputation",
        )(bottom)
        # An error estimate is non-negative: softplus of the tower's output, in float32.
        columns.append(
            float32_output(imputation, f"{counterfactual}_imputation", activation="softplus", prefix=prefix)
        )
    stacked = keras.layers.Concatenate(dtype="float32", name=f"{prefix}stack_{counterfactual}")(columns)
    outputs = {**base.outputs, counterfactual: float32_output(stacked, counterfactual, prefix=prefix)}
    # The CVR tower now feeds two losses (CTCVR and the counterfactual risk): shared.
    cvr_tower = _producer(_producer(base.outputs[cvr]).input)
    return Graph(outputs=outputs, shared_layers=[*base.shared_layers, cvr_tower], loss_free=base.loss_free)


def _producer(tensor: Any) -> Any:
    """The layer whose output ``tensor`` is."""
    return tensor._keras_history.operation


def escm2(
    tasks: Any,
    inputs: Any,
    *,
    variant: str = "ips",
    min_propensity: Propensity = 0.05,
    ctr: str = "ctr",
    cvr: str = "cvr",
    ctcvr: str = "ctcvr",
    counterfactual: str = "counterfactual",
    shared_units: NonEmptyUnits = (64,),
    tower_units: Units = (32, 16),
    imputation_units: Units = (16,),
    dropout: Rate = 0.0,
    balancer: Any = None,
    name: str = "escm2",
) -> MultiTaskModel:
    """ESCM²: ESMM's heads ``{ctr, cvr, ctcvr}`` and a ``counterfactual`` head with the IPS or DR risk.

    Args:
        tasks: the CTR and CTCVR tasks (and optionally a CVR task), as for
            :func:`~mtl_keras.builders.esmm.esmm`; the counterfactual task is added.
        inputs: an input size, a shape, raw features or keras inputs.
        variant: ``"ips"`` or ``"dr"`` (doubly robust, with an imputation tower).
        min_propensity: the CTR tower's output is clipped below at this value as a propensity.
        ctr, cvr, ctcvr, counterfactual: the four task (and output) names.
        shared_units, tower_units, dropout: as for ESMM.
        imputation_units: hidden sizes of the DR imputation tower (on the shared bottom).
        balancer: default balancer used by ``compile``.
        name: model name.

    Train with ``y = escm2_labels(click, conversion, variant=...)``; weigh the counterfactual risk with
    ``compile(loss_weights={counterfactual: λ})``.
    """
    task_list = escm2_tasks(
        tasks,
        variant=variant,
        min_propensity=min_propensity,
        ctr=ctr,
        cvr=cvr,
        ctcvr=ctcvr,
        counterfactual=counterfactual,
    )
    return build_model(
        graph,
        task_list,
        inputs,
        name=name,
        balancer=balancer,
        variant=variant,
        min_propensity=min_propensity,
        ctr=ctr,
        cvr=cvr,
        ctcvr=ctcvr,
        counterfactual=counterfactual,
        shared_units=shared_units,
        tower_units=tower_units,
        imputation_units=imputation_units,
        dropout=dropout,
    )
