"""CVR over the whole impression space on the click-conversion generator: naive CVR (clicked rows only),
ESMM, ESCM² IPS and DR, and AITM, scored against the true CVR of every test impression, over several seeds.

AITM predicts the steps p(click) and p(click and conversion); its CVR is their ratio, clipped to [0, 1].

Metrics per model (test split, every impression, clicked or not): cross-entropy of the predicted CVR
against the true CVR (lower is better), AUC against the drawn conversion outcomes, calibration error
|mean predicted − mean true CVR| and a 10-bin expected calibration error against the true CVR.

ESCM²'s λ and propensity clip default to the values chosen on the validation split by
benchmarks/click_conversion_escm2_sweep.py; ``--untuned-weight`` adds both variants at λ = 1, clip 0.05.

    python benchmarks/click_conversion_cvr.py --seeds 0 1 2 --json benchmarks/results/click_conversion_cvr.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np


def _metrics(predicted: np.ndarray, true_cvr: np.ndarray, outcome: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import roc_auc_score

    p = np.clip(predicted.astype(np.float64), 1e-7, 1 - 1e-7)
    cross_entropy = float(np.mean(-(true_cvr * np.log(p) + (1 - true_cvr) * np.log(1 - p))))
    bins = np.minimum((p * 10).astype(int), 9)
    ece = sum(
        abs(p[bins == b].mean() - true_cvr[bins == b].mean()) * np.mean(bins == b) for b in np.unique(bins)
    )
    return {
        "cross_entropy": cross_entropy,
        "auc": float(roc_auc_score(outcome, p)),
        "mean_bias": float(p.mean() - true_cvr.mean()),
        "ece": float(ece),
    }


def run(seed: int, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    import keras

    from mtl_keras import Task, builders
    from mtl_keras.data import click_conversion

    # The validation split is the one benchmarks/click_conversion_escm2_sweep.py chose λ and the clip on
    # (the same size, so the test split is the same draw that follows it); it is not read here.
    data = click_conversion(
        args.n, seed, n_validation=args.n_validation, n_test=args.n_test, selection_bias=args.selection_bias
    )
    x, y = data.train.x, data.train.y
    test_x, truth = data.test.x, data.truth["test"]
    click, conversion = y["click"], np.nan_to_num(y["conversion"])
    options = {"shared_units": (64,), "tower_units": (32, 16)}
    candidates = {
        "naive": (
            lambda s: builders.hard_sharing([Task("cvr", "binary")], s, trunk=(64,), tower_units=(32, 16)),
            {"cvr": y["conversion"]},
            None,
        ),
        "esmm": (
            lambda s: builders.esmm(["ctr", "ctcvr"], s, **options),
            builders.esmm_labels(click, conversion),
            None,
        ),
    }
    escm2_settings = {
        "ips": (args.ips_weight, args.ips_min_propensity),
        "dr": (args.dr_weight, args.dr_min_propensity),
    }
    for variant, (weight, clip) in escm2_settings.items():
        candidates[f"escm2_{variant}"] = (
            lambda s, v=variant, c=clip: builders.escm2(
                ["ctr", "ctcvr"], s, variant=v, min_propensity=c, **options
            ),
            builders.escm2_labels(click, conversion, variant=variant),
            {"counterfactual": weight},
        )
    for variant in ("ips", "dr") if args.untuned_weight else ():
        candidates[f"escm2_{variant}_untuned"] = (
            lambda s, v=variant: builders.escm2(["ctr", "ctcvr"], s, variant=v, **options),
            builders.escm2_labels(click, conversion, variant=variant),
            {"counterfactual": args.untuned_weight},
        )
    candidates["aitm"] = (
        lambda s: builders.aitm(
            ["ctr", "ctcvr"],
            s,
            encoder_units=(64,),
            tower_units=(32, 16),
            calibrator_weight=args.calibrator_weight,
        ),
        {"ctr": click, "ctcvr": click * conversion},
        None,
    )
    results = {}
    for name, (build, labels, weights) in candidates.items():
        keras.utils.set_random_seed(seed)
        model = build(data.input_spec())
        model.compile(keras.optimizers.Adam(args.learning_rate), loss_weights=weights)
        start = time.perf_counter()
        model.fit(x, labels, epochs=args.epochs, batch_size=args.batch_size, verbose=0)
        outputs = model.predict(test_x, batch_size=4096, verbose=0)
        if "cvr" in outputs:
            predicted = outputs["cvr"][:, 0]
        else:  # AITM: p(click and conversion) / p(click)
            predicted = np.clip(outputs["ctcvr"][:, 0] / np.maximum(outputs["ctr"][:, 0], 1e-7), 0.0, 1.0)
        results[name] = {
            **_metrics(predicted, truth["cvr"], truth["conversion"]),
            "seconds": time.perf_counter() - start,
        }
        print(seed, name, results[name], flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--n-test", type=int, default=50_000)
    parser.add_argument("--selection-bias", type=float, default=2.0)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--learning-rate", type=float, default=0.002)
    parser.add_argument("--n-validation", type=int, default=20_000)
    # λ and the propensity clip chosen on the validation split (benchmarks/results/click_conversion_escm2_sweep).
    parser.add_argument("--ips-weight", type=float, default=0.03)
    parser.add_argument("--ips-min-propensity", type=float, default=0.05)
    parser.add_argument("--dr-weight", type=float, default=0.03)
    parser.add_argument("--dr-min-propensity", type=float, default=0.2)
    parser.add_argument(
        "--untuned-weight",
        type=float,
        default=1.0,
        help="also run both variants with this λ and the default clip 0.05 (0: not)",
    )
    parser.add_argument("--calibrator-weight", type=float, default=0.6)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    runs = {seed: run(seed, args) for seed in args.seeds}
    names = list(next(iter(runs.values())))
    summary = {
        name: {m: float(np.mean([runs[s][name][m] for s in runs])) for m in runs[args.seeds[0]][name]}
        for name in names
    }
    report = {
        "command": " ".join(["python", "benchmarks/click_conversion_cvr.py", *(argv or sys.argv[1:])]),
        "arguments": vars(args),
        "runs": runs,
        "mean": summary,
    }
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=2)
    for name, values in summary.items():
        print(name, {k: round(v, 4) for k, v in values.items()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
