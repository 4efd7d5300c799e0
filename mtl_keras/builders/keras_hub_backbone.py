"""A keras-hub text encoder and its string preprocessor as the shared start of any builder.

:func:`keras_hub_backbone` returns a :class:`~mtl_keras.builders.backbones.Backbone` whose model is a
:class:`~mtl_keras.layers.text_encoder.TextEncoder`: raw strings ``(batch, 1)`` go through the keras-hub
preprocessor (tokenizer, packing to ``sequence_length``) and the keras-hub backbone inside the model, and
the backbone's dict output is reduced to one ``(batch, hidden)`` representation that the builder continues
from. So the model, and its SavedModel export, take raw strings. All backbone variables are shared.

Two forms, in Python and in recipes (``backbone: {keras_hub: ...}``):

* a preset name, loaded with ``keras_hub.models.Backbone.from_preset`` and
  ``keras_hub.models.TextClassifierPreprocessor.from_preset`` (downloaded on first use)::

      keras_hub_backbone("bert_tiny_en_uncased", sequence_length=64)

* an offline configuration (no download: tests, or a model trained from scratch)::

      keras_hub_backbone(
          {"class": "BertBackbone", "config": {"num_layers": 1, "num_heads": 2, "hidden_dim": 16,
                                               "intermediate_dim": 32, "max_sequence_length": 16}},
          preprocessor={"class": "BertTextClassifierPreprocessor", "sequence_length": 16,
                        "tokenizer": {"class": "BertTokenizer", "vocabulary": ["[PAD]", ..., "cat"]}},
      )

  ``class`` names a class of ``keras_hub.models`` (the backbone and the preprocessor) or
  ``keras_hub.tokenizers`` (the tokenizer); ``config`` (backbone) and the other keys (preprocessor,
  tokenizer) are the class's constructor arguments. A tokenizer's ``vocabulary`` is a list of tokens or a
  path to a file (``.txt``: one token a line; ``.json``: a JSON mapping or list), read once here so the
  model's config holds the tokens themselves. The backbone's ``vocabulary_size`` defaults to the tokenizer's.

``output`` picks the backbone output: ``"pooled_output"`` (the default when the backbone has it) or any
other key of its output dict; a ``(batch, length, hidden)`` output is pooled by ``pooling``: ``"mean"``
(over the non-padding positions, the preprocessor's ``padding_mask``) or ``"first"`` (the first token).

keras-hub and tensorflow-text are the optional extra ``hub`` (``pip install 'mtl-keras[hub]'``). The
exported SavedModel's tokenizer runs tensorflow-text ops: loading it needs ``import tensorflow_text`` first
(the export check does so), and the stock TF Serving binary, which lacks those ops, cannot serve it.
"""

from __future__ import annotations

import difflib
import inspect
import json
import os
from collections.abc import Mapping
from typing import Any

import keras

from mtl_keras.builders.backbones import Backbone

#: How a ``(batch, length, hidden)`` backbone output becomes one vector per example.
POOLINGS = ("mean", "first")
#: The extra that installs keras-hub and tensorflow-text.
INSTALL_HINT = "pip install 'mtl-keras[hub]'"


def import_keras_hub() -> Any:
    """``keras_hub``, or an ImportError saying how to install it (with tensorflow-text)."""
    try:
        import keras_hub
    except ImportError as error:
        raise ImportError(
            f"A keras_hub backbone needs the keras-hub and tensorflow-text packages ({error}); install them "
            f"with: {INSTALL_HINT}"
        ) from None
    return keras_hub


def _class(module: Any, module_name: str, name: Any, base: type, what: str) -> Any:
    """``module.<name>``, a subclass of ``base``; otherwise a ValueError with the close matches."""
    available = sorted(
        n
        for n in dir(module)
        if isinstance(getattr(module, n), type) and issubclass(getattr(module, n), base)
    )
    found = getattr(module, str(name), None) if isinstance(name, str) else None
    if not (isinstance(found, type) and issubclass(found, base)):
        close = difflib.get_close_matches(str(name), available, n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ValueError(
            f"Unknown {what} class {name!r}: expected a {base.__name__} subclass of {module_name}.{hint} "
            f"Expected one of: {', '.join(available)}."
        )
    return found


def _mapping(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"Expected `{what}` to be a mapping. Received: {what}={value!r}")
    return {str(k): v for k, v in value.items()}


def _vocabulary(value: Any) -> Any:
    """A tokenizer's vocabulary: a list or mapping as given, a file's contents for a path."""
    if not isinstance(value, str):
        return value
    if not os.path.isfile(value):
        raise ValueError(
            f"Expected `tokenizer.vocabulary` to be a list of tokens or a file. Received: {value!r}"
        )
    with open(value, encoding="utf-8") as handle:
        if value.endswith(".json"):
            return json.load(handle)
        return [line.rstrip("\n") for line in handle if line.rstrip("\n")]


def _known_kwargs(cls: type, given: Mapping[str, Any], what: str) -> None:
    """The keys of ``given`` are constructor arguments of ``cls`` (or it takes ``**kwargs``)."""
    parameters = inspect.signature(cls.__init__).parameters  # type: ignore[misc]
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        names = [n for n in parameters if n not in ("self", "kwargs")]
        # keras-hub classes pass **kwargs to keras.layers.Layer: check against their own arguments and its
        allowed = set(names) | {"name", "dtype", "trainable"}
    else:
        names = [n for n in parameters if n != "self"]
        allowed = set(names)
    for key in given:
        if key not in allowed:
            close = difflib.get_close_matches(key, sorted(allowed), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(
                f"Unknown argument {key!r} of {what} {cls.__name__}.{hint} Expected some of: {', '.join(names)}."
            )


def normalize_spec(
    backbone: Any,
    preprocessor: Any = None,
    *,
    sequence_length: int | None = None,
    load_weights: bool = True,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The JSON-able ``(backbone spec, preprocessor spec)`` a :class:`TextEncoder` is built from, checked.

    ``backbone`` is a preset name or ``{"class": ..., "config": {...}}``; ``preprocessor`` None (the
    preset's, for a preset) or ``{"class": ..., "tokenizer": {"class": ..., ...}, ...}``. Errors name the
    key and what was expected.
    """
    hub = import_keras_hub()
    if isinstance(backbone, str):
        if not backbone:
            raise ValueError("Expected `keras_hub` to be a preset name or a mapping. Received: ''")
        backbone_spec: dict[str, Any] = {"preset": backbone, "load_weights": bool(load_weights)}
        if preprocessor is None:
            preprocessor_spec: dict[str, Any] = {"preset": backbone}
            if sequence_length is not None:
                preprocessor_spec["sequence_length"] = int(sequence_length)
            return backbone_spec, preprocessor_spec
    else:
        fields = _mapping(backbone, "keras_hub")
        unknown = sorted(set(fields) - {"class", "config"})
        if unknown or "class" not in fields:
            raise ValueError(
                "Expected `keras_hub` to be a preset name or {class: <keras_hub.models backbone class>, "
                f"config: {{...}}}}. Received keys: {sorted(fields)}"
            )
        _class(hub.models, "keras_hub.models", fields["class"], hub.models.Backbone, "keras_hub backbone")
        backbone_spec = {"class": fields["class"], "config": _mapping(fields.get("config") or {}, "config")}
        if preprocessor is None:
            raise ValueError(
                "A keras_hub backbone given by class needs a `preprocessor` ({class: <keras_hub.models "
                "preprocessor class>, tokenizer: {class: ..., vocabulary: ...}, sequence_length: ...}); "
                "only a preset brings its own."
            )
    fields = _mapping(preprocessor, "preprocessor")
    if "preset" in fields:
        unknown = sorted(set(fields) - {"preset", "sequence_length"})
        if unknown:
            raise ValueError(f"A preset preprocessor takes only `sequence_length`. Received keys: {unknown}")
        return backbone_spec, fields
    if "class" not in fields or "tokenizer" not in fields:
        raise ValueError(
            "Expected `preprocessor` to be {class: <keras_hub.models preprocessor class>, tokenizer: "
            f"{{class: ..., vocabulary: ...}}, ...}} or {{preset: <name>}}. Received keys: {sorted(fields)}"
        )
    preprocessor_class = _class(
        hub.models, "keras_hub.models", fields["class"], hub.models.Preprocessor, "keras_hub preprocessor"
    )
    tokenizer = _mapping(fields["tokenizer"], "preprocessor.tokenizer")
    if "class" not in tokenizer:
        raise ValueError(
            f"Expected `preprocessor.tokenizer` to name its `class`. Received keys: {sorted(tokenizer)}"
        )
    tokenizer_class = _class(
        hub.tokenizers,
        "keras_hub.tokenizers",
        tokenizer["class"],
        hub.tokenizers.Tokenizer,
        "keras_hub tokenizer",
    )
    tokenizer_args = {k: v for k, v in tokenizer.items() if k != "class"}
    _known_kwargs(tokenizer_class, tokenizer_args, "tokenizer")
    if "vocabulary" in tokenizer_args:
        tokenizer_args["vocabulary"] = _vocabulary(tokenizer_args["vocabulary"])
    preprocessor_args = {k: v for k, v in fields.items() if k not in ("class", "tokenizer")}
    if sequence_length is not None:
        preprocessor_args.setdefault("sequence_length", int(sequence_length))
    _known_kwargs(preprocessor_class, preprocessor_args, "preprocessor")
    preprocessor_spec = {
        "class": fields["class"],
        "tokenizer": {"class": tokenizer["class"], **tokenizer_args},
        **preprocessor_args,
    }
    if "class" in backbone_spec:
        backbone_class = getattr(hub.models, backbone_spec["class"])
        _known_kwargs(backbone_class, backbone_spec["config"], "backbone")
    return backbone_spec, preprocessor_spec


def _from_preset(cls: Any, preset: str, **options: Any) -> Any:
    """``cls.from_preset(preset, **options)``; an unknown or unreachable preset is a ValueError naming it."""
    try:
        return cls.from_preset(preset, **options)
    except (ValueError, OSError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(
            f"Cannot load keras_hub preset {preset!r} with {cls.__name__}.from_preset (expected a built-in "
            f"preset name such as 'bert_tiny_en_uncased', a 'kaggle://' or 'hf://' handle, or a local preset "
            f"directory; a download needs network access on first use): {first}"
        ) from None


def build_parts(backbone_spec: Mapping[str, Any], preprocessor_spec: Mapping[str, Any]) -> tuple[Any, Any]:
    """The keras-hub ``(preprocessor, backbone)`` of two specs from :func:`normalize_spec`."""
    hub = import_keras_hub()
    if "preset" in preprocessor_spec:
        options = {k: v for k, v in preprocessor_spec.items() if k != "preset"}
        preprocessor = _from_preset(
            hub.models.TextClassifierPreprocessor, preprocessor_spec["preset"], **options
        )
    else:
        tokenizer_spec = dict(preprocessor_spec["tokenizer"])
        tokenizer_class = getattr(hub.tokenizers, tokenizer_spec.pop("class"))
        try:
            tokenizer = tokenizer_class(**tokenizer_spec)
            options = {k: v for k, v in preprocessor_spec.items() if k not in ("class", "tokenizer")}
            preprocessor = getattr(hub.models, preprocessor_spec["class"])(tokenizer, **options)
        except (TypeError, ValueError) as error:
            raise ValueError(
                f"Cannot build the keras_hub preprocessor {preprocessor_spec['class']} with tokenizer "
                f"{tokenizer_class.__name__}: {error}"
            ) from None
    if "preset" in backbone_spec:
        backbone = _from_preset(
            hub.models.Backbone, backbone_spec["preset"], load_weights=backbone_spec.get("load_weights", True)
        )
    else:
        backbone_class = getattr(hub.models, backbone_spec["class"])
        config = dict(backbone_spec["config"])
        takes_vocabulary = "vocabulary_size" in inspect.signature(backbone_class.__init__).parameters
        if takes_vocabulary and "vocabulary_size" not in config:
            config["vocabulary_size"] = int(preprocessor.tokenizer.vocabulary_size())
        try:
            backbone = backbone_class(**config)
        except (TypeError, ValueError) as error:
            raise ValueError(
                f"Cannot build keras_hub.models.{backbone_class.__name__}({config}): {error}"
            ) from None
    return preprocessor, backbone


def keras_hub_backbone(
    backbone: str | Mapping[str, Any],
    preprocessor: Mapping[str, Any] | None = None,
    *,
    output: str | None = None,
    pooling: str = "mean",
    sequence_length: int | None = None,
    load_weights: bool = True,
    inputs: Any = None,
    trainable: bool = True,
) -> Backbone:
    """A keras-hub text encoder with its preprocessor, taking raw strings, as a :class:`Backbone`.

    Args:
        backbone: a preset name (``"bert_tiny_en_uncased"``) or ``{"class": ..., "config": {...}}``.
        preprocessor: None for a preset's own, or ``{"class": ..., "tokenizer": {...}, ...}`` (see the
            module docstring), or ``{"preset": name, "sequence_length": n}``.
        output: the key of the backbone's output dict to use (default ``"pooled_output"`` when it has one,
            otherwise ``"sequence_output"``).
        pooling: ``"mean"`` or ``"first"``, for a ``(batch, length, hidden)`` output.
        sequence_length: the preprocessor's sequence length (a preset's default otherwise).
        load_weights: a preset's pretrained weights (False: its architecture, randomly initialised).
        inputs: what feeds the encoder: default one string input ``(batch, 1)`` named ``text``; or
            :class:`~mtl_keras.builders.inputs.RawFeatures` with one ``text`` column.
        trainable: False freezes the encoder.
    """
    from mtl_keras.layers.text_encoder import TextEncoder

    backbone_spec, preprocessor_spec = normalize_spec(
        backbone, preprocessor, sequence_length=sequence_length, load_weights=load_weights
    )
    encoder = TextEncoder(
        backbone_spec, preprocessor_spec, output=output, pooling=pooling, name="text_encoder"
    )
    if inputs is None:
        inputs = keras.Input(shape=(1,), dtype="string", name="text")
    return Backbone(encoder, inputs, trainable=trainable)


__all__ = [
    "INSTALL_HINT",
    "POOLINGS",
    "build_parts",
    "import_keras_hub",
    "keras_hub_backbone",
    "normalize_spec",
]
