"""Training steps: how a :class:`~mtl_keras.MultiTaskModel` turns a batch into one optimizer update.

``compile`` picks one step object from the balancer (:func:`choose_step`) and wraps it in a
:class:`Runner`; ``train_step`` and ``test_step`` are the runner's. Layout, one concept per module:

* ``runner.py``: :class:`Runner` — forward pass, masked task losses, the weighting, loss scaling, division
  by replicas, regularisation and extra loss terms, ``optimizer.apply``, hooks, metrics — and the
  :class:`Step` interface with the :class:`StepState` a step reads;
* ``summed.py``, ``linear.py``, ``param_jacobian.py``, ``rep_jacobian.py`` (on ``jacobian.py``), ``norms.py``:
  the step kinds; ``select.py``: which one a balancer gets;
* ``losses.py``: masked per-task losses; ``metrics.py``: the logged trackers; ``replicas.py``: collectives.

The step interface. A :class:`Step` has four methods, called in this order for every batch:

1. ``forward(runner, x)`` inside the tape: ``(predictions, representation or None)``;
2. ``weigh(runner, tape, state)`` inside the tape: the weighting's ``(λ, c)`` (the per-task-norm step
   takes its gradient norms here);
3. ``record(runner, state)`` inside the tape, once ``state.terms`` (λ_i L_i + c_i/R per task) and the
   loss-scaled ``state.scaled_objective`` exist: record what step 4 differentiates in ``state.recorded``;
4. ``gradients(runner, tape, state)`` after the tape: the gradients of ``state.variables``, loss-scaled
   and divided among the replicas the way ``optimizer.apply`` expects (use ``runner.for_optimizer``,
   ``runner.split``, ``runner.with_regularization``).

Hooks for what other features add, all exercised by tests/training:

* after the update: ``Weighting.after_step(losses)`` and ``Aggregator.after_step(losses)`` run right
  after ``optimizer.apply`` with the step's global task losses (FAMO-like state);
* state across steps: balancers keep ``tf.Variable`` state (GradVac's targets); an aggregator that needs
  state of the Jacobian's size (MoCo) creates it in ``Aggregator.build_blocks(shapes)``, which the
  parameter-level step's selection calls at compile time;
* extra loss terms: ``model.add_loss_term(fn)`` or ``compile(extra_losses=[fn])`` with
  ``fn(x, labels by task, predictions by task) -> scalar`` (distillation, EWC, counterfactual risks);
  added to the objective like the layers' regularisation under every step kind;
* lookahead: ``model.add_task_gradient_hook(fn)`` with ``fn(gradients, losses)`` sees every task's
  global, unscaled gradient of the shared variables (``[task][variable]``) at every step, before the
  update (task affinity); it runs inside the compiled step, so it writes what it keeps to variables a
  Keras callback reads. It costs one backward pass per task when registered;
* frozen trunk: when no shared variable is trainable a Jacobian balancer falls back to the summed step
  with a logged notice.
"""

from mtl_keras.training.linear import LinearCombinationStep
from mtl_keras.training.losses import TaskLosses
from mtl_keras.training.metrics import StepMetrics
from mtl_keras.training.norms import PerTaskNormStep
from mtl_keras.training.param_jacobian import ParameterJacobianStep
from mtl_keras.training.rep_jacobian import RepresentationJacobianStep
from mtl_keras.training.runner import LossTerm, Runner, Step, StepState, TaskGradientHook
from mtl_keras.training.select import choose_step, norm_variables
from mtl_keras.training.summed import SummedStep

__all__ = [
    "LinearCombinationStep",
    "LossTerm",
    "ParameterJacobianStep",
    "PerTaskNormStep",
    "RepresentationJacobianStep",
    "Runner",
    "Step",
    "StepMetrics",
    "StepState",
    "SummedStep",
    "TaskGradientHook",
    "TaskLosses",
    "choose_step",
    "norm_variables",
]
