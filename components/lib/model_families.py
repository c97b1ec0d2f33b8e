"""Which model families train fits, and the rule ``auto`` keeps one by.

``model_family`` (a run parameter): ``mlp`` is the user module's own ``build_model`` (for the
default module, its schema-driven network); ``linear`` the same module's model without hidden
layers (an L2-penalized linear or softmax model on the transformed features); ``gbt`` gradient-
boosted trees on the transformed features (``trees``). A module offers the last two by listing
them in ``MODEL_FAMILIES`` (the default module does); any other module has ``mlp`` only, so
``auto`` is its own model and ``gbt``/``linear`` are refused with one line.

``auto`` fits every family the module offers and keeps the one with the best figure on the
validation slice — the train split's held-out rows, never the eval split — in label units: the
mean absolute error (regression) or the log loss (classification). A tie keeps the earlier family
of ``FAMILIES``' order. Standard library only.
"""

from __future__ import annotations

from typing import Any

from components.errors import StageError
from components.parameters import MODEL_FAMILY_CHOICES

AUTO, MLP, GBT, LINEAR = MODEL_FAMILY_CHOICES
FAMILIES = (MLP, GBT, LINEAR)  # the order auto fits them in, and breaks ties by
MODULE_ATTRIBUTE = "MODEL_FAMILIES"  # a module's tuple of the families it offers


def offered(module: Any) -> tuple[str, ...]:
    """The families ``module`` offers: its ``MODEL_FAMILIES`` (known ones, in FAMILIES' order), else mlp."""
    listed = getattr(module, MODULE_ATTRIBUTE, None) or (MLP,)
    return tuple(f for f in FAMILIES if f in listed) or (MLP,)


def candidates(module: Any, requested: str, stage: str, module_name: str = "the module") -> list[str]:
    """The families to fit for ``requested``; a one-line StageError for an unknown or unoffered one."""
    if requested not in MODEL_FAMILY_CHOICES:
        raise StageError(
            stage,
            None,
            f"model_family must be one of {', '.join(MODEL_FAMILY_CHOICES)}, got {requested!r}",
        )
    families = offered(module)
    if requested == AUTO:
        return list(families)
    if requested not in families:
        raise StageError(
            stage,
            None,
            f"model_family={requested!r} is not offered by {module_name} (it offers {', '.join(families)}); "
            "the default module (empty module_file) offers mlp, gbt and linear",
        )
    return [requested]


def choose(figures: dict[str, float]) -> str:
    """The family with the lowest validation figure (finite ones first; ties: FAMILIES' order)."""
    order = {f: i for i, f in enumerate(FAMILIES)}

    def key(family: str) -> tuple[int, float, int]:
        value = figures[family]
        finite = value == value and value not in (float("inf"), float("-inf"))
        return (0 if finite else 1, value if finite else 0.0, order.get(family, len(order)))

    return min(figures, key=key)
