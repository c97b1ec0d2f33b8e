"""SubmitError, the one exception of a server submission, and the one-line rule of its messages.

Shared by every part of the submission (:mod:`pipelines.remote.submit`, :mod:`pipelines.remote.auth`,
:mod:`pipelines.remote.errors`, :mod:`pipelines.remote.cron`); it imports none of them.
"""

from __future__ import annotations

# Server messages can be whole stack traces; the one line we show is cut to this length.
MAX_MESSAGE_CHARS = 300


class SubmitError(Exception):
    """A submission that did not happen (or did not finish), in one short line of text."""


def _one_line(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
