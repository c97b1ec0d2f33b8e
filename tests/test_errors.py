"""StageError: one message shape everywhere, and found again behind a framework's own error."""

from __future__ import annotations

from components.errors import StageError, stage_error_in


def test_message_names_stage_file_and_problem():
    assert str(StageError("transform", "/data/x.gz", "cannot read")) == "[transform] /data/x.gz: cannot read"
    assert str(StageError("tune", None, "trials must be positive")) == "[tune] trials must be positive"


def test_stage_error_is_found_behind_wrapping_errors():
    original = StageError("transform", "/data/x.gz", "cannot read the examples: truncated")
    try:
        try:
            raise original
        except StageError as e:
            raise RuntimeError("... [while running 'Readtrain']") from e  # what Beam raises
    except RuntimeError as wrapped:
        assert stage_error_in(wrapped) is original
    try:
        try:
            raise original
        except StageError:
            raise ValueError("raised while handling it")  # noqa: B904 (an implicit __context__)
    except ValueError as wrapped:
        assert stage_error_in(wrapped) is original


def test_no_stage_error_in_an_unrelated_chain_even_a_cyclic_one():
    a, b = RuntimeError("a"), ValueError("b")
    a.__cause__, b.__cause__ = b, a
    assert stage_error_in(a) is None
