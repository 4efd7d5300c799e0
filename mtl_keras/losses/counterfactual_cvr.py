"""The counterfactual CVR risk of ESCM² over the entire impression space (Wang et al., SIGIR 2022).

H. Wang, T.-W. Chang, T. Liu, J. Huang, Z. Chen, C. Yu, R. Li, W. Chu, "ESCM²: Entire Space Counterfactual
Multi-Task Model for Post-Click Conversion Rate Estimation", SIGIR 2022. See docs/methods.md, "ESCM²".

One head of the model stacks what the risk needs per impression: ``y_pred = [p_cvr, p_ctr]`` (IPS) or
``[p_cvr, p_ctr, ê]`` (DR), with ``p_ctr`` the CTR tower's output used as the propensity of a click and
``ê`` the imputation tower's estimate of the CVR error. The labels are ``[o, r, 0 …]``: ``o`` the click,
``r`` the conversion (0 where ``o = 0``), zero-padded to the head's width. With
``e = −[r log p_cvr + (1 − r) log(1 − p_cvr)]`` and ``q = max(stop_gradient(p_ctr), min_propensity)``:

* IPS: ``o · e / q``;
* DR: ``ê' + o · (e − ê') / q + o · (e' − ê)² / q`` with ``ê' = stop_gradient(ê)`` and
  ``e' = stop_gradient(e)``: the doubly robust risk (its gradient trains the CVR tower, with the imputation
  fixed) plus the imputation loss (its gradient trains the imputation tower, with the error fixed).

Per-example values; the model takes their mean over every impression. The propensity is not trained by
this risk (only by the CTR loss), so the risk cannot be lowered by inflating ``p_ctr``.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from mtl_keras._registry import serializable

#: The estimators of the counterfactual risk.
VARIANTS = ("ips", "dr")
_EPSILON = 1e-7


@serializable
class CounterfactualCVR(keras.losses.Loss):
    """ESCM²'s counterfactual CVR risk, ``variant`` ``"ips"`` or ``"dr"`` (see the module docstring).

    Args:
        variant: ``"ips"`` (inverse propensity score) or ``"dr"`` (doubly robust).
        min_propensity: the propensity is clipped below at this value, in (0, 1], bounding the weights
            ``1 / q`` by ``1 / min_propensity``.
    """

    def __init__(self, variant: str = "ips", min_propensity: float = 0.05, **kwargs: Any) -> None:
        if variant not in VARIANTS:
            raise ValueError(
                f"Expected `variant` to be one of {list(VARIANTS)}. Received: variant={variant!r}"
            )
        bad = isinstance(min_propensity, bool) or not isinstance(min_propensity, (int, float))
        if bad or not 0.0 < float(min_propensity) <= 1.0:
            raise ValueError(
                f"Expected `min_propensity` to be a number in (0, 1]. Received: min_propensity={min_propensity!r}"
            )
        kwargs.setdefault("name", f"counterfactual_cvr_{variant}")
        super().__init__(**kwargs)
        self.variant = variant
        self.min_propensity = float(min_propensity)

    @property
    def width(self) -> int:
        """The width of the head and of its labels."""
        return 2 if self.variant == "ips" else 3

    def call(self, y_true: Any, y_pred: Any) -> Any:
        y_pred = ops.convert_to_tensor(y_pred, "float32")
        y_true = ops.cast(y_true, "float32")
        if y_pred.shape[-1] != self.width:
            raise ValueError(
                f"Expected the {self.variant!r} counterfactual head to have {self.width} columns "
                f"(p_cvr, p_ctr{', imputed error' if self.width == 3 else ''}). "
                f"Received a head of shape {tuple(y_pred.shape)}"
            )
        click, conversion = y_true[:, 0], y_true[:, 1]
        p_cvr = ops.clip(y_pred[:, 0], _EPSILON, 1.0 - _EPSILON)
        propensity = ops.maximum(ops.stop_gradient(y_pred[:, 1]), self.min_propensity)
        error = -(conversion * ops.log(p_cvr) + (1.0 - conversion) * ops.log(1.0 - p_cvr))
        if self.variant == "ips":
            return click * error / propensity
        imputed = y_pred[:, 2]
        fixed_imputed, fixed_error = ops.stop_gradient(imputed), ops.stop_gradient(error)
        risk = fixed_imputed + click * (error - fixed_imputed) / propensity
        imputation = click * ops.square(fixed_error - imputed) / propensity
        return risk + imputation

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "variant": self.variant, "min_propensity": self.min_propensity}
