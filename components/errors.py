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
