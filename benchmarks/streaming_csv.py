"""Streaming a CSV: rows/s of the statistics pass and of one training epoch through ``from_csv``'s tf.data
stream on a small and a 10x larger generated file, the peak memory of each run, and the same model trained
in memory (pandas → ``Split`` → :func:`mtl_keras.distribute.stream.training_stream`) on the small file.

Targets (issue 14): the peak RSS of the large streamed run is at most 1.2x that of the small one (memory
does not grow with the file), and streamed training reaches at least 0.8x the in-memory rows/s::

    nice python benchmarks/streaming_csv.py --markdown benchmarks/results/streaming_csv.md

Each run is a separate Python process (``--child``), so its peak RSS (``ru_maxrss``) is its own. The files
hold 8 numeric columns (5 % missing), 2 categorical columns (10 and 1,000 values), 2 binary labels and a
regression label (10 % missing); they are generated once into ``--data-dir`` (default: a temporary folder)
and kept there when it is given. Training rows/s is measured from the end of the first step (tracing
excluded) to the end of the epoch; the whole-epoch figure, first step included, is reported as well. The
small-file runs are repeated (``--repeats``, alternating in memory and streamed) and the median run is
reported, since on a 2-core machine one run's rows/s moves with whatever else the machine is doing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common

NUMERIC = [f"x{i}" for i in range(8)]
CATEGORICAL = {"c0": 10, "c1": 1000}
TASKS = {
    "click": "binary",
    "buy": "binary",
    "amount": {"kind": "regression", "standardize": False},
}
FEATURES = {**dict.fromkeys(NUMERIC, "numeric"), **dict.fromkeys(CATEGORICAL, "categorical")}
CHUNK = 100_000
RSS_TARGET = 1.2
SPEED_TARGET = 0.8


# --- the data ----------------------------------------------------------------------------------------------


def _chunk(rows: int, seed: int) -> Any:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, len(NUMERIC)))
    columns: dict[str, Any] = {}
    for i, name in enumerate(NUMERIC):
        values = np.round(x[:, i], 4)
        values[rng.random(rows) < 0.05] = np.nan
        columns[name] = values
    codes = {name: rng.integers(0, size, rows) for name, size in CATEGORICAL.items()}
    for name, values in codes.items():
        columns[name] = np.char.add(f"{name}_", values.astype(str))
    logit = x[:, 0] - 0.5 * x[:, 1] + (codes["c0"] < 3) - 0.5
    columns["click"] = (logit + rng.logistic(size=rows) > 0).astype(int)
    columns["buy"] = (x[:, 2] + 0.5 * x[:, 3] + rng.logistic(size=rows) > 1.0).astype(int)
    amount = np.round(x[:, 0] + x[:, 4] + 0.1 * rng.normal(size=rows), 4)
    amount[rng.random(rows) < 0.1] = np.nan
    columns["amount"] = amount
    return pd.DataFrame(columns)


def generate(path: Path, rows: int) -> None:
    """Write ``rows`` generated rows to ``path`` (chunk by chunk, so the generator's memory stays small)."""
    if path.exists():
        return
    partial = path.with_suffix(".partial")
    with partial.open("w", encoding="utf-8", newline="") as handle:
        for index, start in enumerate(range(0, rows, CHUNK)):
            frame = _chunk(min(CHUNK, rows - start), seed=index)
            frame.to_csv(handle, index=False, header=index == 0, na_rep="")
    partial.rename(path)


# --- one run (a child process) -------------------------------------------------------------------------------


def _peak_rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _fit(model: Any, stream: Any, steps: int, batch_size: int, rows: int) -> dict[str, float]:
    import keras

    marks: dict[str, float] = {}

    class Clock(keras.callbacks.Callback):
        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            if batch == 0:
                marks["first"] = time.perf_counter()

    start = time.perf_counter()
    model.fit(stream, epochs=1, steps_per_epoch=steps, verbose=0, callbacks=[Clock()])
    end = time.perf_counter()
    steady_rows = rows - min(batch_size, rows)
    return {
        "train_seconds": end - start,
        "train_rows_per_s": rows / (end - start),
        "steady_rows_per_s": steady_rows / (end - marks["first"]) if steady_rows else float("nan"),
    }


def _model(tasks: Any, inputs: Any) -> Any:
    import keras

    from mtl_keras import builders

    keras.utils.set_random_seed(0)
    model = builders.hard_sharing(tasks, inputs, trunk=(64, 32), tower_units=(16,))
    model.compile(keras.optimizers.Adam(1e-3))
    return model


def run_streamed(csv: Path, batch_size: int) -> dict[str, Any]:
    """``from_csv`` (the statistics pass), then one epoch of its training stream."""
    from mtl_keras.data import from_csv
    from mtl_keras.distribute.stream import StreamSpec

    start = time.perf_counter()
    dataset = from_csv(str(csv), TASKS, features=FEATURES)
    stats_seconds = time.perf_counter() - start
    total = sum(dataset.num_examples(s) for s in ("train", "validation", "test"))
    rows = dataset.num_examples("train")
    spec = StreamSpec.for_size(rows, batch_size, seed=0)
    model = _model(dataset.tasks, dataset.input_spec())
    result = _fit(model, dataset.training_stream(spec, epochs=1), spec.steps_per_epoch, batch_size, rows)
    return {
        "file_rows": total,
        "train_rows": rows,
        "stats_seconds": stats_seconds,
        "stats_rows_per_s": total / stats_seconds,
        **result,
    }


def run_in_memory(csv: Path, batch_size: int) -> dict[str, Any]:
    """The whole file read by pandas, the same training rows as the streamed split (the same split rule),
    held as a ``Split`` and streamed by :func:`mtl_keras.distribute.stream.training_stream`."""
    import numpy as np
    import pandas as pd

    from mtl_keras import Task
    from mtl_keras.builders import RawFeatures
    from mtl_keras.data import Split
    from mtl_keras.data.splitting import TRAIN, SplitRule, assign
    from mtl_keras.distribute.stream import StreamSpec, training_stream

    start = time.perf_counter()
    frame = pd.read_csv(csv, dtype={name: str for name in CATEGORICAL})
    codes = assign(SplitRule(validation=0.1, test=0.2, seed=0), 0, 0, len(frame), None)
    train = frame[np.asarray(codes) == TRAIN]
    x = {name: train[name].to_numpy(np.float32) for name in NUMERIC}
    x.update({name: train[name].to_numpy(dtype=object).astype(str) for name in CATEGORICAL})
    y = {name: train[name].to_numpy(np.float32) for name in TASKS}
    split = Split(x, y)
    inputs = RawFeatures(FEATURES, data=x)
    read_seconds = time.perf_counter() - start
    tasks = [Task("click", "binary"), Task("buy", "binary"), Task("amount", "regression")]
    spec = StreamSpec.for_split(split, batch_size, seed=0)
    model = _model(tasks, inputs)
    rows = len(split)
    result = _fit(model, training_stream(split, spec, epochs=1), spec.steps_per_epoch, batch_size, rows)
    return {
        "file_rows": len(frame),
        "train_rows": rows,
        "read_seconds": read_seconds,
        "read_rows_per_s": len(frame) / read_seconds,
        **result,
    }


def child(kind: str, csv: Path, batch_size: int, out: Path) -> None:
    run = {"streamed": run_streamed, "in_memory": run_in_memory}[kind]
    result = run(csv, batch_size)
    result["peak_rss_mib"] = _peak_rss_mib()
    out.write_text(json.dumps(result), encoding="utf-8")


def _spawn(kind: str, csv: Path, batch_size: int, work: Path) -> dict[str, Any]:
    out = work / f"{kind}-{csv.stem}.json"
    command = [sys.executable, __file__, "--child", kind, "--csv", str(csv), "--batch-size", str(batch_size)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    completed = subprocess.run(
        [*command, "--child-out", str(out)], env=env, capture_output=True, text=True, check=False
    )
    if completed.returncode != 0:
        raise RuntimeError(f"{kind} run on {csv} failed:\n{completed.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    return result


# --- the report ----------------------------------------------------------------------------------------------


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    return {name: version(name) for name in ("tensorflow", "keras", "pandas", "pyarrow", "numpy")}


def _median_run(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median training rows/s (after step 1); the lower middle one for an even count."""
    ordered = sorted(entries, key=lambda entry: entry["steady_rows_per_s"])
    return ordered[(len(ordered) - 1) // 2]


def _end_to_end(entry: dict[str, Any]) -> float:
    """Training rows per second from the file to the trained model: reading (or the statistics pass) + epoch."""
    prepare = entry.get("stats_seconds", entry.get("read_seconds", 0.0))
    return float(entry["train_rows"] / (prepare + entry["train_seconds"]))


def markdown(report: dict[str, Any]) -> str:
    small, large, memory = report["streamed_small"], report["streamed_large"], report["in_memory_small"]
    ratios = report["ratios"]
    verdict = {True: "holds", False: "**MISSED**"}
    lines = [
        *_common.markdown_head(
            "Streaming a CSV: statistics pass, training rows/s, peak RSS", report["command"]
        ),
        f"Machine: {report['machine']['platform']}, {report['machine']['cores']} CPU cores, Python "
        f"{report['machine']['python']}; "
        + ", ".join(f"{k} {v}" for k, v in report["versions"].items())
        + f". Batch {report['batch_size']}, 1 epoch, hard sharing (trunk 64-32, towers 16), Adam.",
        "",
        "| run | rows in file | training rows | statistics pass (or pandas read) rows/s | training rows/s "
        "(after step 1) | training rows/s (whole epoch) | file to trained model rows/s | peak RSS MiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, entry in (("streamed, small", small), ("streamed, large", large), ("in memory, small", memory)):
        first = entry.get("stats_rows_per_s", entry.get("read_rows_per_s"))
        lines.append(
            f"| {name} | {entry['file_rows']:,} | {entry['train_rows']:,} | {first:,.0f} | "
            f"{entry['steady_rows_per_s']:,.0f} | {entry['train_rows_per_s']:,.0f} | "
            f"{_end_to_end(entry):,.0f} | {entry['peak_rss_mib']:,.0f} |"
        )
    lines += [
        "",
        f"* Peak RSS large / small (streamed): **{ratios['rss_large_over_small']:.3f}** (target ≤ {RSS_TARGET}: "
        f"{verdict[ratios['rss_large_over_small'] <= RSS_TARGET]}).",
        f"* Training rows/s streamed / in memory (small file, after step 1): "
        f"**{ratios['streamed_over_in_memory']:.3f}** (target ≥ {SPEED_TARGET}: "
        f"{verdict[ratios['streamed_over_in_memory'] >= SPEED_TARGET]}); whole epoch: "
        f"{ratios['streamed_over_in_memory_whole_epoch']:.3f}.",
        f"* Streamed training rows/s large / small: {ratios['large_over_small_rows_per_s']:.3f}.",
        f"* Small-file runs: {report.get('repeats', 1)} of each, alternating; the table shows the median run. "
        "Training rows/s after step 1 of every run: in memory "
        + ", ".join(f"{v:,.0f}" for v in report.get("in_memory_small_steady_rows_per_s_runs", []))
        + "; streamed "
        + ", ".join(f"{v:,.0f}" for v in report.get("streamed_small_steady_rows_per_s_runs", []))
        + ".",
        "* File to trained model (the statistics pass or the pandas read, plus the epoch), streamed / in "
        f"memory: {ratios['streamed_over_in_memory_end_to_end']:.3f} (not the target's measure; shown because "
        "the in-memory path parses the file before training and the streamed one while training).",
        "",
    ]
    if report.get("notes"):
        lines += ["## Notes", "", *report["notes"], ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = _common.parser(__doc__)
    parser.add_argument("--rows", default="200000,2000000", help="rows of the small and the large file")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--data-dir", default=None, help="where the CSVs are generated (and kept)")
    parser.add_argument(
        "--repeats", type=int, default=3, help="runs of each small-file case (the median run is reported)"
    )
    parser.add_argument("--notes", default=None, help="a Markdown file appended to the report as notes")
    _common.report_arguments(parser)
    parser.add_argument("--child", choices=["streamed", "in_memory"], help=argparse_hidden())
    parser.add_argument("--csv", help=argparse_hidden())
    parser.add_argument("--child-out", help=argparse_hidden())
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, Path(args.csv), args.batch_size, Path(args.child_out))
        return 0
    try:
        small_rows, large_rows = (int(v) for v in args.rows.split(","))
    except ValueError:
        raise ValueError(f"--rows: expected two integers SMALL,LARGE; received {args.rows!r}") from None
    if args.repeats < 1:
        raise ValueError(f"--repeats: expected an integer >= 1; received {args.repeats}")
    if not 0 < small_rows < large_rows:
        raise ValueError(f"--rows: expected 0 < SMALL < LARGE; received {args.rows!r}")
    with tempfile.TemporaryDirectory() as scratch:
        data = Path(args.data_dir) if args.data_dir else Path(scratch)
        data.mkdir(parents=True, exist_ok=True)
        small_csv, large_csv = data / f"rows_{small_rows}.csv", data / f"rows_{large_rows}.csv"
        for path, rows in ((small_csv, small_rows), (large_csv, large_rows)):
            start = time.perf_counter()
            generate(path, rows)
            print(f"{path.name}: {rows:,} rows ({time.perf_counter() - start:.0f} s)", file=sys.stderr)
        work = Path(scratch)
        report: dict[str, Any] = {"repeats": args.repeats}
        runs: dict[str, list[dict[str, Any]]] = {"in_memory_small": [], "streamed_small": []}
        # The two small runs alternate, so that load on the machine falls on both alike.
        plan = [("in_memory_small", "in_memory", small_csv), ("streamed_small", "streamed", small_csv)]
        for repeat in range(args.repeats):
            for key, kind, csv in plan:
                start = time.perf_counter()
                runs[key].append(_spawn(kind, csv, args.batch_size, work))
                print(f"{key} #{repeat + 1}: {time.perf_counter() - start:.0f} s", file=sys.stderr)
        for key, entries in runs.items():
            report[key] = _median_run(entries)
            report[f"{key}_steady_rows_per_s_runs"] = [entry["steady_rows_per_s"] for entry in entries]
        start = time.perf_counter()
        report["streamed_large"] = _spawn("streamed", large_csv, args.batch_size, work)
        print(f"streamed_large: {time.perf_counter() - start:.0f} s", file=sys.stderr)
    small, large, memory = report["streamed_small"], report["streamed_large"], report["in_memory_small"]
    report["ratios"] = {
        "rss_large_over_small": large["peak_rss_mib"] / small["peak_rss_mib"],
        "streamed_over_in_memory": small["steady_rows_per_s"] / memory["steady_rows_per_s"],
        "streamed_over_in_memory_whole_epoch": small["train_rows_per_s"] / memory["train_rows_per_s"],
        "large_over_small_rows_per_s": large["steady_rows_per_s"] / small["steady_rows_per_s"],
        "streamed_over_in_memory_end_to_end": _end_to_end(small) / _end_to_end(memory),
    }
    ratios = report["ratios"]
    report["targets"] = {
        "rss": ratios["rss_large_over_small"] <= RSS_TARGET,
        "rows_per_s": ratios["streamed_over_in_memory"] >= SPEED_TARGET,
    }
    report["batch_size"] = args.batch_size
    report["command"] = _common.command_line(__file__, argv)
    report["machine"] = _common.machine(cores=os.cpu_count())
    report["versions"] = _versions()
    report["notes"] = Path(args.notes).read_text(encoding="utf-8").splitlines() if args.notes else []
    _common.write_report(report, markdown, args.json, args.markdown)
    return 0


def argparse_hidden() -> str:
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    raise SystemExit(main())
