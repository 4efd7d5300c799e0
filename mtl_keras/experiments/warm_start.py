"""Warm start: a freshly built model takes the weights of a trained run's model (``mtl-keras train RECIPE
--init-from RUN_DIR``, the usual production retraining on new data).

The two models must be the same architecture for the same tasks: the same task names and kinds, and the
same layers (by name) with weights of the same shapes. Every weight is copied, BatchNormalization
statistics and a frozen backbone's included; the optimizer starts afresh. A mismatch is one error naming
the first task or layer that differs.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import keras

logger = logging.getLogger("mtl_keras")


def run_model_file(run_dir: str | Path) -> Path:
    """The trained model of a run directory written by ``mtl-keras train``."""
    from mtl_keras.experiments.train import MODEL_FILE

    path = Path(run_dir) / MODEL_FILE
    if not path.exists():
        raise ValueError(
            f"{path} does not exist; is {str(run_dir)!r} a directory written by `mtl-keras train`?"
        )
    return path


def _weighted_layers(model: Any) -> dict[str, Any]:
    return {layer.name: layer for layer in model.layers if layer.weights}


def _fused_hint(model: Any, source: Any) -> str:
    from mtl_keras.layers.fused_towers import FusedTowers

    def fused(m: Any) -> bool:
        return any(isinstance(layer, FusedTowers) for layer in m.layers)

    if fused(model) == fused(source):
        return ""
    return (
        " One model fuses its towers into one `towers` layer and the other has a tower per task: build this "
        f"one with `fuse_towers={not fused(model)}` (architecture option `fuse_towers`) to match."
    )


def check_same_architecture(model: Any, source: Any, what: str = "the source run") -> None:
    """Raise ``ValueError`` naming the first task or layer in which ``model`` and ``source`` differ."""
    tasks = {t.name: t.kind for t in model.tasks}
    theirs = {t.name: t.kind for t in getattr(source, "tasks", [])}
    for name, kind in tasks.items():
        if name not in theirs:
            raise ValueError(f"Task {name!r} is not a task of {what} (its tasks: {sorted(theirs)}).")
        if theirs[name] != kind:
            raise ValueError(f"Task {name!r} is {kind!r} here but {theirs[name]!r} in {what}.")
    extra = sorted(set(theirs) - set(tasks))
    if extra:
        raise ValueError(f"{what[0].upper()}{what[1:]} has task(s) {extra} that this model lacks.")
    mine, others = _weighted_layers(model), _weighted_layers(source)
    for name, layer in mine.items():
        if name not in others:
            raise ValueError(
                f"Layer {name!r} has no counterpart in {what} (a different architecture?"
                + _fused_hint(model, source)
                + ")."
            )
        want = [tuple(w.shape) for w in layer.weights]
        got = [tuple(w.shape) for w in others[name].weights]
        if want != got:
            raise ValueError(f"Layer {name!r} has weights of shapes {want} here but {got} in {what}.")
    extra = sorted(set(others) - set(mine))
    if extra:
        raise ValueError(f"Layer {extra[0]!r} of {what} has no counterpart in this model.")


def warm_start(model: Any, run_dir: str | Path) -> None:
    """Copy the weights of the model in ``run_dir`` into ``model`` (same tasks, same architecture)."""
    path = run_model_file(run_dir)
    source = keras.models.load_model(path)
    check_same_architecture(model, source, f"the run in {run_dir}")
    others = _weighted_layers(source)
    for name, layer in _weighted_layers(model).items():
        layer.set_weights(others[name].get_weights())
    logger.info("Initialised %s from %s.", model.name, path)


__all__ = ["check_same_architecture", "run_model_file", "warm_start"]
