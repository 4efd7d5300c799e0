"""Test session set-up: TensorFlow quiet, and the CPU split into two logical devices before TF starts, so
MirroredStrategy tests can run two replicas on one CPU (docs/methods.md, "Distribution")."""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf

_cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    _cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
)


from collections.abc import Iterator  # noqa: E402

import keras  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(scope="session")
def mirrored_strategy() -> tf.distribute.MirroredStrategy:
    """One MirroredStrategy over the two logical CPUs for the whole session.

    TensorFlow caches collective instances by key per process, and a second MirroredStrategy over the same
    devices starts its keys again, so two strategies in one process collide ("Shape mismatch in the
    collective instance"). Tests share this one.
    """
    devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    if len(devices) < 2:
        pytest.skip("needs 2 logical CPU devices")
    return tf.distribute.MirroredStrategy(devices[:2])


@pytest.fixture
def mixed_policy() -> Iterator[None]:
    """The global ``mixed_float16`` policy for one test, reset to float32 afterwards."""
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy("float32")
