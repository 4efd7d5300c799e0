"""Choose ESCM²'s counterfactual weight λ and propensity clip on the VALIDATION split of the click-conversion
generator (the test split is not read): every (λ, min_propensity) of a grid, one variant, several seeds,
scored like benchmarks/click_conversion_cvr.py (cross-entropy of the CVR head against the true CVR of every
validation impression, clicked or not), with ESMM on the same data as the reference.

The selection uses the ground-truth CVR, which only a synthetic generator has: on a real log the validation
score would have to be an estimate itself (e.g. an IPS or DR estimate of the risk on the clicked rows).

    python benchmarks/click_conversion_escm2_sweep.py --variant ips --seeds 0 1 \
        --json benchmarks/results/click_conversion_escm2_sweep/ips.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from click_conversion_cvr import _metrics


def run(seed: int, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    import keras

    from mtl_keras import builders
    from mtl_keras.data import click_conversion

    data = click_conversion(
        args.n, seed, n_validation=args.n_validation, n_test=100, selection_bias=args.selection_bias
    )
    x, y = data.train.x, data.train.y
    validation_x, truth = data.validation.x, data.truth["validation"]
    click, conversion = y["click"], np.nan_to_num(y["conversion"])
    options = {"shared_units": (64,), "tower_units": (32, 16)}
    candidates = {
        "esmm": (
            lambda s: builders.esmm(["ctr", "ctcvr"], s, **options),
            builders.esmm_labels(click, conversion),
            None,
        )
    }
    for weight, clip in itertools.product(args.weights, args.min_propensities):
        candidates[f"escm2_{args.variant}_w{weight:g}_clip{clip:g}"] = (
            lambda s, c=clip: builders.escm2(
                ["ctr", "ctcvr"], s, variant=args.variant, min_propensity=c, **options
            ),
            builders.escm2_labels(click, conversion, variant=args.variant),
            {"counterfactual": weight},
        )
    results = {}
    for name, (build, labels, weights) in candidates.items():
        keras.utils.set_random_seed(seed)
        model = build(data.input_spec())
        model.compile(keras.optimizers.Adam(args.learning_rate), loss_weights=weights)
        start = time.perf_counter()
        model.fit(x, labels, epochs=args.epochs, batch_size=args.batch_size, verbose=0)
        predicted = model.predict(validation_x, batch_size=4096, verbose=0)["cvr"][:, 0]
        results[name] = {
            **_metrics(predicted, truth["cvr"], truth["conversion"]),
            "seconds": time.perf_counter() - start,
        }
        print(seed, name, {k: round(v, 4) for k, v in results[name].items()}, flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--variant", choices=["ips", "dr"], default="ips")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--weights", type=float, nargs="+", default=[0.03, 0.1, 0.3, 1.0])
    parser.add_argument("--min-propensities", type=float, nargs="+", default=[0.05, 0.2])
    parser.add_argument("--n", type=int, default=30_000)
    parser.add_argument("--n-validation", type=int, default=20_000)
    parser.add_argument("--selection-bias", type=float, default=2.0)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--learning-rate", type=float, default=0.002)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    runs = {seed: run(seed, args) for seed in args.seeds}
    names = list(runs[args.seeds[0]])
    summary = {
        name: {m: float(np.mean([runs[s][name][m] for s in runs])) for m in runs[args.seeds[0]][name]}
        for name in names
    }
    best = min((n for n in names if n != "esmm"), key=lambda n: summary[n]["cross_entropy"])
    report = {
        "command": " ".join(
            ["python", "benchmarks/click_conversion_escm2_sweep.py", *(argv or sys.argv[1:])]
        ),
        "arguments": vars(args),
        "runs": runs,
        "mean": summary,
        "chosen": best,
    }
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=2)
    for name, values in summary.items():
        print(name, {k: round(v, 4) for k, v in values.items()})
    print("chosen (lowest mean validation cross-entropy):", best)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
