"""`TextEncoder`: raw strings through a keras-hub preprocessor and backbone to one vector per example.

Built by :func:`~mtl_keras.builders.keras_hub_backbone.keras_hub_backbone`. Its config is the two specs of
:func:`~mtl_keras.builders.keras_hub_backbone.normalize_spec` (class names and constructor arguments, the
tokenizer's vocabulary inline, or a preset name), not the keras-hub objects' own configs: a keras-hub
tokenizer keeps its vocabulary out of its config (as an asset), so rebuilding from the specs is what lets
``clone_model`` (the single-task baselines' copies) and ``.keras`` loading make the same layer. A preset is
fetched again when such a copy is made. String ops: TensorFlow backend only.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from mtl_keras._registry import serializable


@serializable
class TextEncoder(keras.layers.Layer):
    """Strings ``(batch,)`` or ``(batch, 1)`` -> preprocessor -> backbone -> ``(batch, hidden)``.

    Args:
        backbone_spec, preprocessor_spec: from :func:`~mtl_keras.builders.keras_hub_backbone.normalize_spec`.
        output: the key of the backbone's output dict (None: ``pooled_output`` if there is one, else
            ``sequence_output``); must be None when the backbone returns one tensor. Only the backbone's
            layers that reach this output are kept (``self.backbone``), so every variable is trained.
        pooling: ``"mean"`` (over the preprocessor's ``padding_mask``) or ``"first"``, for a
            ``(batch, length, hidden)`` output.
    """

    def __init__(
        self,
        backbone_spec: dict[str, Any],
        preprocessor_spec: dict[str, Any],
        output: str | None = None,
        pooling: str = "mean",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        from mtl_keras.builders.keras_hub_backbone import POOLINGS, build_parts

        if pooling not in POOLINGS:
            raise ValueError(
                f"Expected `pooling` to be one of {list(POOLINGS)}. Received: pooling={pooling!r}"
            )
        self.backbone_spec = dict(backbone_spec)
        self.preprocessor_spec = dict(preprocessor_spec)
        self.pooling = pooling
        self.preprocessor, backbone = build_parts(self.backbone_spec, self.preprocessor_spec)
        self.preprocessor.trainable = False
        outputs = backbone.output
        if isinstance(outputs, dict):
            keys = sorted(outputs)
            if output is None:
                output = "pooled_output" if "pooled_output" in outputs else "sequence_output"
            if output not in outputs:
                raise ValueError(
                    f"Backbone {type(backbone).__name__} has no output {output!r}; expected `output` to be "
                    f"one of {keys}."
                )
            rank = len(outputs[output].shape)
            # Only the layers that reach the chosen output: the pooler of a BERT whose sequence output
            # is used would be variables no task's loss depends on (counted shared, never updated).
            trimmed = keras.Model(backbone.input, outputs[output], name=f"{backbone.name}_{output}")
        else:
            if output is not None:
                raise ValueError(
                    f"Backbone {type(backbone).__name__} returns one tensor, not a dict; expected "
                    f"`output` to be None. Received: output={output!r}"
                )
            rank = len(outputs.shape)
            trimmed = backbone
        if rank not in (2, 3):
            raise ValueError(
                f"Expected the backbone output {output or 'tensor'!r} to be (batch, hidden) or (batch, length, "
                f"hidden). Received rank {rank}."
            )
        #: the keras-hub backbone's class name, and the model from its inputs to the chosen output
        self.backbone_class = type(backbone).__name__
        self.backbone = trimmed
        self.output_key = output
        self.sequence = rank == 3
        self.built = True

    def build(self, input_shape: Any) -> None:
        self.built = True

    def call(self, inputs: Any) -> Any:
        text = tf.convert_to_tensor(inputs)
        if text.shape.rank == 2:
            text = tf.squeeze(text, axis=-1)
        features = self.preprocessor(text)
        wanted = self.backbone.input
        value = self.backbone({k: features[k] for k in wanted} if isinstance(wanted, dict) else features)
        if not self.sequence:
            return value
        if self.pooling == "first":
            return value[:, 0, :]
        mask = tf.cast(features["padding_mask"], value.dtype)[:, :, None]
        return tf.reduce_sum(value * mask, axis=1) / tf.maximum(tf.reduce_sum(mask, axis=1), 1.0)

    def compute_output_shape(self, input_shape: Any) -> tuple[Any, ...]:
        return (input_shape[0], self.backbone.output.shape[-1])

    def get_config(self) -> dict[str, Any]:
        config: dict[str, Any] = super().get_config()
        config.update(
            backbone_spec=self.backbone_spec,
            preprocessor_spec=self.preprocessor_spec,
            output=self.output_key,
            pooling=self.pooling,
        )
        return config
