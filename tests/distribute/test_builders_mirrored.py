"""Every builder trains under MirroredStrategy (2 logical CPUs) to the weights of one device.

Static weights only: the balancers are covered by test_mirrored_equivalence.py. A few steps of
``model.fit`` with unevenly missing labels; each builder small. The GPU variant runs on every local GPU.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import toy_data, toy_tasks

from mtl_keras import builders
from mtl_keras.builders.escm2 import escm2_labels
from mtl_keras.builders.esmm import esmm_labels
from mtl_keras.distribute import make_strategy

STEPS, BATCH = 4, 32

#: The small options of every builder (the test fails when a builder is added without them).
SMALL = {
    "hard_sharing": {"trunk": (16, 8), "tower_units": (8,)},
    # The per-example DSelect-k gate (its entropy regulariser is an add_loss); omoe/cgc/ple keep softmax gates.
    "mmoe": {
        "num_experts": 2,
        "expert_units": (8,),
        "tower_units": (4,),
        "gate": "dselect_k",
        "k": 2,
        "entropy_weight": 0.5,
    },
    "omoe": {"num_experts": 2, "expert_units": (8,), "tower_units": (4,)},
    "cgc": {"num_shared_experts": 1, "num_task_experts": 1, "expert_units": (8,), "tower_units": (4,)},
    "ple": {"num_levels": 2, "num_shared_experts": 1, "num_task_experts": 1, "expert_units": (8,)},
    "esmm": {"shared_units": (16,), "tower_units": (8,)},
    "aitm": {"encoder_units": (8,), "tower_units": (4,), "calibrator_weight": 1.0},
    "escm2": {"variant": "dr", "shared_units": (16,), "tower_units": (8,), "imputation_units": (4,)},
    "soft_sharing": {"units": (8,), "tower_units": (4,)},
    "shared_private": {"shared_units": (8,), "private_units": (4,), "tower_units": (4,)},
    "cross_stitch": {"blocks": (8, 8), "tower_units": (4,)},
    "sluice": {"blocks": (8, 8), "num_subspaces": 2, "tower_units": (4,)},
    "mtan": {"blocks": (8, 8), "mask_units": 4, "tower_units": (4,)},
    "single_task": {"architecture": "hard_sharing", "trunk": (8,), "tower_units": (4,)},
}


def _data(name):
    x, y = toy_data(n=STEPS * BATCH, seed=2)
    if name in ("esmm", "escm2", "aitm"):
        click = y["a"]
        conversion = ((x[:, 4] > 0) & (click == 1)).astype("float32")
        if name == "aitm":
            return x, {"ctr": click, "ctcvr": conversion}
        return x, esmm_labels(click, conversion) if name == "esmm" else escm2_labels(
            click, conversion, variant="dr"
        )
    y["b"][::3] = np.nan
    y["c"][: BATCH // 2] = np.nan
    return x, y


def _train(strategy, name, x, y):
    tasks = ["ctr", "ctcvr"] if name in ("esmm", "escm2", "aitm") else toy_tasks()
    with strategy.scope():
        keras.utils.set_random_seed(0)
        model = builders.get_builder(name)(tasks, x.shape[1], **SMALL[name])
        model.compile(keras.optimizers.Adam(1e-2))
    model.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
    return [v.numpy() for v in model.trainable_variables]


def test_every_builder_is_covered():
    assert sorted(SMALL) == builders.names()


# soft_sharing and shared_private add penalties with add_loss: train_step reads the layers' losses right
# after each replica's forward pass, and OrthogonalityPenalty all-reduces SᵀP before squaring it.


@pytest.mark.parametrize(
    "name",
    sorted(SMALL),
)
def test_two_replicas_match_one_device(name, mirrored_strategy):
    x, y = _data(name)
    one = _train(tf.distribute.get_strategy(), name, x, y)
    two = _train(mirrored_strategy, name, x, y)
    assert len(one) == len(two) > 0
    for a, b in zip(one, two, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)


@pytest.mark.gpu
@pytest.mark.skipif(
    not tf.config.list_physical_devices("GPU"),
    reason="needs a GPU: tf.config.list_physical_devices('GPU') is empty",
)
@pytest.mark.parametrize("name", ["hard_sharing", "mmoe", "ple"])
def test_every_local_gpu_matches_one_device(name):
    gpus = [f"/gpu:{i}" for i in range(len(tf.config.list_physical_devices("GPU")))]
    x, y = _data(name)
    with tf.device("/gpu:0"):
        one = _train(tf.distribute.get_strategy(), name, x, y)
    two = _train(make_strategy("mirrored", devices=gpus), name, x, y)
    for a, b in zip(one, two, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)
