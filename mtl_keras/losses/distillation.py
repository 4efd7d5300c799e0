"""Knowledge distillation of a task's outputs: Learning without Forgetting (Li & Hoiem, ECCV 2016).

The teacher is the model as it was before training (a frozen copy); its outputs on the training batch are
the soft targets of the student's outputs for the same task:

* classification: both outputs are softened with temperature ``T`` — for a softmax head the class
  probabilities become ``softmax(log p / T)`` (LwF's ``p^{1/T} / Σ p^{1/T}``), for a sigmoid head the
  probability becomes ``σ(logit(p) / T)`` — and the term is the cross-entropy of the student's softened
  output against the teacher's, averaged over the batch (LwF's L_old; no T² factor);
* regression: the mean squared difference of the outputs, in the task's standardised units when it has a
  standardisation (``label_std``), else in its own units.

With ``temperature_squared=True`` both classification terms are multiplied by ``T²`` (Hinton, Vinyals & Dean
2015: the gradients of softened outputs shrink as ``1/T²``, so the factor keeps the term's size as ``T``
changes); a sigmoid head is the two-class softmax of logits ``(0, z)``, so it gets the factor too. This is
how :mod:`mtl_keras.experiments.train` distils the single-task networks into the multi-task model (recipe
``distill``). Every example of the batch gets the term, labelled or not: the teacher's output stands in for
a missing label.

:class:`Distillation` is a loss term (``compile(extra_losses=[...])``): ``weight × Σ_tasks KD_task``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import tensorflow as tf

from mtl_keras.tasks import Task

#: Probabilities are clipped to [EPSILON, 1 - EPSILON] before their logarithm.
EPSILON = 1e-7


def distillation_loss(
    task: Task, teacher: Any, student: Any, temperature: float = 2.0, *, temperature_squared: bool = False
) -> tf.Tensor:
    """The mean over the batch of the distillation term of ``task`` (see the module docstring)."""
    teacher = tf.cast(teacher, tf.float32)
    student = tf.cast(student, tf.float32)
    factor = temperature**2 if temperature_squared else 1.0
    if task.kind == "multiclass":
        soft = tf.nn.softmax(tf.math.log(tf.clip_by_value(teacher, EPSILON, 1.0)) / temperature, axis=-1)
        log_q = tf.nn.log_softmax(tf.math.log(tf.clip_by_value(student, EPSILON, 1.0)) / temperature, axis=-1)
        return factor * tf.reduce_mean(-tf.reduce_sum(soft * log_q, axis=-1))
    if task.kind == "binary":
        p = tf.clip_by_value(teacher, EPSILON, 1.0 - EPSILON)
        q = tf.clip_by_value(student, EPSILON, 1.0 - EPSILON)
        soft = tf.sigmoid((tf.math.log(p) - tf.math.log1p(-p)) / temperature)
        z = (tf.math.log(q) - tf.math.log1p(-q)) / temperature
        # cross-entropy of σ(z) against `soft`, written with logits for stability
        return factor * tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=soft, logits=z))
    scale = task.label_std if task.label_std is not None else 1.0
    return tf.reduce_mean(tf.square((student - teacher) / scale))


class Distillation:
    """``weight × Σ_tasks distillation_loss(task, teacher(x)[task], predictions[task])`` as a loss term.

    Args:
        teacher: the frozen model whose outputs are the targets (called with ``training=False``).
        tasks: the distilled tasks (outputs of both models).
        weight: the term's weight (LwF's λ_o, default 1).
        temperature: the softening temperature of classification outputs (LwF: 2).
        temperature_squared: multiply the classification terms by ``T²`` (Hinton et al.; LwF: no).
    """

    def __init__(
        self,
        teacher: keras.Model,
        tasks: Sequence[Task],
        *,
        weight: float = 1.0,
        temperature: float = 2.0,
        temperature_squared: bool = False,
    ) -> None:
        if not weight >= 0:
            raise ValueError(f"Expected `weight` to be a non-negative number. Received: weight={weight!r}")
        if not temperature > 0:
            raise ValueError(
                f"Expected `temperature` to be a positive number. Received: temperature={temperature!r}"
            )
        teacher.trainable = False
        self.teacher = teacher
        self.tasks = list(tasks)
        self.weight = float(weight)
        self.temperature = float(temperature)
        self.temperature_squared = bool(temperature_squared)

    def __call__(self, x: Any, labels: dict[str, Any], predictions: dict[str, Any]) -> tf.Tensor:
        targets = self.teacher(x, training=False)
        terms = [
            distillation_loss(
                task,
                tf.stop_gradient(targets[task.name]),
                predictions[task.name],
                self.temperature,
                temperature_squared=self.temperature_squared,
            )
            for task in self.tasks
        ]
        return self.weight * tf.add_n(terms)


__all__ = ["EPSILON", "Distillation", "distillation_loss"]
