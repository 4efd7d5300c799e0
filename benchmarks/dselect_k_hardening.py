"""Per-example DSelect-k in MMoE: how sparse the gates are at the end of training, soft (the smooth-step and
the entropy regulariser only) or hardened by `HardenDSelectK` for the last epochs, and what hardening costs
on the validation loss. Data: `synthetic_mmoe` (Ma et al.'s two regression tasks).

Per seed and condition, on the validation rows, per task gate: the fraction of rows whose selectors are all
binary (soft only), of rows with at most k non-zero weights, with exactly k (two selectors can pick the
same expert, giving fewer), the mean selector entropy, and each task's validation MSE.

    python benchmarks/dselect_k_hardening.py --seeds 0 1 2 --json benchmarks/results/dselect_k_hardening/results.json
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np


def _gate_stats(gate, x: np.ndarray, k: int) -> dict[str, float]:
    import keras

    r = keras.ops.convert_to_numpy(gate.code_weights(x)).astype(np.float64)  # (rows, k, 2^m)
    entropy = -np.sum(np.where(r > 0, r * np.log(np.where(r > 0, r, 1.0)), 0.0), axis=(1, 2))
    counts = (keras.ops.convert_to_numpy(gate(x)) > 0).sum(1)
    return {
        "binary_rows": float(np.mean(entropy == 0)),
        "mean_entropy": float(entropy.mean()),
        "at_most_k": float(np.mean(counts <= k)),
        "exactly_k": float(np.mean(counts == k)),
        "max_nonzero": int(counts.max()),
    }


def run(seed: int, harden: bool, args: argparse.Namespace) -> dict[str, object]:
    import keras

    from mtl_keras import builders
    from mtl_keras.callbacks import HardenDSelectK
    from mtl_keras.data import synthetic_mmoe

    data = synthetic_mmoe(args.p, n=args.n, seed=seed, dim=args.dim, n_validation=args.n_validation)
    keras.utils.set_random_seed(seed)
    model = builders.mmoe(
        data.tasks,
        args.dim,
        num_experts=args.num_experts,
        expert_units=(16,),
        tower_units=(8,),
        gate="dselect_k",
        k=args.k,
        gamma=args.gamma,
        entropy_weight=args.entropy_weight,
    )
    model.compile(keras.optimizers.Adam(args.learning_rate))
    callbacks = [HardenDSelectK(args.harden_at)] if harden else []
    model.fit(
        data.train.x,
        data.train.y,
        epochs=args.epochs,
        batch_size=args.batch_size,
        verbose=0,
        callbacks=callbacks,
    )
    x = np.asarray(data.validation.x, dtype="float32")
    predicted = model.predict(x, verbose=0)
    result: dict[str, object] = {
        "mse": {
            t.name: float(np.mean((predicted[t.name][:, 0] - data.validation.y[t.name]) ** 2))
            for t in data.tasks
        }
    }
    result["gates"] = {t.name: _gate_stats(model.get_layer(f"gate_{t.name}"), x, args.k) for t in data.tasks}
    print(seed, "hardened" if harden else "soft", json.dumps(result), flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--p", type=float, default=0.5)
    parser.add_argument("--n", type=int, default=4000)
    parser.add_argument("--n-validation", type=int, default=1000)
    parser.add_argument("--dim", type=int, default=20)
    parser.add_argument("--num-experts", type=int, default=8)
    parser.add_argument("--k", type=int, default=2)
    parser.add_argument("--gamma", type=float, default=1.0)
    parser.add_argument("--entropy-weight", type=float, default=1.0)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--harden-at", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--learning-rate", type=float, default=0.01)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    runs = {
        condition: {seed: run(seed, condition == "hardened", args) for seed in args.seeds}
        for condition in ("soft", "hardened")
    }
    report = {
        "command": " ".join(["python", "benchmarks/dselect_k_hardening.py", *(argv or sys.argv[1:])]),
        "arguments": vars(args),
        "runs": runs,
    }
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
