"""Fault tolerance: a run killed mid-epoch (SIGKILL) or interrupted (Ctrl-C) and resumed with ``--resume``
ends with the weights and epoch logs of an uninterrupted run; a dead worker stops the others with a
clear error instead of a hang.

The recipe makes resuming exact only if everything a step changes comes back: dropout (seed-generator
state), PCGrad's random task order (its step counter), DWA's loss history (replayed epoch hook) and the
running means of the interrupted epoch (which DWA reads at the epoch's end).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import keras
import numpy as np
import pytest
import yaml

from mtl_keras.cli import main
from mtl_keras.distribute import checkpoint as checkpoint_lib

ROOT = Path(__file__).resolve().parents[2]
STEPS_PER_EPOCH = 6  # 192 examples, batch 32

RECIPE = {
    "name": "tiny_resume",
    "seed": 3,
    "data": {"name": "synthetic_mmoe", "p": 0.5, "n": 192, "n_validation": 64, "n_test": 64},
    "architecture": {
        "name": "mmoe",
        "num_experts": 2,
        "expert_units": [8],
        "tower_units": [4],
        "dropout": 0.2,
    },
    "balancer": "dwa+pcgrad",
    "training": {"epochs": 3, "batch_size": 32, "optimizer": {"name": "adam", "learning_rate": 0.01}},
    "baselines": {"epochs": 1},
    "distribute": {"checkpoint_every": 2},
    "export": {"enabled": False},
}


@pytest.fixture
def recipe_file(tmp_path):
    path = tmp_path / "tiny_resume.yaml"
    path.write_text(yaml.safe_dump(RECIPE))
    return path


def _weights(run_dir: Path) -> list[np.ndarray]:
    return keras.models.load_model(run_dir / "model.keras").get_weights()


def _assert_same_run(resumed: Path, reference: Path) -> None:
    for a, b in zip(_weights(resumed), _weights(reference), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6, rtol=0)
    history = json.loads((resumed / "history.json").read_text())
    expected = json.loads((reference / "history.json").read_text())
    assert sorted(history) == sorted(expected)
    for key in expected:
        np.testing.assert_allclose(history[key], expected[key], rtol=1e-5, atol=1e-6, err_msg=key)
    assert not (resumed / "backup").exists(), "checkpoints are removed once the run is complete"


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run, in this process."""
    out = tmp_path_factory.mktemp("reference") / "run"
    path = out.parent / "tiny_resume.yaml"
    path.write_text(yaml.safe_dump(RECIPE))
    assert main(["--quiet", "train", str(path), "--output", str(out)]) == 0
    return out


def test_keyboard_interrupt_returns_130_and_resume_completes(
    recipe_file, tmp_path, reference, monkeypatch, capsys
):
    out = tmp_path / "run"
    original = checkpoint_lib.TrainingCheckpoint.on_train_batch_end
    seen = {"steps": 0}

    def interrupt_at_step_9(self, batch, logs=None):
        original(self, batch, logs)
        seen["steps"] += 1
        if seen["steps"] == 9:  # mid-epoch 2, one step after the checkpoint of step 8
            raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint_lib.TrainingCheckpoint, "on_train_batch_end", interrupt_at_step_9)
    args = ["--quiet", "train", str(recipe_file), "--output", str(out), "--set", "training.epochs=3"]
    assert main(args) == 130
    message = capsys.readouterr().err
    assert "--resume" in message and str(out) in message and "--set training.epochs=3" in message
    assert not (out / "model.keras").exists()
    monkeypatch.setattr(checkpoint_lib.TrainingCheckpoint, "on_train_batch_end", original)
    assert main([*args, "--resume"]) == 0
    _assert_same_run(out, reference)


def test_resume_refuses_a_checkpoint_of_another_recipe(recipe_file, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"

    def stop(self, batch, logs=None):
        self.step += 1
        self.save()
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint_lib.TrainingCheckpoint, "on_train_batch_end", stop)
    assert main(["--quiet", "train", str(recipe_file), "--output", str(out)]) == 130
    capsys.readouterr()
    changed = ["--quiet", "train", str(recipe_file), "--output", str(out), "--set", "seed=4", "--resume"]
    assert main(changed) == 2
    assert "--resume: the checkpoint" in capsys.readouterr().err


# --- the pieces: the batch stream and the checkpoint files ------------------------------------------------


def _batches(dataset) -> list[np.ndarray]:
    return [np.asarray(x[:, 0]) for x, _ in dataset]


@pytest.mark.parametrize(("cap", "wrap"), [(None, False), (3, True)])
def test_the_stream_from_any_step_is_the_tail_of_the_whole_stream(cap, wrap):
    from mtl_keras.data.base import Split
    from mtl_keras.distribute.stream import StreamSpec, training_stream

    n, epochs = 50, 3
    split = Split(np.arange(n, dtype="float32").reshape(n, 1), {"t": np.zeros(n, "float32")})
    spec = StreamSpec.for_split(split, 16, seed=7, steps_per_epoch=cap)
    assert spec.wrap is wrap and spec.steps_per_epoch == (cap or 4)
    total = epochs * spec.steps_per_epoch
    whole = _batches(training_stream(split, spec, epochs=epochs).take(total))
    assert len(whole) == total
    for start in (1, spec.steps_per_epoch, spec.steps_per_epoch + 2):
        tail = _batches(training_stream(split, spec, epochs=epochs, start_step=start).take(total - start))
        assert len(tail) == total - start
        for a, b in zip(tail, whole[start:], strict=True):
            np.testing.assert_array_equal(a, b)
    if wrap:  # full batches, passes back to back: every example once per pass
        flat = np.concatenate(whole)
        assert all(len(b) == 16 for b in whole)
        np.testing.assert_array_equal(np.sort(flat[:n]), np.arange(n))
    else:  # one pass per epoch, in a new order each epoch
        per_epoch = [np.concatenate(whole[e * 4 : (e + 1) * 4]) for e in range(epochs)]
        for order in per_epoch:
            np.testing.assert_array_equal(np.sort(order), np.arange(n))
        assert not np.array_equal(per_epoch[0], per_epoch[1])


def test_restore_skips_a_broken_newest_checkpoint_and_leftovers(tmp_path):
    import keras

    from mtl_keras import Task, builders
    from mtl_keras.distribute.checkpoint import TrainingCheckpoint, restore

    def model():
        keras.utils.set_random_seed(0)
        m = builders.hard_sharing([Task("a"), Task("b")], 4, trunk=(4,), tower_units=())
        m.compile("adam", balancer="pcgrad")
        m.optimizer.build(m.trainable_variables)  # as after a first step
        return m

    saved = model()
    callback = TrainingCheckpoint(tmp_path, steps_per_epoch=5, fingerprint="f")
    callback.set_model(saved)
    callback.step = 3
    callback.save()
    weights = [w.copy() for w in saved.get_weights()]
    variable = saved.trainable_variables[0]
    variable.assign(np.ones(variable.shape, "float32"))
    callback.step = 4
    callback.save()
    newest = sorted(tmp_path.glob("ckpt-*"))[-1]
    (newest / "variables.npz").write_bytes(b"truncated")  # as if the disk lost it
    (tmp_path / ".tmp-leftover").mkdir()  # a write killed before its rename
    restored_model = model()
    restored = restore(tmp_path, restored_model, fingerprint="f")
    assert restored is not None and restored.step == 3 and not restored.finished
    for a, b in zip(restored_model.get_weights(), weights, strict=True):
        np.testing.assert_array_equal(a, b)


def test_resume_mid_epoch_under_mirrored_strategy(tmp_path, mirrored_strategy):
    """The loop and the checkpoint under 2 replicas: metric variables (summed over replicas when read)
    and the partial first epoch come back exactly."""
    import tensorflow as tf
    from helpers import toy_data, toy_tasks

    from mtl_keras import builders
    from mtl_keras.data.base import Split
    from mtl_keras.distribute.checkpoint import TrainingCheckpoint, restore
    from mtl_keras.distribute.loops import TrainingRun, keras_fit, replay_epoch_hooks
    from mtl_keras.distribute.strategy import in_scope
    from mtl_keras.distribute.stream import StreamSpec, training_stream

    x, y = toy_data(n=128, seed=4)
    split = Split(x, y)
    spec = StreamSpec.for_split(split, 32, seed=1)

    def model():
        with mirrored_strategy.scope():
            keras.utils.set_random_seed(0)
            m = builders.hard_sharing(toy_tasks(), 12, trunk=(8,), tower_units=(4,))
            m.compile(keras.optimizers.Adam(1e-2), balancer="dwa")
        return m

    def train(m, directory, restored=None, stop_at=None):
        checkpoint = TrainingCheckpoint(
            directory, steps_per_epoch=4, fingerprint="f", every=3, restored=restored
        )

        class Stop(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                if checkpoint.step == stop_at:
                    raise KeyboardInterrupt

        run = TrainingRun(
            m,
            stream=lambda step: training_stream(split, spec, epochs=3, start_step=step),
            steps_per_epoch=4,
            epochs=3,
            callbacks=[checkpoint, Stop()],
            start_step=checkpoint.step,
        )
        keras_fit(run)
        return checkpoint.history

    whole = model()
    expected = train(whole, tmp_path / "whole")
    interrupted = model()
    with pytest.raises(KeyboardInterrupt):
        train(interrupted, tmp_path / "resumed", stop_at=7)  # checkpoint at step 6: epoch 2, step 2
    resumed = model()
    restored = in_scope(mirrored_strategy, lambda: restore(tmp_path / "resumed", resumed, fingerprint="f"))
    assert restored.step == 6 and restored.metric_values
    replay_epoch_hooks(resumed, restored.history)
    history = train(resumed, tmp_path / "resumed", restored=restored)
    assert isinstance(resumed.distribute_strategy, tf.distribute.MirroredStrategy)
    for a, b in zip(resumed.get_weights(), whole.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6, rtol=0)
    for key in expected:
        np.testing.assert_allclose(history[key], expected[key], rtol=1e-5, err_msg=key)


# --- a killed process ---------------------------------------------------------------------------------------

# Runs the CLI with every training step slowed down, so that the kill lands mid-training.
SLOW_CLI = textwrap.dedent(
    """
    import sys, time
    from mtl_keras.distribute import checkpoint
    original = checkpoint.TrainingCheckpoint.on_train_batch_end
    def slow(self, batch, logs=None):
        original(self, batch, logs)
        time.sleep(0.3)
    checkpoint.TrainingCheckpoint.on_train_batch_end = slow
    from mtl_keras.cli import main
    sys.exit(main(sys.argv[1:]))
    """
)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update({"TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "", "PYTHONUNBUFFERED": "1"})
    env.pop("TF_CONFIG", None)
    return env


def _wait_for(condition, process: subprocess.Popen, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"the process exited ({process.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout} s")
        time.sleep(0.05)


def _kill(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.kill()
        process.wait(timeout=30)


def test_killed_run_resumes_to_the_same_weights(recipe_file, tmp_path, reference):
    out = tmp_path / "run"
    script = tmp_path / "slow_cli.py"
    script.write_text(SLOW_CLI)
    command = [sys.executable, str(script), "--quiet", "train", str(recipe_file), "--output", str(out)]
    log = (tmp_path / "killed.log").open("w")
    process = subprocess.Popen(command, env=_env(), stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        _wait_for(lambda: any((out / "backup").glob("ckpt-*")), process, 120, "first checkpoint")
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        _kill(process)
        log.close()
    assert process.returncode == -signal.SIGKILL
    state = json.loads(max((out / "backup").glob("ckpt-*/state.json")).read_text())
    assert not state["finished"] and state["step"] < RECIPE["training"]["epochs"] * STEPS_PER_EPOCH
    resumed = subprocess.run(
        [sys.executable, "-m", "mtl_keras.cli", "train", str(recipe_file), "--output", str(out), "--resume"],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "Resuming from" in resumed.stderr
    _assert_same_run(out, reference)


# --- a dead worker -----------------------------------------------------------------------------------------


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _start_workers(tmp_path, command: list[str], tag: str) -> list[tuple[subprocess.Popen, Path]]:
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    started = []
    for index in range(2):
        env = _env()
        env["TF_CONFIG"] = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        path = tmp_path / f"{tag}{index}.log"
        with path.open("w") as log:
            process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
        started.append((process, path))
    return started


def test_a_dead_worker_stops_the_other_and_the_cluster_resumes(tmp_path):
    """Kill worker 1 mid-training: worker 0 (the chief) exits with WorkerLost within a bounded time.
    Restarted with --resume, the two workers finish the run with the weights of one process."""
    recipe = {**RECIPE, "architecture": {**RECIPE["architecture"], "dropout": 0.0}}  # dropout masks differ
    recipe_file = tmp_path / "tiny_resume.yaml"
    recipe_file.write_text(yaml.safe_dump(recipe))
    (tmp_path / "slow_cli.py").write_text(SLOW_CLI)
    out = tmp_path / "run"
    train = ["train", str(recipe_file), "--output", str(out), "--strategy", "multi_worker"]
    workers = _start_workers(tmp_path, [sys.executable, "slow_cli.py", *train], "killed")
    (chief, chief_log), (other, _) = workers
    try:
        _wait_for(lambda: any((out / "backup").glob("ckpt-*")), chief, 150, "first checkpoint")
        other.send_signal(signal.SIGKILL)
        started = time.monotonic()
        chief.wait(timeout=120)
        elapsed = time.monotonic() - started
    finally:
        for process, _ in workers:
            _kill(process)
    output = chief_log.read_text()
    assert chief.returncode not in (0, None), output[-3000:]
    assert "mtl-keras: error: A worker of the cluster died" in output and "--resume" in output, output[-3000:]
    assert elapsed < 120

    workers = _start_workers(tmp_path, [sys.executable, "-m", "mtl_keras.cli", *train, "--resume"], "resumed")
    try:
        deadline = time.monotonic() + 240
        for process, _ in workers:
            process.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        for process, _ in workers:
            _kill(process)
    for process, path in workers:
        assert process.returncode == 0, path.read_text()[-3000:]
        assert "Resuming from" in path.read_text()

    reference = tmp_path / "reference"
    assert main(["--quiet", "train", str(recipe_file), "--output", str(reference)]) == 0
    for a, b in zip(_weights(out), _weights(reference), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)
    assert (out / "report.json").exists() and not (out / "backup").exists()
