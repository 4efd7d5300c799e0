"""Run a recipe: train the multi-task model and its single-task baselines, evaluate, report, plot, export.

Everything that can be checked is checked before the output directory is touched
(:func:`mtl_keras.experiments.preparation.prepare`: the recipe, the data set and its task names, building
and compiling both models). Files are written atomically. Training goes through
:func:`mtl_keras.experiments.fitting.fit`, with checkpoints in the run directory; ``--resume`` continues
from them exactly. Every classification task's expected calibration error (test split) joins its metrics, with a reliability
plot, and every binary task's GAUC when the data has a user column (:mod:`mtl_keras.experiments.ranking`); the recipe's ``calibration`` is fitted on the validation split, written to ``calibration.json`` and
applied inside the export (:mod:`mtl_keras.experiments.calibrating`). TensorBoard logs go to ``tensorboard/`` in the run directory and the recipe's
``tracking.mlflow`` logs the finished run to MLflow (:mod:`mtl_keras.experiments.tracking`). Under several workers every worker runs the same code; only the chief writes into the
output directory. With ``baselines.gbdt`` / ``baselines.linear`` the classical reference models of
:mod:`mtl_keras.evaluation.reference` are fitted per task on the same splits and their test metrics join the
report (``reference``) as columns next to the single-task networks. With the recipe's ``distill`` the
single-task networks are trained first and are the teachers of the multi-task model
(:func:`distillation_term`, docs/methods.md "Distillation from single-task teachers"); the report records
it under ``distill`` and Δm is still measured against those networks.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import keras

from mtl_keras import __version__
from mtl_keras.distribute.strategy import agree, worker_role
from mtl_keras.evaluation.reference import fit_reference_models
from mtl_keras.evaluation.report import _clean, atomic_write_text, build_report, write_report
from mtl_keras.experiments.calibrating import CALIBRATION_FILE, run_calibration, test_ece
from mtl_keras.experiments.fitting import evaluate, fingerprint, fit
from mtl_keras.experiments.preparation import Prepared
from mtl_keras.experiments.ranking import test_gauc
from mtl_keras.experiments.tracking import TENSORBOARD_DIR, log_mlflow, tensorboard
from mtl_keras.recipes import Recipe
from mtl_keras.tasks import Task

logger = logging.getLogger("mtl_keras")

MODEL_FILE = "model.keras"


def _verbosity() -> int:
    return 1 if sys.stderr.isatty() else 2


def _save_model(model: keras.Model, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp.keras")
    model.save(tmp)
    os.replace(tmp, path)


def train_baselines(
    prepared: Prepared,
    output_dir: Path,
    *,
    resume: bool,
    write_dir: Path | None = None,
    load_reused: bool = False,
) -> dict[str, Any]:
    """Train (or reuse, when the fingerprint matches) the single-task baselines; returns their results.

    ``output_dir`` is read (cached results, checkpoints); ``write_dir`` (default ``output_dir``) written.
    ``load_reused``: when the cached results are reused, load the cached model's weights into
    ``prepared.baseline`` too (it is a teacher, see :func:`distillation_term`).
    """
    baseline = prepared.baseline
    assert baseline is not None, "baselines.enabled is false"
    directory = output_dir / "single_task"
    writes = (write_dir or output_dir) / "single_task"
    digest = fingerprint(prepared.recipe)
    results_file = directory / "results.json"
    cached = json.loads(results_file.read_text()) if results_file.exists() else {}
    reuse = agree(prepared.strategy, int(cached.get("fingerprint") == digest), "reusing the baselines")
    if reuse:
        logger.info("Reusing single-task baselines from %s (recipe and data unchanged).", directory)
        if load_reused:  # the weights only: a teacher needs no optimizer state
            saved = keras.models.load_model(directory / MODEL_FILE, compile=False)
            baseline.set_weights(saved.get_weights())
        return dict(cached)
    writes.mkdir(parents=True, exist_ok=True)
    epochs = prepared.recipe.baseline_epochs
    logger.info("Training single-task baselines (%d epochs).", epochs)
    logs = (write_dir or output_dir) / TENSORBOARD_DIR / "single_task"
    fitted = _fit(prepared, baseline, epochs, directory / "backup", resume=resume, log_dir=logs)
    results = {
        "fingerprint": digest,
        "test": evaluate(baseline, prepared.dataset, prepared.strategy)
        | test_ece(baseline, prepared.dataset, prepared.tasks, prepared.recipe.calibration.bins)
        | test_gauc(baseline, prepared.dataset, prepared.tasks, prepared.recipe.evaluation.user_column),
        "history": fitted.history.history,
        "train_seconds": fitted.seconds,
        "params": int(baseline.count_params()),
    }
    _save_model(baseline, writes / MODEL_FILE)
    atomic_write_text(writes / "results.json", json.dumps(results, indent=2))
    if writes == directory:
        shutil.rmtree(directory / "backup", ignore_errors=True)
    return results


def _fit(
    prepared: Prepared, model: Any, epochs: int, backup_dir: Path, *, resume: bool, log_dir: Path
) -> Any:
    return fit(
        model,
        prepared.recipe,
        prepared.dataset,
        prepared.strategy,
        epochs=epochs,
        callbacks=[tensorboard(log_dir)],
        backup_dir=backup_dir,
        resume=resume,
        verbose=_verbosity(),
    )


def distillation_term(prepared: Prepared) -> Any:
    """The recipe's ``distill`` as a loss term of the multi-task model: every task's distillation term
    (:func:`~mtl_keras.losses.distillation_loss` with the ``T²`` factor) against the trained single-task
    networks' outputs, weighted by ``distill.weight``; call after :func:`train_baselines`."""
    from mtl_keras.losses import Distillation

    spec = prepared.recipe.distill
    assert spec is not None and prepared.baseline is not None, "distill needs the single-task networks"
    return Distillation(
        prepared.baseline,
        prepared.tasks,
        weight=spec.weight,
        temperature=spec.temperature,
        temperature_squared=True,
    )


def _plots(history: dict[str, list[float]], tasks: list[Task], plots_dir: Path) -> list[str]:
    from mtl_keras.evaluation import plots

    plots_dir.mkdir(parents=True, exist_ok=True)
    written = [
        plots.plot_validation_curves(history, tasks, plots_dir / "validation_curves.png"),
        plots.plot_task_weights(history, tasks, plots_dir / "task_weights.png"),
        plots.plot_conflicts(history, tasks, plots_dir / "gradient_cosine.png"),
        plots.plot_conflict_trend(history, tasks, plots_dir / "gradient_cosine_trend.png"),
    ]
    return [str(p) for p in written if p is not None]


def _gates(prepared: Prepared, path: Path) -> dict[str, Any] | None:
    """Mean gate weight per expert on the validation split, collapse warnings and their heat-map (models
    with gated mixtures only; see :mod:`mtl_keras.analysis.gates`)."""
    from mtl_keras.analysis.gates import collapse_warnings, gate_usage, mixtures
    from mtl_keras.evaluation.plots import plot_gates

    if not mixtures(prepared.model):
        return None
    usage = gate_usage(prepared.model, prepared.dataset.batches("validation", 1024))
    warnings = collapse_warnings(usage)
    for warning in warnings:
        logger.warning("Gates: %s.", warning)
    plot = plot_gates(usage, path)
    return {**usage, "warnings": warnings, "plot": None if plot is None else str(plot)}


def export_dir(recipe: Recipe) -> str:
    """Where a recipe's model is exported: ``export.base_dir``, by default ``saved_models/<recipe name>``."""
    return recipe.export.base_dir or os.path.join("saved_models", recipe.name)


def export(
    model: Any,
    dataset: Any,
    base_dir: str,
    *,
    calibration: dict[str, Any] | None = None,
    fusion: Any = None,
) -> str:
    """A new TF Serving version of ``model`` under ``base_dir``, with 3 test examples as its request and the
    training feature statistics (raw-feature data sets) in its ``assets.extra``.

    ``calibration`` (``{task: fitted parameters}``, see :mod:`mtl_keras.experiments.calibrating`) puts the
    calibration layers inside the signatures; ``fusion`` (the recipe's ``export.fusion``) adds its signature.
    """
    from mtl_keras.experiments.calibrating import calibrated_model
    from mtl_keras.export import export_for_serving
    from mtl_keras.export.serving import Fusion
    from mtl_keras.monitoring import feature_statistics

    return str(
        export_for_serving(
            calibrated_model(model, calibration or {}),
            base_dir,
            request_examples=dataset.examples("test", 3),
            feature_statistics=feature_statistics(dataset),
            fusion=None if fusion is None else Fusion(fusion.name, fusion.formula),
        )
    )


def run(prepared: Prepared, output_dir: str | os.PathLike[str], *, resume: bool = False) -> dict[str, Any]:
    """Train, evaluate, report, plot and export one prepared recipe into ``output_dir``.

    Under several workers every worker calls this with the same arguments; the chief writes into
    ``output_dir``, the others into a temporary directory that is deleted at the end.
    """
    role = worker_role(prepared.strategy)
    out = Path(output_dir)
    if role.chief:
        return _run(prepared, out, out, resume=resume)
    scratch = Path(tempfile.mkdtemp(prefix="mtl-keras-worker-"))
    try:
        return _run(prepared, out, scratch, resume=resume)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _run(prepared: Prepared, out: Path, writes: Path, *, resume: bool) -> dict[str, Any]:
    recipe = prepared.recipe
    writes.mkdir(parents=True, exist_ok=True)
    atomic_write_text(writes / "recipe.json", json.dumps(recipe.model_dump(), indent=2, default=str))
    describe = getattr(prepared.dataset, "describe", None)
    if describe is not None:  # a user's table: its feature kinds, statistics and label encodings
        atomic_write_text(writes / "data.json", json.dumps(describe(), indent=2, default=str))
    baselines: dict[str, Any] | None = None
    if recipe.distill is not None:  # the teachers first
        baselines = train_baselines(prepared, out, resume=resume, write_dir=writes, load_reused=True)
        prepared.model.add_loss_term(distillation_term(prepared))
        logger.info(
            "Distilling the single-task networks (weight %g, temperature %g).",
            recipe.distill.weight,
            recipe.distill.temperature,
        )
    logger.info("Training %s (%s) on %s.", recipe.name, recipe.architecture.name, prepared.dataset.name)
    logs = writes / TENSORBOARD_DIR / "multi_task"
    fitted = _fit(
        prepared, prepared.model, recipe.training.epochs, out / "backup", resume=resume, log_dir=logs
    )
    history = fitted.history.history
    _save_model(prepared.model, writes / MODEL_FILE)
    multi = evaluate(prepared.model, prepared.dataset, prepared.strategy)
    calibration = run_calibration(prepared.model, prepared.dataset, prepared.tasks, recipe.calibration)
    for task, values in calibration["tasks"].items():  # test-split ECE next to the task's metrics
        multi[f"{task}_ece"] = values["test_ece"]
        if "test_ece_calibrated" in values:
            multi[f"{task}_ece_calibrated"] = values["test_ece_calibrated"]
    # GAUC per binary task when the data has a user column (evaluation.user_column, default user_id).
    multi.update(test_gauc(prepared.model, prepared.dataset, prepared.tasks, recipe.evaluation.user_column))
    atomic_write_text(writes / CALIBRATION_FILE, json.dumps(_clean(calibration["fitted"]), indent=2))
    extra: dict[str, Any] = {
        "architecture": recipe.architecture.name,
        "balancer": prepared.model.balancer.describe(),
        "epochs_run": len(history.get("loss", [])),
        "dataset": prepared.dataset.name,
        "mtl_keras_version": __version__,
    }
    common = {
        "recipe": recipe.name,
        "train_seconds": fitted.seconds,
        "params": int(prepared.model.count_params()),
    }
    if recipe.distill is not None:
        extra["distill"] = recipe.distill.model_dump() | {"temperature_squared": True}
    if prepared.baseline is not None:
        if baselines is None:
            baselines = train_baselines(prepared, out, resume=resume, write_dir=writes)
        extra = {
            "single_task_train_seconds": baselines["train_seconds"],
            "single_task_params": baselines["params"],
        } | extra
        report = build_report(multi, baselines["test"], prepared.tasks, **common, **extra)
    else:
        report = multi_task_report(multi, prepared.tasks, **common, **extra)
    if recipe.baselines.references:
        report["reference"] = fit_reference_models(
            prepared.dataset,
            prepared.tasks,
            recipe.baselines.references,
            max_rows=recipe.baselines.max_rows,
            seed=recipe.seed,
        )
    # NaN (a task without labels in an epoch) is null: history.json stays valid JSON.
    atomic_write_text(writes / "history.json", json.dumps(_clean(history), indent=2, allow_nan=False))
    report["calibration"] = {k: v for k, v in calibration.items() if k != "reliability"}
    report["plots"] = _plots(history, prepared.tasks, writes / "plots")
    gates = _gates(prepared, writes / "plots" / "gates.png")
    if gates is not None:
        report["gates"] = gates
        if gates["plot"] is not None:
            report["plots"].append(gates["plot"])
    from mtl_keras.evaluation.plots import plot_reliability

    reliability = plot_reliability(calibration["reliability"], writes / "plots" / "reliability.png")
    if reliability is not None:
        report["plots"].append(str(reliability))
    if recipe.export.enabled:
        base_dir = export_dir(recipe) if writes == out else str(writes / "saved_models")
        report["export"] = export(
            prepared.model,
            prepared.dataset,
            base_dir,
            calibration=calibration["fitted"],
            fusion=recipe.export.fusion,
        )
    write_report(report, writes)
    if writes == out:
        shutil.rmtree(out / "backup", ignore_errors=True)
        log_mlflow(recipe, out, history, report)  # the chief only
    return report


def multi_task_report(multi: dict[str, float], tasks: list[Task], **entries: Any) -> dict[str, Any]:
    """The report of a run without baselines (``baselines.enabled: false``): test metrics, no Δm."""
    from mtl_keras.evaluation.report import split_results

    by_task = split_results(multi, [t.name for t in tasks])
    return {
        "recipe": entries.pop("recipe"),
        "delta_m": None,
        "tasks": {name: {"multi_task": values, "single_task": {}} for name, values in by_task.items()},
        "train_seconds": float(entries.pop("train_seconds")),
        "params": int(entries.pop("params")),
        **entries,
    }


__all__ = [
    "MODEL_FILE",
    "distillation_term",
    "export",
    "export_dir",
    "multi_task_report",
    "run",
    "train_baselines",
]
