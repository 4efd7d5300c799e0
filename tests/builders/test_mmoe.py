import pytest
from helpers import check_builder, check_sharing, toy_data, toy_tasks

from mtl_keras import Task, builders


def _params_without_gates(model):
    return sum(int(v.numpy().size) for v in model.trainable_variables if "gate" not in v.path)


def test_parameter_budget_matches_the_paper():
    """MMoE paper: 8 experts x 16 units vs a 113-unit shared bottom, same towers, gates left out."""
    tasks = [Task("y1"), Task("y2")]
    mmoe = builders.mmoe(tasks, 100, num_experts=8, expert_units=(16,), tower_units=(8,))
    shared_bottom = builders.hard_sharing(tasks, 100, trunk=(113,), tower_units=(8,))
    # By hand: experts 8·(100·16+16) + towers 2·(16·8+8 + 8+1) = 13,218; bottom 100·113+113 + 2·(113·8+8 + 9) = 13,255.
    assert _params_without_gates(mmoe) == 13_218
    assert shared_bottom.count_params() == 13_255
    assert abs(13_218 - 13_255) / 13_255 < 0.02


@pytest.mark.parametrize("builder", [builders.mmoe, builders.omoe])
def test_fit_and_round_trip(builder, tmp_path):
    x, y = toy_data()
    model = builder(toy_tasks(), 12, num_experts=4, expert_units=(8,), tower_units=(4,))
    check_builder(model, x, y, tmp_path)
    check_sharing(model, x[:64], {k: v[:64] for k, v in y.items()})


def test_image_inputs_are_flattened(tmp_path):
    x, y = toy_data(image=True)
    model = builders.mmoe(toy_tasks(), (8, 8, 1), num_experts=2, expert_units=(8,), tower_units=(4,))
    check_builder(model, x, y, tmp_path)


def test_gates_are_task_specific_in_mmoe_and_shared_in_omoe():
    assert builders.mmoe(toy_tasks(), 12).shared_layer_names == ["experts"]
    assert builders.omoe(toy_tasks(), 12).shared_layer_names == ["experts", "gate"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_experts": 0}, "num_experts"),
        ({"expert_units": ()}, "units"),
        ({"tower_units": (0,)}, "tower_units"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        builders.mmoe(toy_tasks(), 12, **kwargs)
