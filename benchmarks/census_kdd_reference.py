"""Single-task scikit-learn references on Census-Income (KDD): HistGradientBoosting and logistic regression AUCs
of every task of both task pairs, on the seeded 70,000 / 29,762 split of the shipped census-income.test.

The data are exactly what `load_census_kdd(task_pair, seed=...)` returns (instance weight, income, marital
status and, for the education pair, education removed from the inputs); each model is fitted on train +
validation (70,000 rows) and scored on test (29,762 rows), unweighted (the instance weight is not used).
HistGradientBoosting gets the text and code columns as native categorical features; logistic regression gets
them one-hot (categories seen in training) and the numeric columns standardised.

    python benchmarks/census_kdd_reference.py --out benchmarks/results/census_kdd_reference
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common

logger = logging.getLogger(__name__)

#: Reference AUCs measured when the data set was added (data/census_income_kdd/SOURCE.md): income pair only.
SOURCE_REFERENCE = {
    "hist_gradient_boosting": {"income": 0.950, "never_married": 0.995},
    "logistic_regression": {"income": 0.942, "never_married": 0.994},
}


def _frame(x: dict[str, np.ndarray], features: dict[str, str]) -> Any:
    import pandas as pd

    return pd.DataFrame({name: x[name] for name in features})


def _models(features: dict[str, str], seed: int) -> dict[str, Any]:
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

    numeric = [name for name, kind in features.items() if kind == "numeric"]
    categorical = [name for name, kind in features.items() if kind != "numeric"]
    ordinal = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan)
    hgb = make_pipeline(
        ColumnTransformer([("cat", ordinal, categorical), ("num", "passthrough", numeric)]),
        HistGradientBoostingClassifier(
            categorical_features=list(range(len(categorical))), random_state=seed, max_iter=300
        ),
    )
    lr = make_pipeline(
        ColumnTransformer(
            [("cat", OneHotEncoder(handle_unknown="ignore"), categorical), ("num", StandardScaler(), numeric)]
        ),
        LogisticRegression(max_iter=2000, C=1.0),
    )
    return {"hist_gradient_boosting": hgb, "logistic_regression": lr}


def measure(task_pair: str, seed: int, max_rows: int | None) -> dict[str, Any]:
    from sklearn.metrics import roc_auc_score

    from mtl_keras.data import load_census_kdd

    data = load_census_kdd(task_pair, seed=seed, max_rows=max_rows)  # type: ignore[arg-type]
    features = dict(data.features or {})
    train_x = {k: np.concatenate([data.train.x[k], data.validation.x[k]]) for k in features}  # type: ignore[index]
    train_y = {t: np.concatenate([data.train.y[t], data.validation.y[t]]) for t in data.task_names}
    x_fit, x_test = _frame(train_x, features), _frame(data.test.x, features)  # type: ignore[arg-type]
    result: dict[str, Any] = {
        "rows": {"train": len(x_fit), "test": len(x_test)},
        "num_features": len(features),
        "positive_rate_test": {t: float(data.test.y[t].mean()) for t in data.task_names},
        "auc": {},
        "seconds": {},
    }
    for name in ("hist_gradient_boosting", "logistic_regression"):
        result["auc"][name], result["seconds"][name] = {}, {}
        for task in data.task_names:
            model = _models(features, seed)[name]
            start = time.perf_counter()
            model.fit(x_fit, train_y[task].astype(int))
            score = model.predict_proba(x_test)[:, 1]
            result["seconds"][name][task] = time.perf_counter() - start
            result["auc"][name][task] = float(roc_auc_score(data.test.y[task], score))
            logger.info("%s %s %s: AUC %.4f", task_pair, name, task, result["auc"][name][task])
    return result


def markdown(result: dict[str, Any]) -> str:
    lines = _common.markdown_head(
        "# Census-Income (KDD): single-task scikit-learn references", result["command"]
    )
    lines += [
        f"Seeded split (seed {result['settings']['seed']}) of the shipped census-income.test: train + "
        "validation rows fitted, test rows scored; AUC unweighted.",
        "",
        "| task pair | task | test positives | HistGradientBoosting AUC | logistic regression AUC | "
        "reference (SOURCE.md) HGB / LR |",
        "|---|---|---|---|---|---|",
    ]
    for pair, measured in result["pairs"].items():
        for task, rate in measured["positive_rate_test"].items():
            reference = "—"
            if pair == "income":
                reference = " / ".join(f"{SOURCE_REFERENCE[m][task]:.3f}" for m in SOURCE_REFERENCE)
            lines.append(
                f"| {pair} | {task} | {100 * rate:.2f} % | {measured['auc']['hist_gradient_boosting'][task]:.4f} | "
                f"{measured['auc']['logistic_regression'][task]:.4f} | {reference} |"
            )
    sizes = {pair: measured["rows"] for pair, measured in result["pairs"].items()}
    lines += ["", f"Rows: {sizes}. Machine: {result['machine']}.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = _common.parser(__doc__)
    parser.add_argument("--out", default="benchmarks/results/census_kdd_reference", help="results folder")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split (and of HistGradientBoosting)")
    parser.add_argument("--max-rows", type=int, default=None, help="read only this many rows (a quick try)")
    parser.add_argument(
        "--pairs", nargs="+", default=["income", "education"], choices=["income", "education"]
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    import sklearn

    result: dict[str, Any] = {
        "command": _common.command_line(__file__, argv),
        "settings": {"seed": args.seed, "max_rows": args.max_rows},
        "machine": _common.machine(sklearn=sklearn.__version__),
        "reference": SOURCE_REFERENCE,
        "pairs": {pair: measure(pair, args.seed, args.max_rows) for pair in args.pairs},
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "results.md").write_text(markdown(result))
    sys.stdout.write(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
