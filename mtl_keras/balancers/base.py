"""Base classes of the two kinds of balancer, composed by the model as optax composes transformations.

* A :class:`Weighting` works on the loss level: it turns the vector of per-task losses into weighted
  per-task losses (whose sum is the training objective) and may own trainable variables.
* An :class:`Aggregator` works on the gradient level: it turns the Jacobian ``J`` (T, P), row ``i`` the
  gradient of task ``i``'s weighted loss with respect to the shared parameters (or the shared
  representation), into one update direction (P,).

A model takes one of each; adding a method is one class plus ``@WEIGHTINGS.register(name)`` or
``@AGGREGATORS.register(name)`` (in this package or in a user's own module), after which its name works in
``compile(balancer=...)`` and in recipes. What a method declares instead of receiving the model:
``randomised`` (only then it takes ``seed``), ``Weighting.norms_over`` (which variables it needs per-task
gradient norms of), ``Aggregator.needs_jacobian`` / ``gramian_based``; what it may implement besides its
computation: ``after_step(losses)`` (state moved after the optimizer's update),
``Aggregator.observe_losses(losses)`` (the step's task losses, for aggregators that need them, as EPO) and
``Aggregator.build_blocks(shapes)`` (state of the Jacobian's size), ``Weighting.build_blocks(shapes)`` and
``Weighting.observe_gradients(gradients)`` (per-parameter state and the task gradients, for weightings with
``norms_over``). The training steps that call them are in
:mod:`mtl_keras.training`.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Any, ClassVar

import tensorflow as tf

from mtl_keras._registry import Registry
from mtl_keras.balancers._gramian import combine, combine_blocks, gram, gram_of_blocks

AGGREGATORS: Registry[Aggregator] = Registry("gradient aggregator")
WEIGHTINGS: Registry[Weighting] = Registry("loss weighting")


def state_variable(value: Any, name: str, dtype: tf.DType = tf.float32) -> tf.Variable:
    """A non-trainable state variable that stays identical on every replica.

    Balancer state is updated from values that are already all-reduced, so every replica computes the
    same update; ``ONLY_FIRST_REPLICA`` keeps one copy of it under a distribution strategy.
    """
    return tf.Variable(
        tf.cast(value, dtype),
        name=name,
        trainable=False,
        synchronization=tf.VariableSynchronization.ON_WRITE,
        aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
    )


class _Balancer:
    """Shared plumbing: keyword-only options, lazy ``build`` with the number of tasks, config, hooks.

    Only methods that draw random numbers take ``seed``: they set ``randomised = True`` and accept a
    keyword-only ``seed`` (stored as ``self.seed``, part of their config).
    """

    registered_name: str = ""
    #: True for methods that draw random numbers (RLW, PCGrad's and GradVac's orders, GradDrop).
    randomised: ClassVar[bool] = False
    seed: int | None = None

    def __init__(self) -> None:
        self.num_tasks: int | None = None

    def build(self, num_tasks: int) -> None:
        """Create state for ``num_tasks`` tasks. Called once by the model, inside the strategy scope."""
        if num_tasks < 1:
            raise ValueError(
                f"Expected `num_tasks` to be a positive integer. Received: num_tasks={num_tasks}"
            )
        self.num_tasks = num_tasks

    @property
    def built(self) -> bool:
        return self.num_tasks is not None

    def _maybe_build(self, num_tasks: int) -> None:
        if self.num_tasks is None:
            self.build(num_tasks)
        elif self.num_tasks != num_tasks:
            raise ValueError(
                f"{type(self).__name__} was built for {self.num_tasks} tasks and received {num_tasks}."
            )

    def _step_seed(self, step: tf.Tensor) -> tf.Tensor:
        """A stateless-RNG seed of shape (2,) for this call: (seed, step)."""
        return tf.stack([tf.constant(self.seed or 0, tf.int64), tf.cast(step, tf.int64)])

    def after_step(self, losses: tf.Tensor) -> None:
        """Called by the training step right after ``optimizer.apply``, with the step's global task losses
        (T,) as constants: the place for state that moves after the update (FAMO's task logits, a loss
        history). Runs inside the compiled step, on every replica with the same values."""

    def get_config(self) -> dict[str, Any]:
        return {"seed": self.seed} if self.randomised else {}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Any:
        config = dict(config)
        if not cls.randomised:
            # Files written before only randomised methods took a seed store ``seed: None`` for every
            # balancer; the value never had an effect there.
            config.pop("seed", None)
        return cls(**config)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class Aggregator(_Balancer):
    """Gradient-level balancer: ``aggregate(J)`` maps a (T, P) Jacobian to a (P,) update direction.

    Contract, checked for every registered aggregator by one test:

    * works eagerly and inside ``tf.function``;
    * a zero row (a task with no labels in the batch) never produces NaN;
    * randomness (``randomised`` methods only) is drawn with stateless ops seeded by ``(seed, call counter)``.

    Most methods only need the Gram matrix ``G = J Jᵀ`` and return a combination ``Jᵀ w`` of the rows:
    they set ``gramian_based = True`` and implement :meth:`_row_weights`. The model then never builds J:
    it computes G from per-variable blocks of J (:meth:`aggregate_blocks`) or, at representation level
    under a distribution strategy, all-reduces the replicas' (T, T) Gram matrices. The others implement
    :meth:`_aggregate` on the whole J.
    """

    #: False for aggregators whose result is a fixed linear combination of the rows (mean, sum): the model
    #: then skips the Jacobian and back-propagates the combined loss once.
    needs_jacobian: bool = True
    #: True when the update is ``Jᵀ w`` with row weights w computed from ``G = J Jᵀ`` alone.
    gramian_based: bool = False

    def observe_losses(self, losses: tf.Tensor) -> None:
        """Called by the Jacobian steps right before the aggregation, with the step's global task losses
        (T,) as constants (identical on every replica). The default ignores them; an aggregator whose
        direction depends on the loss values (EPO) keeps them for its next :meth:`aggregate` call."""

    def aggregate(self, jacobian: tf.Tensor) -> tf.Tensor:
        jacobian = tf.convert_to_tensor(jacobian)
        if jacobian.shape.rank != 2:
            raise ValueError(
                f"Expected `jacobian` of rank 2 (num_tasks, num_params). Received shape {jacobian.shape}."
            )
        self._maybe_build(_static_num_tasks(jacobian, "jacobian"))
        if self.gramian_based:
            return combine(self._row_weights(gram(jacobian)), jacobian)
        return self._aggregate(jacobian)

    def aggregate_blocks(self, blocks: Sequence[tf.Tensor]) -> list[tf.Tensor]:
        """The update for a Jacobian given as column blocks: one (T, ...) tensor per variable.

        Row i of every block belongs to task i; the result has one tensor per block, of the block's
        trailing shape, and equals splitting ``aggregate(J)`` for J the concatenation of the flattened
        blocks. Gramian-based aggregators never concatenate.
        """
        blocks = [tf.convert_to_tensor(block) for block in blocks]
        if not blocks:
            raise ValueError("Expected at least one block of the Jacobian. Received none.")
        self._maybe_build(_static_num_tasks(blocks[0], "blocks[0]"))
        if self.gramian_based:
            return combine_blocks(self._row_weights(gram_of_blocks(blocks)), blocks)
        return self._aggregate_blocks(blocks)

    def aggregate_rows(self, rows: Sequence[Sequence[tf.Tensor]]) -> list[tf.Tensor]:
        """Like :meth:`aggregate_blocks`, with the Jacobian given per task: ``rows[i][k]`` is task i's
        gradient of variable k. The default stacks the rows into blocks; an aggregator that can use the
        rows directly (GradDrop, whose compiled kernel fuses the stacking away) overrides
        :meth:`_aggregate_rows`."""
        if not rows:
            raise ValueError("Expected the gradients of at least one task. Received none.")
        self._maybe_build(len(rows))
        return self._aggregate_rows([list(row) for row in rows])

    def _aggregate_rows(self, rows: list[list[tf.Tensor]]) -> list[tf.Tensor]:
        return self.aggregate_blocks([tf.stack(task_grads) for task_grads in zip(*rows, strict=True)])

    def row_weights(self, gram_matrix: tf.Tensor) -> tf.Tensor:
        """Row weights w (T,) float64 of the update ``Jᵀ w``, from the Gram matrix ``J Jᵀ`` (T, T).

        Only for ``gramian_based`` aggregators; stateful ones (PCGrad's order, GradVac's targets) advance
        their state, as ``aggregate`` does.
        """
        if not self.gramian_based:
            raise TypeError(f"{type(self).__name__} needs the Jacobian itself, not only its Gram matrix.")
        gram_matrix = tf.cast(tf.convert_to_tensor(gram_matrix), tf.float64)
        self._maybe_build(_static_num_tasks(gram_matrix, "gram_matrix"))
        return self._row_weights(gram_matrix)

    def _row_weights(self, gram_matrix: tf.Tensor) -> tf.Tensor:
        raise NotImplementedError

    def _aggregate(self, jacobian: tf.Tensor) -> tf.Tensor:
        raise NotImplementedError

    def _aggregate_blocks(self, blocks: list[tf.Tensor]) -> list[tf.Tensor]:
        """Default for non-Gramian aggregators: concatenate, aggregate, split."""
        num_tasks = blocks[0].shape[0]
        flat = tf.concat([tf.reshape(b, [num_tasks, -1]) for b in blocks], axis=1)
        direction = self._aggregate(flat)
        sizes = [b.shape[1:].num_elements() for b in blocks]
        return [
            tf.reshape(part, b.shape[1:]) for part, b in zip(tf.split(direction, sizes), blocks, strict=True)
        ]

    @property
    def variables(self) -> list[tf.Variable]:
        """The aggregator's state variables (GradVac's targets, MoDo's and MoCo's weights, call counters), in
        the order they were created: the model saves and restores them with its weights."""
        found: list[tf.Variable] = []
        for value in vars(self).values():
            candidates = value if isinstance(value, list | tuple) else [value]
            found.extend(v for v in candidates if isinstance(v, tf.Variable))
        return found

    def combination_weights(self) -> tf.Tensor | None:
        """Static row weights when ``needs_jacobian`` is False (update = weightsᵀ J); else None."""
        return None

    def build_blocks(self, block_shapes: Sequence[tuple[int, ...]]) -> None:
        """Called once when a model compiles with this aggregator at parameter level, inside the strategy
        scope, with the trailing shape of every Jacobian block (one per shared variable, in the order of
        ``aggregate_rows``): the place to create state of the Jacobian's size (MoCo's tracked Jacobian) with
        :func:`state_variable`. The default creates nothing."""


def _static_num_tasks(tensor: tf.Tensor, name: str) -> int:
    num_tasks = tensor.shape[0] if tensor.shape.rank else None
    if num_tasks is None:
        raise ValueError(f"The number of tasks (first dimension of `{name}`) must be static.")
    return int(num_tasks)


class NormScope(enum.Enum):
    """Which variables a weighting takes per-task gradient norms over (resolved by the training step)."""

    #: every shared variable of the model (DB-MTL)
    SHARED = "shared"
    #: the trainable variables of the last shared layer (GradNorm's W_s)
    LAST_SHARED_LAYER = "last_shared_layer"


class Weighting(_Balancer):
    """Loss-level balancer: the objective is Σ_i (λ_i L_i + c_i), affine in each task loss.

    ``weigh(losses)`` receives the global per-task losses (T,) as constants and returns ``(λ, c)``, both (T,).
    λ and c may depend on the weighting's own trainable variables (uncertainty weighting: λ = 1/(2e^s),
    c = s/2), which the model's optimizer trains with the objective, on loss history (DWA), or on per-task
    gradient norms (GradNorm, DB-MTL). Keeping the objective affine in L_i is what makes it exact under a
    distribution strategy: each replica contributes λ_i·(its share of L_i) + c_i/R, and the replicas' sum
    is the single-device objective.

    Variables are created in ``build`` with :meth:`add_variable`; the model tracks them, so they are saved
    and restored with it. A weighting that needs per-task gradient norms declares where in
    :attr:`norms_over`; ``weigh`` then receives them.
    """

    #: None, or the variables whose per-task gradient norms ``weigh`` receives as ``gradient_norms``.
    norms_over: ClassVar[NormScope | None] = None

    def __init__(self) -> None:
        super().__init__()
        self._variables: list[Any] = []
        #: the model's task names, in order (set by the model when it builds its balancer)
        self.task_names: list[str] = []

    def add_variable(self, value: Any, name: str, *, trainable: bool = False, dtype: str = "float32") -> Any:
        """A Keras variable owned by this weighting (trainable ones are trained by the model's optimizer)."""
        import keras

        # State is updated from all-reduced values, identical on every replica: keep the first replica's.
        aggregation = "none" if trainable else "only_first_replica"
        variable = keras.Variable(value, dtype=dtype, trainable=trainable, name=name, aggregation=aggregation)
        self._variables.append(variable)
        return variable

    @property
    def variables(self) -> list[Any]:
        return list(self._variables)

    def weigh(
        self, losses: tf.Tensor, *, gradient_norms: tf.Tensor | None = None, training: bool = True
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """Return ``(λ, c)`` for the global task losses; update state only when ``training``."""
        raise NotImplementedError

    def weights(self) -> tf.Tensor:
        """The current weight of each task (T,), for the logs."""
        raise NotImplementedError

    def build_blocks(self, block_shapes: Sequence[tuple[int, ...]]) -> None:
        """Called once by ``compile`` for a weighting with :attr:`norms_over`, inside the strategy scope, with
        the shape of every variable it takes gradients of (in the order of :meth:`observe_gradients`): the
        place to create per-parameter state (ExcessMTL's Adagrad accumulators) with :meth:`add_variable`.
        The default creates nothing."""

    def observe_gradients(self, gradients: Sequence[Sequence[tf.Tensor]]) -> None:
        """Called in every training step of a weighting with :attr:`norms_over`, right before ``weigh``,
        with every task's global, unscaled gradient of those variables (``gradients[task][variable]``).
        Runs inside the compiled step, on every replica with the same values. The default does nothing."""

    def on_epoch_end(self, epoch: int, train_losses: Any, validation_logs: dict[str, float]) -> None:
        """Called by the model at the end of every training epoch (DWA, inverse-validation weighting).

        Args:
            epoch: the epoch index.
            train_losses: epoch-mean training loss per task, numpy (T,).
            validation_logs: the epoch's ``val_*`` logs (empty without validation data).
        """
