"""Experiment tracking of `mtl-keras train`: TensorBoard logs in every run, MLflow when the recipe asks.

TensorBoard: ``RUN_DIR/tensorboard/multi_task`` and ``RUN_DIR/tensorboard/single_task`` (the baselines),
each with ``train/`` and ``validation/`` event files written by ``keras.callbacks.TensorBoard`` once per
epoch (no histograms, graph or profile). The scalars are the epoch logs under Keras's tags ``epoch_<key>``:
the total and per-task losses (``epoch_<task>_loss``) and metrics, the task weights of a changing weighting
(``epoch_<task>_weight``), the pairwise task-gradient cosines and the conflict fraction when the balancer
logs them (``epoch_cos_<a>_<b>``, ``epoch_conflict_fraction``), and the learning rate. Read them with
``tensorboard --logdir RUN_DIR/tensorboard``.

MLflow (``tracking: {mlflow: {uri, experiment}}``, needs ``pip install 'mtl-keras[mlflow]'``): after the
run's files are written, one MLflow run in ``experiment`` (default: the recipe name) at ``uri`` gets

* parameters: the recipe with every default, flattened to dotted keys (``training.optimizer.learning_rate``);
* metrics: every epoch log of the multi-task model at its epoch (``step``), and the test results as
  ``test.<task>.<metric>`` (``test_single_task.…`` for the baselines, ``test.delta_m``);
* artifacts: ``report.json``, ``report.md``, ``history.json``, ``recipe.json``, ``calibration.json``, ``plots/`` and the exported
  version directory (under ``export/``).
"""

from __future__ import annotations

import importlib.util
import logging
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import keras

from mtl_keras.recipes import Recipe, RecipeError

logger = logging.getLogger("mtl_keras")

TENSORBOARD_DIR = "tensorboard"
MLFLOW_INSTALL = "pip install 'mtl-keras[mlflow]'"
#: MLflow's limit on a parameter's value (longer values are cut, ending in "...").
PARAM_LENGTH = 6000
_KEY = re.compile(r"[^A-Za-z0-9_\-. /]")


def tensorboard(log_dir: Path) -> keras.callbacks.TensorBoard:
    """The epoch-level TensorBoard callback of a run (scalars only)."""
    return keras.callbacks.TensorBoard(
        log_dir=str(log_dir),
        histogram_freq=0,
        write_graph=False,
        write_images=False,
        write_steps_per_second=False,
        update_freq="epoch",
        profile_batch=0,
    )


def check_tracking(recipe: Recipe) -> None:
    """Refuse ``tracking.mlflow`` when MLflow is not installed or its URI cannot be used (before anything
    is trained: the store is opened once)."""
    spec = recipe.tracking.mlflow
    if spec is None:
        return
    if importlib.util.find_spec("mlflow") is None:
        raise RecipeError(
            "tracking.mlflow",
            f"MLflow is not installed; install it with `{MLFLOW_INSTALL}` or remove tracking.mlflow",
        )
    import mlflow

    try:
        mlflow.MlflowClient(tracking_uri=spec.uri).search_experiments(max_results=1)
    except Exception as error:  # any failure to open the store is the recipe's URI's problem
        message = str(error).replace("\n", " ")
        raise RecipeError(
            "tracking.mlflow.uri", f"cannot use the MLflow tracking URI {spec.uri!r}: {message}"
        ) from None


def flatten(value: Any, prefix: str = "") -> dict[str, str]:
    """``{"a": {"b": 1}, "c": [2, 3]}`` → ``{"a.b": "1", "c": "[2, 3]"}`` (lists and scalars as text)."""
    if isinstance(value, Mapping):
        if not value and prefix:
            return {prefix: "{}"}
        result: dict[str, str] = {}
        for key, item in value.items():
            result |= flatten(item, f"{prefix}.{key}" if prefix else str(key))
        return result
    text = str(value)
    return {prefix: text if len(text) <= PARAM_LENGTH else text[: PARAM_LENGTH - 3] + "..."}


def _key(name: str) -> str:
    return _KEY.sub("_", name)


def _test_metrics(report: Mapping[str, Any]) -> dict[str, float]:
    metrics = {}
    for task, results in report.get("tasks", {}).items():
        for part, prefix in (("multi_task", "test"), ("single_task", "test_single_task")):
            for metric, value in (results.get(part) or {}).items():
                metrics[f"{prefix}.{task}.{metric}"] = value
    if report.get("delta_m") is not None:
        metrics["test.delta_m"] = report["delta_m"]
    return {_key(k): float(v) for k, v in metrics.items() if _finite(v)}


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def log_mlflow(
    recipe: Recipe, run_dir: Path, history: Mapping[str, list[Any]], report: Mapping[str, Any]
) -> str | None:
    """Log a finished run to MLflow as the recipe's ``tracking.mlflow`` says; returns the MLflow run id
    (None when the recipe does not ask for MLflow)."""
    spec = recipe.tracking.mlflow
    if spec is None:
        return None
    check_tracking(recipe)
    import mlflow

    mlflow.set_tracking_uri(spec.uri)
    experiment = mlflow.set_experiment(spec.experiment or recipe.name)
    with mlflow.start_run(experiment_id=experiment.experiment_id, run_name=recipe.name) as active:
        params = {_key(k): v for k, v in flatten(recipe.model_dump()).items()}
        items = sorted(params.items())
        for start in range(0, len(items), 100):  # MLflow takes at most 100 parameters per call
            mlflow.log_params(dict(items[start : start + 100]))
        epochs = max((len(v) for v in history.values()), default=0)
        for epoch in range(epochs):
            values = {
                _key(k): float(v[epoch]) for k, v in history.items() if len(v) > epoch and _finite(v[epoch])
            }
            if values:
                mlflow.log_metrics(values, step=epoch)
        mlflow.log_metrics(_test_metrics(report))
        for name in ("report.json", "report.md", "history.json", "recipe.json", "calibration.json"):
            if (run_dir / name).is_file():
                mlflow.log_artifact(str(run_dir / name))
        if (run_dir / "plots").is_dir():
            mlflow.log_artifacts(str(run_dir / "plots"), artifact_path="plots")
        export = report.get("export")
        if export and Path(export).is_dir():
            mlflow.log_artifacts(str(export), artifact_path="export")
        mlflow.set_tags({"mtl_keras.run_dir": str(run_dir.resolve()), "mtl_keras.recipe": recipe.name})
        run_id: str = active.info.run_id
    logger.info("Logged the run to MLflow at %s: experiment %r, run %s.", spec.uri, experiment.name, run_id)
    return run_id


__all__ = ["TENSORBOARD_DIR", "check_tracking", "flatten", "log_mlflow", "tensorboard"]
