"""Choosing the one step a compiled model trains with, from its balancer (called once, by ``compile``)."""

from __future__ import annotations

import enum
import logging
from typing import Any

from mtl_keras.balancers import Balancer, Level, NormScope
from mtl_keras.training.gramian_jacobian import GramianJacobianStep
from mtl_keras.training.linear import LinearCombinationStep
from mtl_keras.training.norms import PerTaskNormStep
from mtl_keras.training.param_jacobian import ParameterJacobianStep
from mtl_keras.training.rep_jacobian import RepresentationJacobianStep
from mtl_keras.training.runner import Step
from mtl_keras.training.summed import SummedStep

logger = logging.getLogger(__name__)


def norm_variables(model: Any, scope: NormScope) -> list[Any]:
    """The variables of ``model`` a weighting's :class:`~mtl_keras.balancers.NormScope` names."""
    if scope is NormScope.SHARED:
        return list(model.shared_variables)
    return list(model.last_shared_variables)


class JacobianMode(str, enum.Enum):
    """How the parameter-level step holds the task gradients (``compile(jacobian=...)``)."""

    #: the Gramian step when the Jacobian would exceed :data:`GRAMIAN_ABOVE_FLOATS` entries and the
    #: aggregator needs only the Gram matrix, else the stored Jacobian
    AUTO = "auto"
    #: every task's gradient of every shared variable at once (the fastest; T × parameters floats)
    STORED = "stored"
    #: the Gram matrix chunk by chunk, then one weighted backward pass (:mod:`~mtl_keras.training.gramian_jacobian`)
    GRAMIAN = "gramian"


#: ``jacobian="auto"`` switches to the Gramian step above this many Jacobian entries (2^27: 512 MiB).
GRAMIAN_ABOVE_FLOATS = 2**27


def use_gramian(mode: JacobianMode, aggregator: Any, model: Any, num_tasks: int) -> bool:
    """Whether the parameter-level step is the Gramian one (see :class:`JacobianMode`)."""
    if mode is JacobianMode.STORED:
        return False
    if not aggregator.gramian_based:
        if mode is JacobianMode.GRAMIAN:
            raise ValueError(
                f"jacobian='gramian' needs a Gramian-based aggregator; {type(aggregator).__name__} needs the "
                "Jacobian itself. Use jacobian='stored' or 'auto'."
            )
        return False
    if mode is JacobianMode.GRAMIAN:
        return True
    size = sum(int(v.shape.num_elements()) for v in model.shared_variables)
    return num_tasks * size > GRAMIAN_ABOVE_FLOATS


def choose_step(model: Any, balancer: Balancer) -> Step:
    """The step for ``balancer`` on ``model``:

    * a Jacobian (an aggregator that needs one, or ``log_conflicts``): the representation-level step when
      the level is ``rep`` and there is an aggregator, else the parameter-level step (stored Jacobian, or
      the Gramian step per the model's ``jacobian_mode``, see :class:`JacobianMode`); when no shared
      variable is trainable (a frozen trunk) the summed step instead, with a logged notice;
    * an aggregator with fixed row weights (mean, sum): the linear-combination step;
    * otherwise the summed step;
    * wrapped in the per-task-norm step when the weighting declares ``norms_over``; that step reuses its
      norm gradients for the shared update when they cover exactly the shared variables and nothing else
      asked for a Jacobian or a combination.
    """
    aggregator = balancer.aggregator
    if balancer.needs_jacobian and not model.shared_layer_names:
        raise ValueError(
            f"Balancer {balancer.describe()!r} aggregates gradients of shared variables, but model "
            f"{model.name!r} declares none (e.g. soft sharing or single-task models)."
        )
    step: Step | None
    if balancer.needs_jacobian and not model.shared_variables:
        logger.warning(
            "Model %r has no trainable shared variable (a frozen trunk): balancer %r trains with the summed "
            "objective (nothing shared to aggregate, no gradient conflicts logged).",
            model.name,
            balancer.describe(),
        )
        step = None
    elif balancer.needs_jacobian and balancer.level is Level.REP and aggregator is not None:
        step = RepresentationJacobianStep(
            model._representation_model(), aggregator, log_conflicts=balancer.log_conflicts
        )
    elif balancer.needs_jacobian:
        if aggregator is not None:
            aggregator.build_blocks([tuple(v.shape) for v in model.shared_variables])
        mode = JacobianMode(getattr(model, "jacobian_mode", JacobianMode.AUTO))
        if aggregator is not None and use_gramian(mode, aggregator, model, len(model.task_names)):
            step = GramianJacobianStep(aggregator, log_conflicts=balancer.log_conflicts)
        else:
            step = ParameterJacobianStep(aggregator, log_conflicts=balancer.log_conflicts)
    elif aggregator is not None and aggregator.combination_weights() is not None:
        step = LinearCombinationStep(aggregator)
    else:
        step = None
    scope = balancer.weighting.norms_over
    if scope is None:
        return step or SummedStep()
    variables = norm_variables(model, scope)
    if not variables:
        raise ValueError(
            f"Weighting {balancer.weighting.registered_name!r} takes gradient norms over the "
            f"{scope.value.replace('_', ' ')} variables; model {model.name!r} declares none."
        )
    balancer.weighting.build_blocks([tuple(v.shape) for v in variables])
    covers_shared = [id(v) for v in variables] == [id(v) for v in model.shared_variables]
    if step is None and covers_shared:
        return PerTaskNormStep(variables)
    return PerTaskNormStep(variables, step or SummedStep())
