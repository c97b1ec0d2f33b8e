"""The one error type stages raise for bad input: it names the stage, the file and the problem."""

from __future__ import annotations


class StageError(Exception):
    """Bad input or a refused operation in one pipeline stage.

    The message always reads ``[stage] file: problem`` so a user who sees only the last line
    of a pod log knows where to look and what to fix.
    """

    def __init__(self, stage: str, path: str | None, problem: str) -> None:
        self.stage = stage
        self.path = path
        self.problem = problem
        where = f" {path}:" if path else ""
        super().__init__(f"[{stage}]{where} {problem}")


def stage_error_in(exc: BaseException) -> StageError | None:
    """The StageError behind ``exc``, if one is in its chain of causes.

    Frameworks re-raise a stage's own error wrapped in theirs (Beam: ``RuntimeError: ...
    [while running 'Read']``; keras-tuner: ``RuntimeError: ... trials failed``); the stage
    reports the original, which names the file and the problem.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, StageError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None
