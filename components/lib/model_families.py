"""Which model families train fits, and the rule ``auto`` keeps one by.

``model_family`` (a run parameter): ``mlp`` is the user module's own ``build_model`` (for the
default module, its schema-driven network); ``linear`` the same module's model without hidden
layers (an L2-penalized linear or softmax model on the transformed features); ``gbt`` gradient-
boosted trees on the transformed features (``trees``). A module offers the last two by listing
them in ``MODEL_FAMILIES`` (the default module does); any other module has ``mlp`` only, so
``auto`` is its own model and ``gbt``/``linear`` are refused with one line.

``auto`` fits every family the module offers and scores each on the validation slice — the
train split's held-out rows, never the eval split — in label units: the mean absolute error
(regression) or the log loss (classification). The module's own model (``mlp``) is kept unless
another family beats it beyond the slice's noise: its mean per-row loss lower by more than
``Z`` standard errors of the paired per-row differences. Why: a slice of ~50 rows (small
tables) swings by more than the families differ, so the lowest figure alone would pick by
chance — on cars' 50 rows the trees were 4 % lower on the slice and worse on the eval split;
on adult's 1,600 rows they were 9 % lower, far beyond the noise, and better on eval too. Among
the families beyond the noise, the lowest figure; ties keep ``FAMILIES``' order. Standard
library only.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

from components.errors import StageError
from components.parameters import MODEL_FAMILY_CHOICES

AUTO, MLP, GBT, LINEAR = MODEL_FAMILY_CHOICES
FAMILIES = (MLP, GBT, LINEAR)  # the order auto fits them in, and breaks ties by
MODULE_ATTRIBUTE = "MODEL_FAMILIES"  # a module's tuple of the families it offers
Z = 2.0  # standard errors a challenger must beat the module's own model by (about 95 %, one-sided 97.7 %)
RULE = (
    "the module's own model (mlp) unless another family's validation loss (MAE, or log loss, in label "
    f"units) is lower beyond {Z:g} standard errors of the paired per-row differences; then the lowest"
)


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


def _lowest(figures: dict[str, float]) -> str:
    """The family with the lowest figure (finite ones first; ties: FAMILIES' order)."""
    order = {f: i for i, f in enumerate(FAMILIES)}

    def key(family: str) -> tuple[int, float, int]:
        value = figures[family]
        finite = math.isfinite(value)
        return (0 if finite else 1, value if finite else 0.0, order.get(family, len(order)))

    return min(figures, key=key)


def beyond_noise(incumbent: list[float], challenger: list[float]) -> bool:
    """Whether ``challenger``'s per-row losses are lower than ``incumbent``'s beyond ``Z`` standard errors."""
    diffs = [a - b for a, b in zip(incumbent, challenger, strict=True) if math.isfinite(a - b)]
    if len(diffs) < 2:
        return False
    spread = statistics.stdev(diffs)
    mean = statistics.fmean(diffs)
    return mean > 0 and (spread == 0 or mean > Z * spread / math.sqrt(len(diffs)))


def choose(figures: dict[str, float], rows: dict[str, list[float]] | None = None) -> str:
    """The family auto keeps (see the module's docstring).

    ``figures``: the validation figures; ``rows``: each family's per-row validation losses
    (without them: the lowest figure).
    """
    own = next((f for f in FAMILIES if f in figures), None)
    if not rows or own is None or not math.isfinite(figures[own]) or own not in rows:
        return _lowest(figures)
    better = {
        f: v
        for f, v in figures.items()
        if f != own and f in rows and math.isfinite(v) and beyond_noise(rows[own], rows[f])
    }
    return _lowest(better) if better else own
