"""Classical reference models per task (mtl_keras.evaluation.reference): fitted on the labelled training rows,
scored with the task's own metrics on the test split, against scikit-learn fitted here independently."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import Ridge
from sklearn.metrics import accuracy_score, mean_squared_error, roc_auc_score
from threadpoolctl import threadpool_limits

from mtl_keras.data import MultiTaskDataset, Split
from mtl_keras.evaluation.reference import fit_reference_models
from mtl_keras.evaluation.report import format_table, to_markdown
from mtl_keras.tasks import Task

TASKS = [Task("buy", "binary"), Task("spend", "regression"), Task("tier", "multiclass", num_classes=3)]


def _split(n: int, seed: int) -> Split:
    """``buy`` depends on a text column through a lookup only the trees see exactly, ``spend`` is linear in
    ``x``, ``tier`` is a step of ``x``; ``buy`` is labelled in half the rows."""
    rng = np.random.default_rng(seed)
    city = rng.choice(["a", "b", "c", "d"], n)
    x = rng.normal(size=n)
    z = rng.normal(size=n)
    z[rng.random(n) < 0.1] = np.nan
    buy = np.isin(city, ["a", "c"]).astype("float32")
    flip = rng.random(n) < 0.05
    buy[flip] = 1 - buy[flip]
    buy[rng.random(n) < 0.5] = np.nan
    spend = (3.0 * x + 1.0 + 0.1 * rng.normal(size=n)).astype("float32")
    tier = np.digitize(x, [-0.5, 0.5]).astype("float32")
    return Split(
        x={"city": city.astype(object), "x": x.astype("float32"), "z": z.astype("float32")},
        y={"buy": buy, "spend": spend, "tier": tier},
    )


@pytest.fixture(scope="module")
def dataset() -> MultiTaskDataset:
    return MultiTaskDataset(
        name="shop",
        tasks=TASKS,
        train=_split(1500, 0),
        validation=_split(200, 1),
        test=_split(600, 2),
        features={"city": "categorical", "x": "numeric", "z": "numeric"},
    )


@pytest.fixture(scope="module")
def result(dataset: MultiTaskDataset) -> dict:
    return fit_reference_models(dataset, TASKS)


def test_metrics_are_the_tasks_own_and_match_scikit_learn(result: dict, dataset: MultiTaskDataset) -> None:
    test = dataset.test
    gbdt, linear = result["models"]["gbdt"], result["models"]["linear"]
    assert set(gbdt) == set(linear) == {"buy", "spend", "tier"}
    assert set(gbdt["buy"]) == {"auc", "accuracy", "loss"}
    assert "mse" in gbdt["spend"] and "loss" in gbdt["spend"]
    # buy is a function of the city only (5 % flipped): trees find it (accuracy ~ 0.95), AUC near its ceiling.
    labelled = ~np.isnan(test.y["buy"])
    truth = np.isin(test.x["city"][labelled], ["a", "c"]).astype(float)
    assert gbdt["buy"]["accuracy"] == pytest.approx(accuracy_score(test.y["buy"][labelled], truth), abs=0.03)
    assert gbdt["buy"]["auc"] == pytest.approx(roc_auc_score(test.y["buy"][labelled], truth), abs=0.03)
    # spend is linear in x: the ridge fit's MSE equals an independent Ridge on the standardised column's
    # information (x alone suffices; the other columns add nothing), i.e. the noise level 0.01.
    x_train = dataset.train.x["x"].reshape(-1, 1)
    ridge = Ridge(alpha=1.0).fit(x_train, dataset.train.y["spend"])
    expected = mean_squared_error(test.y["spend"], ridge.predict(test.x["x"].reshape(-1, 1)))
    assert linear["spend"]["mse"] == pytest.approx(expected, rel=0.1)
    assert linear["spend"]["mse"] < 0.02
    with threadpool_limits(limits=1):
        trees = HistGradientBoostingRegressor(random_state=0).fit(x_train, dataset.train.y["spend"])
    independent = mean_squared_error(test.y["spend"], trees.predict(test.x["x"].reshape(-1, 1)))
    assert gbdt["spend"]["mse"] == pytest.approx(independent, rel=0.5)
    # tier is a step of x: trees get it nearly always right; the loss is the mean cross-entropy.
    assert gbdt["tier"]["accuracy"] > 0.97
    assert 0 < gbdt["tier"]["loss"] < 0.2


def test_rows_and_timing_are_reported(result: dict) -> None:
    assert result["train_rows"] == result["train_rows_total"] == 1500
    assert set(result["seconds"]) == {"gbdt", "linear"}


def test_a_capped_fit_uses_a_uniform_sample(dataset: MultiTaskDataset) -> None:
    capped = fit_reference_models(dataset, TASKS[:2], ["linear"], max_rows=300, seed=3)
    assert capped["train_rows"] == 300 and capped["train_rows_total"] == 1500
    assert set(capped["models"]) == {"linear"}
    from mtl_keras.evaluation.reference import _collect

    x, _, seen = _collect(dataset, "train", 300, 3)
    assert seen == 1500
    index = {value: i for i, value in enumerate(dataset.train.x["x"])}
    rows = np.array([index[v] for v in x["x"]])
    assert np.all(np.diff(rows) > 0) and rows.max() > 1000 and rows.min() < 300  # spread over the split


def test_vectors_work_and_images_are_skipped() -> None:
    rng = np.random.default_rng(0)

    def vectors(n: int) -> Split:
        x = rng.normal(size=(n, 3)).astype("float32")
        return Split(x=x, y={"s": (x[:, 0] > 0).astype("float32")})

    data = MultiTaskDataset("v", [Task("s", "binary")], vectors(400), vectors(50), vectors(200))
    assert fit_reference_models(data, data.tasks)["models"]["linear"]["s"]["accuracy"] > 0.95

    def images(n: int) -> Split:
        return Split(x=rng.random((n, 4, 4, 1)).astype("float32"), y={"s": np.zeros(n, "float32")})

    pictures = MultiTaskDataset("i", [Task("s", "binary")], images(8), images(4), images(4))
    assert "not tabular" in fit_reference_models(pictures, pictures.tasks)["skipped"]


def test_unknown_model_is_named(dataset: MultiTaskDataset) -> None:
    with pytest.raises(ValueError, match=r"among \['gbdt', 'linear'\]. Received: \['xgboost'\]"):
        fit_reference_models(dataset, TASKS, ["xgboost"])


def test_report_shows_reference_columns(result: dict) -> None:
    report = {
        "recipe": "shop",
        "delta_m": 1.0,
        "delta_m_metrics": {"buy": ["auc"]},
        "tasks": {
            "buy": {
                "multi_task": {"auc": 0.9},
                "single_task": {"auc": 0.8},
                "improvement_percent": {"auc": 12.5},
            }
        },
        "train_seconds": 1.0,
        "params": 10,
        "reference": result,
    }
    markdown = to_markdown(report)
    assert "| task | metric | multi-task | single-task | GBDT | linear | rel. change" in markdown
    gbdt_auc = f"{result['models']['gbdt']['buy']['auc']:.4f}"
    assert gbdt_auc in markdown and gbdt_auc in format_table(report)
    assert "fitted on all 1,500 training rows" in markdown
