"""mtl-keras: multi-task learning for Keras 3 on TensorFlow."""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

__version__ = "0.1.0"

from mtl_keras import balancers, builders, callbacks, data, evaluation, export
from mtl_keras.model import MultiTaskModel
from mtl_keras.tasks import Task

__all__ = [
    "MultiTaskModel",
    "Task",
    "__version__",
    "balancers",
    "builders",
    "callbacks",
    "data",
    "evaluation",
    "export",
]
