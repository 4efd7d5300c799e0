import pytest
from helpers import check_builder, toy_data, toy_tasks

from mtl_keras import builders


@pytest.mark.parametrize(
    ("architecture", "options"),
    [
        ("hard_sharing", {"trunk": (16, 8)}),
        ("mmoe", {"num_experts": 2, "expert_units": (8,)}),
        ("cgc", {"num_shared_experts": 1, "num_task_experts": 1, "expert_units": (8,)}),
    ],
)
def test_one_column_per_task_with_the_same_budget(architecture, options, tmp_path):
    x, y = toy_data()
    baseline = builders.single_task(toy_tasks(), 12, architecture=architecture, **options)
    assert baseline.shared_layer_names == []
    # Every column equals the architecture built for that task alone.
    alone = sum(builders.get_builder(architecture)([t], 12, **options).count_params() for t in toy_tasks())
    assert baseline.count_params() == alone
    check_builder(baseline, x, y, tmp_path)


def test_aggregators_are_refused_without_shared_variables():
    baseline = builders.single_task(toy_tasks(), 12)
    with pytest.raises(ValueError, match="declares none"):
        baseline.compile("adam", balancer="pcgrad")


def test_unknown_architecture_is_named():
    with pytest.raises(ValueError, match="Did you mean 'mmoe'"):
        builders.single_task(toy_tasks(), 12, architecture="mmo")
