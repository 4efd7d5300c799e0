"""Two worker processes on 127.0.0.1 under MultiWorkerMirroredStrategy train like one device.

Each worker runs the multi-worker loop (``mtl_keras.distribute.multi_worker``, chosen by
``loop_for(strategy)``) on the same global batches — every worker keeps its half of each — for 10 steps
with each of six balancers in turn; the chief saves the final weights. This process trains the same models
with ``model.fit`` on one device and compares within 1e-5.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import toy_data, toy_tasks

from mtl_keras import builders

STEPS, BATCH = 10, 32
BALANCERS = ["static", "uncertainty", "gradnorm", "pcgrad", "mgda", "cagrad"]
TIME_LIMIT = 240  # seconds for both workers, start-up included

WORKER = textwrap.dedent(
    """
    import sys
    import keras
    import numpy as np
    import tensorflow as tf

    from mtl_keras import builders
    from mtl_keras.distribute.loops import TrainingRun, loop_for
    from mtl_keras.distribute.strategy import in_scope, make_strategy, worker_role
    from mtl_keras.tasks import Task

    STEPS, BATCH = {steps}, {batch}
    strategy = make_strategy("multi_worker")
    assert strategy.num_replicas_in_sync == 2, strategy.num_replicas_in_sync
    data = np.load("data.npz")
    x = data["x"]
    y = {{k: data[k] for k in ("a", "b", "c")}}
    tasks = [Task("a", "binary"), Task("b", "regression"), Task("c", "multiclass", num_classes=3)]
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA

    def stream(step):
        dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH).skip(step)
        return dataset.with_options(options)

    # Each worker keeps its own half of every global batch.
    first = next(iter(strategy.experimental_distribute_dataset(stream(0))))
    assert strategy.experimental_local_results(first)[0][0].shape[0] == BATCH // 2

    results = {{}}
    for name in {balancers!r}:
        def build():
            keras.utils.set_random_seed(0)
            model = builders.hard_sharing(tasks, 12, trunk=(16, 8), tower_units=(8,))
            model.compile(keras.optimizers.Adam(1e-2), balancer=name)
            return model

        model = in_scope(strategy, build)
        loop_for(strategy).fit(TrainingRun(model, stream, steps_per_epoch=STEPS, epochs=1))
        for i, v in enumerate(model.trainable_variables):
            results[f"{{name}}/{{i}}"] = v.numpy()
        print("trained", name, flush=True)
    if worker_role(strategy).chief:
        np.savez("weights.npz", **results)
    print("done", flush=True)
    """
)


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _data():
    x, y = toy_data(n=STEPS * BATCH, seed=1)
    # Missing labels spread unevenly across the workers: the global-denominator masked mean must match.
    y["b"][::3] = np.nan
    y["c"][: BATCH // 2] = np.nan
    return x, y


def _one_device(balancer, x, y):
    keras.utils.set_random_seed(0)
    model = builders.hard_sharing(toy_tasks(), 12, trunk=(16, 8), tower_units=(8,))
    model.compile(keras.optimizers.Adam(1e-2), balancer=balancer)
    model.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
    return [v.numpy() for v in model.trainable_variables]


def run_workers(tmp_path, script: str, count: int = 2, time_limit: float = TIME_LIMIT) -> list[str]:
    """Start ``count`` workers of ``script`` in ``tmp_path``; wait for all; kill any left; return logs."""
    ports = _free_ports(count)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    (tmp_path / "worker.py").write_text(script)
    processes, logs = [], []
    try:
        for index in range(count):
            env = dict(os.environ)
            env.update(
                {
                    "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}),
                    "TF_CPP_MIN_LOG_LEVEL": "3",
                    "CUDA_VISIBLE_DEVICES": "",
                }
            )
            log = (tmp_path / f"worker{index}.log").open("w")
            logs.append(log)
            processes.append(
                subprocess.Popen(
                    [sys.executable, "worker.py"], cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT
                )
            )
        deadline = time.monotonic() + time_limit
        for process in processes:
            process.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=30)
        for log in logs:
            log.close()
    outputs = [(tmp_path / f"worker{i}.log").read_text() for i in range(count)]
    for process, output in zip(processes, outputs, strict=True):
        assert process.returncode == 0, output[-4000:]
    return outputs


def test_two_workers_match_one_device_for_six_balancers(tmp_path):
    x, y = _data()
    np.savez(tmp_path / "data.npz", x=x, **y)
    script = WORKER.format(steps=STEPS, batch=BATCH, balancers=BALANCERS)
    outputs = run_workers(tmp_path, script)
    assert all("done" in output for output in outputs)
    with np.load(tmp_path / "weights.npz") as saved:
        distributed = dict(saved)
    assert not tf.distribute.has_strategy()
    for balancer in BALANCERS:
        expected = _one_device(balancer, x, y)
        got = [distributed[f"{balancer}/{i}"] for i in range(len(expected))]
        for a, b in zip(expected, got, strict=True):
            np.testing.assert_allclose(b, a, atol=1e-5, rtol=0, err_msg=balancer)


@pytest.mark.parametrize("name", ["fit", "evaluate"])
def test_the_loop_is_chosen_by_the_strategy_type(name):
    from mtl_keras.distribute import multi_worker
    from mtl_keras.distribute.loops import KERAS_LOOP, loop_for

    assert loop_for(tf.distribute.get_strategy()) is KERAS_LOOP
    fake = tf.distribute.MultiWorkerMirroredStrategy.__new__(tf.distribute.MultiWorkerMirroredStrategy)
    assert getattr(loop_for(fake), name) is getattr(multi_worker, name)


@pytest.mark.parametrize(
    ("cluster", "task", "chief"),
    [
        ({"worker": ["h:1", "h:2"]}, {"type": "worker", "index": 0}, True),
        ({"worker": ["h:1", "h:2"]}, {"type": "worker", "index": 1}, False),
        ({"chief": ["h:0"], "worker": ["h:1"]}, {"type": "chief", "index": 0}, True),
        ({"chief": ["h:0"], "worker": ["h:1"]}, {"type": "worker", "index": 0}, False),
    ],
)
def test_worker_role_from_tf_config(cluster, task, chief, monkeypatch):
    from types import SimpleNamespace

    from mtl_keras.distribute.strategy import worker_role

    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": task}))
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    role = worker_role(SimpleNamespace(cluster_resolver=resolver))
    assert role.chief is chief
    assert role.num_workers == 2
    assert worker_role(tf.distribute.get_strategy()).chief


def test_a_malformed_tf_config_is_a_clear_error(monkeypatch):
    from mtl_keras.distribute import make_strategy

    monkeypatch.setenv("TF_CONFIG", '{"cluster": {}, "task": {"type": "worker", "index": 0}}')
    with pytest.raises(ValueError, match="cluster to list `worker`"):
        make_strategy("multi_worker")
    monkeypatch.setenv("TF_CONFIG", "not json")
    with pytest.raises(ValueError, match="Expected TF_CONFIG to be JSON"):
        make_strategy("multi_worker")
