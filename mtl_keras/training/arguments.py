"""``compile``'s per-task arguments (``loss``, ``metrics``, ``loss_weights``) as dicts keyed by task name."""

from __future__ import annotations

from typing import Any

import keras

from mtl_keras._registry import suggest


def per_task(value: Any, argument: str, task_names: list[str], *, broadcast: bool = True) -> dict[str, Any]:
    """``value`` as ``{task: value}``: a dict is checked against the task names, a list of loss weights is
    taken in task order, anything else is given to every task (``broadcast``, and always for metrics)."""
    if value is None:
        return {}
    if isinstance(value, dict):
        unknown = [k for k in value if k not in task_names]
        if unknown:
            raise ValueError(
                f"Unknown task {unknown[0]!r} in `{argument}`. Expected task names {task_names}."
                + suggest(str(unknown[0]), task_names)
            )
        return dict(value)
    if isinstance(value, (list, tuple)) and argument == "loss_weights":
        if len(value) != len(task_names):
            raise ValueError(
                f"Expected `{argument}` to have {len(task_names)} entries (one per task). Received: {len(value)}"
            )
        return dict(zip(task_names, value, strict=True))
    if broadcast or argument == "metrics":
        return {name: value for name in task_names}
    raise ValueError(f"Expected `{argument}` to be a dict keyed by task names. Received: {value!r}")


def serialized_per_task(losses: dict[str, Any], metric_spec: dict[str, Any]) -> dict[str, Any]:
    """The ``loss`` and ``metrics`` entries of a compiled model's saved compile config."""
    return {
        "loss": {k: keras.saving.serialize_keras_object(v) for k, v in losses.items()},
        "metrics": {
            k: [m if isinstance(m, str) else keras.saving.serialize_keras_object(m) for m in _as_list(v)]
            for k, v in metric_spec.items()
        },
    }


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]
