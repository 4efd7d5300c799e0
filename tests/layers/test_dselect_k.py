"""DSelect-k gate (Hazimeh et al., NeurIPS 2021): smooth-step and binary encoding against NumPy written from
the paper's formulas, and the gate's sparsity after training inside PLE (static) and MMoE (per-example)."""

import re

import keras
import numpy as np
import pytest
from helpers import check_builder, check_sharing, toy_data, toy_tasks

from mtl_keras import builders
from mtl_keras.callbacks import HardenDSelectK, dselect_k_gates
from mtl_keras.export import _standalone_check, export_for_serving
from mtl_keras.export.check import compare_with_model
from mtl_keras.layers.dselect_k import DSelectKGate, smooth_step

SMALL = {"num_experts": 4, "expert_units": (8,), "tower_units": (4,)}


def numpy_smooth_step(t, gamma):
    """The paper's eq. (1), piece by piece."""
    t = np.asarray(t, dtype=np.float64)
    out = np.empty_like(t)
    for index, value in np.ndenumerate(t):
        if value <= -gamma / 2:
            out[index] = 0.0
        elif value >= gamma / 2:
            out[index] = 1.0
        else:
            out[index] = -2 / gamma**3 * value**3 + 3 / (2 * gamma) * value + 0.5
    return out


def numpy_gate(x, z_kernel, z_bias, a_kernel, a_bias, k, n, gamma):
    """q = Σ_i softmax(α)_i r(z_i), r_c(z) = Π_j S(z_j)^{bit_j(c)} (1 − S(z_j))^{1 − bit_j(c)}; spare codes c
    ≥ n added to expert c mod n."""
    m = max(1, int(np.ceil(np.log2(n))))
    z = (x @ z_kernel + z_bias).reshape(len(x), k, m)
    s = numpy_smooth_step(z, gamma)
    logits = x @ a_kernel + a_bias
    alpha = np.exp(logits - logits.max(1, keepdims=True))
    alpha /= alpha.sum(1, keepdims=True)
    q = np.zeros((len(x), n))
    for b in range(len(x)):
        for i in range(k):
            for code in range(2**m):
                weight = 1.0
                for j in range(m):
                    bit = (code >> j) & 1
                    weight *= s[b, i, j] if bit else 1 - s[b, i, j]
                q[b, code % n] += alpha[b, i] * weight
    return q


@pytest.mark.parametrize("gamma", [0.5, 1.0, 2.0])
def test_smooth_step_matches_the_papers_formula(gamma):
    t = np.linspace(-1.5 * gamma, 1.5 * gamma, 41).astype("float32")
    got = keras.ops.convert_to_numpy(smooth_step(keras.ops.convert_to_tensor(t), gamma))
    np.testing.assert_allclose(got, numpy_smooth_step(t, gamma), atol=1e-6)
    # C¹ at the knots: the cubic is 0 / 1 there with zero slope.
    edge = np.array([-gamma / 2, gamma / 2])
    np.testing.assert_allclose(numpy_smooth_step(edge, gamma), [0.0, 1.0], atol=1e-12)


@pytest.mark.parametrize(("n", "k"), [(4, 2), (5, 3), (8, 1), (1, 1)])
def test_gate_matches_numpy_binary_encoding(n, k):
    rng = np.random.default_rng(n)
    x = rng.normal(size=(7, 3)).astype("float32")
    gate = DSelectKGate(n, k=k, gamma=1.5, entropy_weight=0.0)
    gate.build(x.shape)
    m = max(1, int(np.ceil(np.log2(n))))
    # Weights spread over the smooth-step's flat and cubic parts.
    z_kernel, z_bias = rng.normal(0, 0.6, (3, k * m)), rng.normal(0, 0.5, k * m)
    a_kernel, a_bias = rng.normal(size=(3, k)), rng.normal(size=k)
    gate.selectors.set_weights([z_kernel.astype("float32"), z_bias.astype("float32")])
    gate.selector_weights.set_weights([a_kernel.astype("float32"), a_bias.astype("float32")])
    got = keras.ops.convert_to_numpy(gate(x))
    expected = numpy_gate(x.astype(np.float64), z_kernel, z_bias, a_kernel, a_bias, k, n, 1.5)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    np.testing.assert_allclose(got.sum(1), 1.0, atol=1e-5)


def test_entropy_regulariser_is_the_mean_selector_entropy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 3)).astype("float32")
    gate = DSelectKGate(4, k=2, entropy_weight=0.3)
    gate(x)
    r = keras.ops.convert_to_numpy(gate.code_weights(x)).astype(np.float64)
    entropy = -np.sum(np.where(r > 0, r * np.log(np.where(r > 0, r, 1)), 0), axis=(1, 2))
    (loss,) = gate.losses
    np.testing.assert_allclose(float(loss), 0.3 * entropy.mean(), rtol=1e-5)
    assert DSelectKGate(4, entropy_weight=0.0)(x) is not None
    assert not DSelectKGate(4, entropy_weight=0.0).losses


def _entropies(gate, x):
    r = keras.ops.convert_to_numpy(gate.code_weights(x)).astype(np.float64)
    return -np.sum(np.where(r > 0, r * np.log(np.where(r > 0, r, 1)), 0), axis=-1)  # (batch, k)


def test_static_gates_of_ple_select_k_experts_after_training(tmp_path):
    """Static DSelect-k in PLE, two tasks (5 gates: the task gates mix 3 experts, so spare codes are folded;
    the shared gate 4): the builder's fit and round trip, then at the end of training every selector is
    binary (entropy exactly 0), so each gate puts all its weight on the experts its k selectors chose (at
    most k; two selectors can choose the same one). The sharing check runs before training: a converged
    sparse gate may leave a shared expert unused by every task."""
    keras.utils.set_random_seed(0)
    x, y = toy_data(n=256)
    tasks = toy_tasks()[:2]
    y = {task.name: y[task.name] for task in tasks}
    model = builders.ple(
        tasks,
        12,
        num_shared_experts=2,
        num_task_experts=1,
        expert_units=(8,),
        tower_units=(4,),
        gate="dselect_k_static",
        k=2,
    )
    gates = [layer for layer in model.layers if isinstance(layer, DSelectKGate)]
    assert len(gates) == 5 and model.get_layer("level_1_shared_gate").num_experts == 4
    check_sharing(model, x[:64], {key: v[:64] for key, v in y.items()})
    check_builder(model, x, y, tmp_path, epochs=20)
    for gate in gates:
        assert np.max(_entropies(gate, x)) < 1e-6, gate.name
        weights = keras.ops.convert_to_numpy(gate(x))
        chosen = np.flatnonzero(weights[0] > 1e-6)
        assert 1 <= len(chosen) <= 2, (gate.name, weights[0])
        np.testing.assert_allclose(weights, np.broadcast_to(weights[0], weights.shape))
        np.testing.assert_allclose(weights[0, chosen].sum(), 1.0, atol=1e-6)


def test_per_example_gate_of_mmoe_fits_round_trips_exports_and_sparsifies(tmp_path):
    """Per-example DSelect-k in MMoE: the builder's fit, round trip and export, and the entropy regulariser
    drives examples' selectors to binary (measured: ~80 % of 512 rows exactly binary after 60 epochs,
    docs/methods.md); here 10 epochs of 256 rows must at least halve the mean selector entropy and make some
    rows exactly sparse."""
    keras.utils.set_random_seed(0)
    x, y = toy_data(n=256)
    model = builders.mmoe(toy_tasks(), 12, **SMALL, gate="dselect_k", k=2, entropy_weight=1.0)
    assert model.shared_layer_names == ["experts"]
    assert isinstance(model.get_layer("gate_a"), DSelectKGate)
    check_sharing(model, x[:64], {key: v[:64] for key, v in y.items()})
    before = {t: _entropies(model.get_layer(f"gate_{t}"), x).sum(1).mean() for t in model.task_names}
    check_builder(model, x, y, tmp_path, epochs=10)
    for task in model.task_names:
        gate = model.get_layer(f"gate_{task}")
        entropy = _entropies(gate, x).sum(1)
        assert entropy.mean() < 0.5 * before[task], (task, before[task], entropy.mean())
        weights = keras.ops.convert_to_numpy(gate(x))
        assert np.max((weights > 1e-6).sum(1)[entropy < 1e-6], initial=0) <= 2
        assert np.mean(entropy < 1e-6) > 0.1, task
    export_for_serving(model, tmp_path / "serving", request_examples=x[:3])
    assert _standalone_check.check_directory(tmp_path / "serving")["ok"]
    assert compare_with_model(tmp_path / "serving", model)["ok"]


def test_omoe_takes_the_dselect_k_gate():
    omoe = builders.omoe(toy_tasks(), 12, **SMALL, gate="dselect_k_static", k=1)
    assert omoe.shared_layer_names == ["experts", "gate"]
    assert isinstance(omoe.get_layer("gate"), DSelectKGate)


# MirroredStrategy: the MMoE case of tests/distribute/test_builders_mirrored.py uses the per-example gate.


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"gate": "topk"}, "Expected `gate` to be one of ['softmax', 'dselect_k', 'dselect_k_static']"),
        ({"gate": "dselect_k", "k": 5}, "Expected `k` to be at most the number of experts a gate mixes (4)"),
        ({"gate": "dselect_k", "gamma": 0.0}, "Received: gamma=0.0"),
        ({"gate": "dselect_k", "entropy_weight": -1.0}, "Received: entropy_weight=-1.0"),
    ],
)
def test_bad_gate_options(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        builders.mmoe(toy_tasks(), 12, **SMALL, **kwargs)


def test_recipe_option_is_validated():
    from mtl_keras.recipes import RecipeError, validate

    raw = {"name": "r", "data": {"name": "synthetic_mmoe", "p": 0.5}}
    recipe = validate({**raw, "architecture": {"name": "mmoe", "gate": "dselect_k", "k": 3}})
    assert recipe.architecture.options["gate"] == "dselect_k" and recipe.architecture.options["k"] == 3
    with pytest.raises(RecipeError, match=re.escape("architecture.gate")):
        validate({**raw, "architecture": {"name": "ple", "gate": "top_k"}})


def numpy_hard_gate(x, z_kernel, z_bias, a_kernel, a_bias, k, n):
    """The γ → 0 limit: bit j of selector i is 1 where its logit is > 0; selector i puts all its weight
    softmax(α)_i on expert (its code) mod n."""
    m = max(1, int(np.ceil(np.log2(n))))
    bits = (x @ z_kernel + z_bias).reshape(len(x), k, m) > 0
    codes = (bits * (1 << np.arange(m))).sum(-1)  # (batch, k)
    logits = x @ a_kernel + a_bias
    alpha = np.exp(logits - logits.max(1, keepdims=True))
    alpha /= alpha.sum(1, keepdims=True)
    q = np.zeros((len(x), n))
    for b in range(len(x)):
        for i in range(k):
            q[b, codes[b, i] % n] += alpha[b, i]
    return q


def test_harden_is_the_step_limit_and_can_be_undone():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(9, 3)).astype("float32")
    gate = DSelectKGate(5, k=3, gamma=1.5, entropy_weight=0.2)
    gate.build(x.shape)
    kernels = [rng.normal(0, 0.6, (3, 9)), rng.normal(0, 0.5, 9), rng.normal(size=(3, 3)), rng.normal(size=3)]
    kernels = [w.astype("float32") for w in kernels]
    gate.selectors.set_weights(kernels[:2])
    gate.selector_weights.set_weights(kernels[2:])
    assert not gate.is_hard
    gate.harden()
    assert gate.is_hard
    hard = keras.ops.convert_to_numpy(gate(x))
    np.testing.assert_allclose(hard, numpy_hard_gate(x.astype(np.float64), *kernels, 3, 5), atol=1e-6)
    assert ((hard > 0).sum(1) <= 3).all()
    assert float(gate.losses[-1]) == 0.0  # every selector one-hot: no entropy left
    gate.harden(False)
    soft = keras.ops.convert_to_numpy(gate(x))
    np.testing.assert_allclose(soft, numpy_gate(x.astype(np.float64), *kernels, 3, 5, 1.5), atol=1e-5)
    with pytest.raises(ValueError, match=re.escape("Received: hard=1")):
        gate.harden(1)
    with pytest.raises(ValueError, match="to be built before `harden`"):
        DSelectKGate(4).harden()


def test_hardened_per_example_gates_of_mmoe_use_at_most_k_experts_on_every_example(tmp_path):
    """Per-example DSelect-k in MMoE trained soft for 4 epochs, hardened by the callback, trained 2 more:
    on every training example and on unseen inputs each gate has at most k = 2 non-zero weights, equal to
    the NumPy step-limit gate of its trained weights; the losses still fall after hardening and the flag
    survives a .keras round trip."""
    keras.utils.set_random_seed(0)
    x, y = toy_data(n=256)
    model = builders.mmoe(toy_tasks(), 12, **SMALL, gate="dselect_k", k=2, entropy_weight=1.0)
    model.compile(keras.optimizers.Adam(0.01))
    history = model.fit(x, y, epochs=6, batch_size=64, verbose=0, callbacks=[HardenDSelectK(4)])
    assert history.history["loss"][-1] < history.history["loss"][4] < history.history["loss"][0]
    unseen = np.random.default_rng(1).normal(size=(256, 12)).astype("float32")
    inputs = np.concatenate([np.asarray(x, dtype="float32"), unseen])
    assert len(dselect_k_gates(model)) == len(model.task_names)
    for task in model.task_names:
        gate = model.get_layer(f"gate_{task}")
        assert gate.is_hard, task
        weights = keras.ops.convert_to_numpy(gate(inputs))
        kernels = [
            w.astype(np.float64) for w in gate.selectors.get_weights() + gate.selector_weights.get_weights()
        ]
        np.testing.assert_allclose(weights, numpy_hard_gate(inputs, *kernels, 2, 4), atol=1e-6)
        counts = (weights > 0).sum(1)
        assert counts.min() >= 1 and counts.max() <= 2, (task, np.bincount(counts))
    path = tmp_path / "hard.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert all(gate.is_hard for gate in dselect_k_gates(loaded))
    expected, got = model.predict(x, verbose=0), loaded.predict(x, verbose=0)
    for task in model.task_names:
        np.testing.assert_allclose(got[task], expected[task], atol=1e-6)


def test_harden_callback_checks_its_epoch_and_the_model():
    with pytest.raises(ValueError, match=re.escape("Received: epoch=0")):
        HardenDSelectK(0)
    x, y = toy_data(n=32)
    model = builders.mmoe(toy_tasks(), 12, **SMALL)
    model.compile("adam")
    with pytest.raises(ValueError, match="to have a DSelect-k gate"):
        model.fit(x, y, epochs=2, verbose=0, callbacks=[HardenDSelectK(1)])


def test_recipe_hardens_the_gates_at_its_epoch(tmp_path):
    """`training.harden_gates_at_epoch` in a recipe: validated against the gate and the epochs, and a run
    ends with every gate hardened (at most k non-zero weights on every test row)."""
    from mtl_keras.experiments import prepare, run
    from mtl_keras.recipes import RecipeError, validate

    raw = {
        "name": "hard",
        "data": {"name": "synthetic_mmoe", "p": 0.5, "n": 256, "dim": 8, "n_validation": 64, "n_test": 64},
        "architecture": {"name": "mmoe", **SMALL, "gate": "dselect_k", "k": 2},
        "training": {"epochs": 3, "batch_size": 64, "harden_gates_at_epoch": 2},
        "baselines": {"single_task": False},
        "export": {"enabled": False},
    }
    with pytest.raises(RecipeError, match=re.escape("training.harden_gates_at_epoch: only DSelect-k gates")):
        validate({**raw, "architecture": {"name": "mmoe", **SMALL}})
    with pytest.raises(RecipeError, match=re.escape("expected fewer than training.epochs (3) epochs, got 3")):
        validate({**raw, "training": {**raw["training"], "harden_gates_at_epoch": 3}})
    prepared = prepare(validate(raw))
    run(prepared, tmp_path)
    gates = dselect_k_gates(prepared.model)
    assert len(gates) == 2 and all(gate.is_hard for gate in gates)
    x = np.asarray(prepared.dataset.examples("test", 64), dtype="float32")
    for gate in gates:
        assert ((keras.ops.convert_to_numpy(gate(x)) > 0).sum(1) <= 2).all(), gate.name
