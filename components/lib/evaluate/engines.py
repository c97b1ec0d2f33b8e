"""The ``engine`` parameter: its values, and the rule that picks the native engine or TFMA's Beam."""

from __future__ import annotations

from pathlib import Path

from components.errors import StageError
from components.lib.beam import runs_in_process
from components.lib.evaluate.keys import STAGE
from components.lib.saved_model import signature_names

ENGINE_AUTO, ENGINE_NATIVE, ENGINE_TFMA = "auto", "native", "tfma"
ENGINES = (ENGINE_AUTO, ENGINE_NATIVE, ENGINE_TFMA)
# The signatures TFMA's TransformedFeaturesExtractor calls when a model has them: TFMA would then
# slice on their outputs, which the native engine does not do.
TFMA_PREPROCESSING_SIGNATURES = ("transformed_features", "transformed_labels")


def choose_engine(engine: str, beam_args: str, model_dirs: list[Path]) -> str:
    """``"native"`` or ``"tfma"`` for the ``engine`` parameter.

    ``auto``: the native engine when Beam would run in this process anyway (the one rule,
    ``beam.runs_in_process``), TFMA's Beam pipeline for anything else (worker processes,
    Dataflow, Flink, Spark: the path that scales out), and TFMA also when a model has a
    signature that TFMA would slice on (native cannot).
    """
    choice = (engine or ENGINE_AUTO).strip().lower()
    if choice not in ENGINES:
        raise StageError(STAGE, None, f"engine {engine!r} is unknown; one of {list(ENGINES)}")
    if choice == ENGINE_TFMA:
        return ENGINE_TFMA
    for model_dir in model_dirs:
        found = sorted(signature_names(model_dir) & set(TFMA_PREPROCESSING_SIGNATURES))
        if found and choice == ENGINE_NATIVE:
            raise StageError(
                STAGE,
                str(model_dir),
                f"the model has TFMA preprocessing signature(s) {found}, which TFMA slices on and the "
                f"native engine does not: use engine {ENGINE_TFMA!r}",
            )
        if found:
            return ENGINE_TFMA
    if choice == ENGINE_NATIVE:
        return ENGINE_NATIVE
    return ENGINE_NATIVE if runs_in_process(beam_args, STAGE) else ENGINE_TFMA
