"""Why ESCM² does not beat ESMM on the click-conversion generator: the same ESCM²-IPS model trained with
the CTR tower's output as the propensity (the method) and with the generator's TRUE click probability as
the propensity (an oracle no real log has), on the VALIDATION split, against ESMM; plus the CTR tower's
calibration where clicks are rare (the impressions whose inverse propensity weights matter most) and the
effective sample size of the IPS weights on the training split.

    python benchmarks/click_conversion_escm2_oracle.py --seeds 0 1 --weight 1.0 \
        --json benchmarks/results/click_conversion_escm2_sweep/oracle.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from click_conversion_cvr import _metrics


def run(seed: int, args: argparse.Namespace) -> dict[str, Any]:
    import keras
    from keras import ops

    from mtl_keras import builders
    from mtl_keras.builders._common import build_model
    from mtl_keras.builders.escm2 import escm2_tasks, graph
    from mtl_keras.data import click_conversion
    from mtl_keras.losses import CounterfactualCVR
    from mtl_keras.tasks import Task

    class OracleIPS(CounterfactualCVR):
        """IPS with the propensity read from the labels' third column (the true click probability)."""

        def call(self, y_true: Any, y_pred: Any) -> Any:
            y_true = ops.cast(y_true, "float32")
            p_cvr = ops.clip(ops.convert_to_tensor(y_pred, "float32")[:, 0], 1e-7, 1 - 1e-7)
            click, conversion = y_true[:, 0], y_true[:, 1]
            q = ops.maximum(y_true[:, 2], self.min_propensity)
            error = -(conversion * ops.log(p_cvr) + (1.0 - conversion) * ops.log(1.0 - p_cvr))
            return click * error / q

    data = click_conversion(
        args.n, seed, n_validation=args.n_validation, n_test=100, selection_bias=args.selection_bias
    )
    x, y = data.train.x, data.train.y
    click, conversion = y["click"], np.nan_to_num(y["conversion"])
    options = {"shared_units": (64,), "tower_units": (32, 16)}
    truth = data.truth["validation"]
    results: dict[str, Any] = {}
    for name in ("esmm", "escm2_ips", "escm2_ips_oracle"):
        keras.utils.set_random_seed(seed)
        weights = None if name == "esmm" else {"counterfactual": args.weight}
        if name == "esmm":
            model = builders.esmm(["ctr", "ctcvr"], data.input_spec(), **options)
            labels = builders.esmm_labels(click, conversion)
        elif name == "escm2_ips":
            model = builders.escm2(
                ["ctr", "ctcvr"], data.input_spec(), variant="ips", min_propensity=args.clip, **options
            )
            labels = builders.escm2_labels(click, conversion, variant="ips")
        else:
            # The DR graph's head has a third column; the oracle loss ignores it (the imputation tower is
            # untrained) and reads the true propensity from the labels' third column instead.
            tasks = escm2_tasks(["ctr", "ctcvr"], variant="dr")
            oracle = OracleIPS("dr", args.clip)
            tasks[-1] = Task("counterfactual", "regression", units=3, loss=oracle, metrics=())
            model = build_model(graph, tasks, data.input_spec(), name="escm2_oracle", variant="dr", **options)
            labels = builders.escm2_labels(click, conversion, variant="dr")
            labels["counterfactual"][:, 2] = data.truth["train"]["ctr"]
        model.compile(keras.optimizers.Adam(args.learning_rate), loss_weights=weights)
        model.fit(x, labels, epochs=args.epochs, batch_size=args.batch_size, verbose=0)
        out = model.predict(data.validation.x, batch_size=4096, verbose=0)
        results[name] = _metrics(out["cvr"][:, 0], truth["cvr"], truth["conversion"])
        rare = truth["ctr"] < 0.05
        results[name]["ctr_on_rare_clicks"] = {
            "fraction_of_impressions": float(rare.mean()),
            "mean_true_ctr": float(truth["ctr"][rare].mean()),
            "mean_predicted_ctr": float(out["ctr"][rare, 0].mean()),
        }
        if name != "esmm":
            # Kish's effective sample size of the IPS weights o / q over the training impressions: how many
            # equally weighted rows the weighted clicked rows are worth.
            propensity = (
                data.truth["train"]["ctr"]
                if name.endswith("oracle")
                else model.predict(x, batch_size=4096, verbose=0)["ctr"][:, 0]
            )
            w = click / np.maximum(propensity, args.clip)
            results[name]["ips_effective_sample_size"] = float(w.sum() ** 2 / np.sum(w**2))
            results[name]["clicked_rows"] = int(click.sum())
        print(seed, name, json.dumps(results[name]), flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--weight", type=float, default=1.0)
    parser.add_argument("--clip", type=float, default=0.05)
    parser.add_argument("--n", type=int, default=30_000)
    parser.add_argument("--n-validation", type=int, default=20_000)
    parser.add_argument("--selection-bias", type=float, default=2.0)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--learning-rate", type=float, default=0.002)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    runs = {seed: run(seed, args) for seed in args.seeds}
    report = {
        "command": " ".join(
            ["python", "benchmarks/click_conversion_escm2_oracle.py", *(argv or sys.argv[1:])]
        ),
        "arguments": vars(args),
        "runs": runs,
    }
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
