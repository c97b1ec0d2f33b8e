"""The cron expression of a recurring run, checked offline in KFP's scheduler format.

KFP schedules with robfig/cron and seconds: six fields, seconds first. A standard 5-field cron
gets ``0`` seconds prepended.
"""

from __future__ import annotations

import re

from pipelines.remote.submit_error import SubmitError

# Cron fields of KFP's scheduler (robfig/cron with seconds): name, low, high, named values.
_CRON_FIELDS = (
    ("seconds", 0, 59, ()),
    ("minutes", 0, 59, ()),
    ("hours", 0, 23, ()),
    ("day of month", 1, 31, ()),
    ("month", 1, 12, ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")),
    ("day of week", 0, 6, ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")),
)
_CRON_ITEM = re.compile(r"^(?P<range>\*|\?|(?P<lo>\w+)(?:-(?P<hi>\w+))?)(?:/(?P<step>\d+))?$")


def normalize_cron(expression: str) -> str:
    """KFP's 6-field cron (seconds first), checked field by field; 5-field cron gets ``0`` seconds.

    The server only reports a bad schedule when the recurring run is created — after the run
    itself was already started — so it is checked here, before anything is sent.
    """
    fields = expression.split()
    if len(fields) == 5:
        fields = ["0", *fields]
    if len(fields) != 6:
        raise SubmitError(
            f"cron {expression!r} must have 6 fields (seconds minutes hours day-of-month month "
            f"day-of-week, e.g. '0 0 3 * * *') or 5 (standard cron); it has {len(fields)}"
        )
    for text, (field, low, high, named) in zip(fields, _CRON_FIELDS, strict=True):
        for item in text.split(","):
            if not _cron_item_ok(item.upper(), low, high, named, field.startswith("day")):
                raise SubmitError(f"cron {expression!r}: {item!r} is not a valid {field} ({low}-{high})")
    return " ".join(fields)


def _cron_item_ok(item: str, low: int, high: int, named: tuple[str, ...], question_ok: bool) -> bool:
    m = _CRON_ITEM.match(item)
    if not m or (m["range"] == "?" and not question_ok) or (m["step"] is not None and int(m["step"]) == 0):
        return False
    for token in (m["lo"], m["hi"]):
        if token is None:
            continue
        if token in named:
            continue
        if not token.isdigit() or not low <= int(token) <= high:
            return False
    return True
