"""mtl-keras: multi-task learning for Keras 3 on TensorFlow."""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from mtl_keras import balancers, builders  # noqa: E402
from mtl_keras.model import MultiTaskModel  # noqa: E402
from mtl_keras.tasks import Task  # noqa: E402

__version__ = "0.1.0"

__all__ = ["MultiTaskModel", "Task", "balancers", "builders", "__version__"]
