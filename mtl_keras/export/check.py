"""Check an export directory in a clean process: ``python -m mtl_keras.export.check DIR``.

The checking itself runs in a child Python process executing ``_standalone_check.py`` as a script, so it
imports TensorFlow but neither ``mtl_keras`` nor Keras: if the SavedModel loads and serves there, it needs
nothing of this project. This module is the parent side: it starts the child, reads its JSON report and,
when given the live Keras model, compares the model's outputs on ``request.json`` with ``response.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

CHECKER = Path(__file__).with_name("_standalone_check.py")
TOLERANCE = 1e-6


def check_export(
    directory: str | os.PathLike[str],
    model: Any = None,
    *,
    version: int | None = None,
    python: str | None = None,
    timeout: float = 600.0,
    latency: bool = False,
) -> dict[str, Any]:
    """Check the export in ``directory`` (a model base path); returns the report, ``report["ok"]`` says if
    everything passed.

    Args:
        directory: the base directory given to `export_for_serving`.
        model: the live Keras model; when given, its outputs on ``request.json`` must match
            ``response.json`` (max |Δ| ≤ 1e-6), reported under ``"live_model"``.
        version: the version to check; default the newest.
        python: the interpreter for the child process; default this one.
        timeout: seconds before the child is stopped.
        latency: also time every signature in this process at batch 1 and 256
            (:func:`mtl_keras.export.latency.measure_latency`), reported under ``"latency"`` and written to
            ``directory/latency.json`` (skipped when a signature fails on the request).

    Raises:
        RuntimeError: the child process failed without writing a report.
    """
    directory = Path(directory)
    with tempfile.TemporaryDirectory(prefix="mtl-keras-check-") as scratch:
        report_path = Path(scratch) / "report.json"
        command = [python or sys.executable, str(CHECKER), str(directory), "--json", str(report_path)]
        if version is not None:
            command += ["--version", str(int(version))]
        env = dict(os.environ)
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        completed = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, env=env, check=False
        )
        if not report_path.is_file():
            raise RuntimeError(
                f"The export checker failed (exit status {completed.returncode}) without a report:\n"
                + completed.stderr[-4000:]
            )
        report: dict[str, Any] = json.loads(report_path.read_text(encoding="utf-8"))
    report["command"] = command
    if model is not None:
        report["live_model"] = compare_with_model(directory, model)
        if not report["live_model"]["ok"]:
            report["errors"].append(
                f"The live model differs from response.json by {report['live_model']['max_abs_diff']:.3g}."
            )
            report["ok"] = False
    runs = report.get("runs", {})
    if latency and runs and all(run["ok"] for run in runs.values()):  # every signature runs
        from mtl_keras.export.latency import measure_latency, write_latency

        report["latency"] = measure_latency(directory, report["version"])
        report["latency_file"] = str(write_latency(directory, report["latency"]))
    return report


def compare_with_model(directory: str | os.PathLike[str], model: Any) -> dict[str, Any]:
    """max |Δ| between ``model`` on ``request.json`` and the stored ``response.json``."""
    import numpy as np

    from mtl_keras.export import _standalone_check as rest
    from mtl_keras.export.serving import instances_to_model_inputs

    directory = Path(directory)
    request = json.loads((directory / rest.REQUEST_FILE).read_text(encoding="utf-8"))
    response = json.loads((directory / rest.RESPONSE_FILE).read_text(encoding="utf-8"))
    outputs = model(instances_to_model_inputs(model, request["instances"]), training=False)
    live = {name: np.asarray(value) for name, value in outputs.items()}
    stored = rest.predictions_to_arrays(response["predictions"], sorted(live))
    diff = rest.max_abs_diff(live, stored)
    return {"max_abs_diff": diff, "ok": diff <= TOLERANCE}


def format_report(report: dict[str, Any]) -> str:
    """A short human-readable summary: the signature listing, then one line per check."""
    lines = [report.get("listing", ""), ""]
    lines.append(
        f"version {report.get('version')} of {report.get('base_dir')} (versions {report.get('versions')})"
    )
    config = report.get("models_config", {})
    lines.append("models.config: " + ("ok" if config.get("ok") else f"FAILED: {config.get('error')}"))
    if "response" in report:
        r = report["response"]
        lines.append(f"{r['signature_name']} vs response.json: max |Δ| = {r['max_abs_diff']:.3g}")
    for name, result in sorted(report.get("per_task", {}).items()):
        lines.append(
            f"{name} vs serving_default: "
            + (f"max |Δ| = {result['max_abs_diff']:.3g}" if "max_abs_diff" in result else "FAILED")
        )
    if "fusion" in report:
        f = report["fusion"]
        lines.append(
            f"{f.get('signature')} vs {f.get('formula')!r} on serving_default: "
            + (f"max |Δ| = {f['max_abs_diff']:.3g}" if "max_abs_diff" in f else "FAILED")
        )
    env = report.get("environment", {})
    lines.append(f"checker imported mtl_keras: {env.get('mtl_keras_imported')}")
    if "latency" in report:
        from mtl_keras.export.latency import format_latency

        lines += [format_latency(report["latency"]), f"latency written to {report['latency_file']}"]
    lines += [f"ERROR: {e}" for e in report.get("errors", [])]
    lines.append("OK" if report.get("ok") else "FAILED")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mtl_keras.export.check", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("directory", help="the model's base directory (holding the version directories)")
    parser.add_argument("--version", type=int, default=None, help="version to check (default: the newest)")
    parser.add_argument("--json", action="store_true", help="print the full JSON report instead of a summary")
    args = parser.parse_args(argv)
    report = check_export(args.directory, version=args.version)
    text = json.dumps(report, indent=2, sort_keys=True) if args.json else format_report(report)
    sys.stdout.write(text + "\n")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
