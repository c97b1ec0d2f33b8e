"""Resource bounds: values that pass their type but would exhaust the machine or crash the process.

The preflight calls these on a local run before anything is written; tune and train call them
at their start (on a cluster the submitting machine knows neither the pod's memory nor the
table), so a refusal is one ``[stage] parameter: problem`` line before any fit:

- ``hyperparameters``: each fixed value has the type of the space's parameter (keras-tuner's
  ``Int``/``Float``/``Choice`` values, or the module's default values) and the built-in names a
  sane range: ``units`` and ``num_layers`` integers >= 1, ``learning_rate`` a number in (0, 1).
  ``{"units": 0}`` aborted the process (exit 134, no line); ``{"learning_rate": "fast"}`` was
  refused only at train, blaming tabular.py. The built-in module's names and types do not
  depend on the data (only the widths searched do), so the preflight checks them fully when
  ``module_file`` is empty; for a user module it checks the built-in names only, and tune
  checks the rest against the module's space.
- ``batch_size``: an estimate of the memory one training step holds, ``BYTES_PER_VALUE`` x
  ``ACTIVATION_FACTOR`` per column per example, must stay under ``MEMORY_SHARE`` of the memory
  available (``/proc/meminfo`` MemAvailable, or the cgroup's limit if lower). Measured: one
  training step of the insurance model (6 features, two layers of 64 units, Adam) grew the
  process by ~950 bytes per example (batches of 200,000 and 1,000,000); the insurance table has
  7 columns (56 bytes of values), so ~17x — 32x leaves room for one-hot inputs and the batch
  tf.data holds (1,792 bytes an example on insurance: on 24 GB available, at most ~6.7 million
  examples a batch). ``batch_size=3000000000`` grew training to 23.5 GB before the kernel
  killed it (exit 137, no message). A batch larger than the training rows is refused by the
  preflight when given explicitly and the CSV is local (rows counted in its first MiB,
  estimated beyond), and clamped to the training rows by tune and train (a console line):
  ``batch_size=100000`` on 888 rows took 287 s instead of 4 s.
- ``train_steps``, ``eval_steps``, ``tuner_steps`` at most ``MAX_STEPS``; ``tuner_trials`` at
  most ``MAX_TRIALS``: bounds against a typo, far above any sensible run.
- the number of feature columns the built-in module reads: its transform fits one TFT analyzer
  per column, and what grows is not the data but the traced TensorFlow graphs (TFT traces the
  ``preprocessing_fn`` once per phase and per SavedModel it writes). Measured on a 1,340-row
  table of number columns: transform's peak above its
  imports was 0.21 GiB at 50 columns, 0.80 GiB at 150 and 3.56 GiB at 500 (a 4.7 MB CSV: 4.2 GiB
  for the process). ``transform_memory`` is that curve plus 1 GiB of imports; a table
  whose estimate exceeds the memory available is refused with the number of columns that fits.
"""

from __future__ import annotations

import difflib
import math
from pathlib import Path
from typing import Any

from components import names
from components.errors import StageError

MAX_STEPS = 10_000_000
MAX_TRIALS = 10_000
BYTES_PER_VALUE = 8
ACTIVATION_FACTOR = 32
MEMORY_SHARE = 0.5
SAMPLE_BYTES = 2**20  # the preflight counts CSV rows in this much of a file, estimates beyond
HYPERPARAMETERS = "hyperparameters"
# The built-in module's (components/modules/tabular.py) parameters: name -> kind.
BUILT_IN = {"learning_rate": "float", "num_layers": "int", "units": "int"}
# Sane ranges of the built-in names, whatever the module: (low, inclusive?, high); None: no bound.
RANGES = {"units": (1, True, None), "num_layers": (1, True, None), "learning_rate": (0, False, 1)}
COUNTS = {
    "train_steps": (names.STAGE_TRAIN, MAX_STEPS, "steps"),
    "eval_steps": (names.STAGE_TRAIN, MAX_STEPS, "steps"),
    "tuner_steps": (names.STAGE_TUNE, MAX_STEPS, "steps"),
    "tuner_trials": (names.STAGE_TUNE, MAX_TRIALS, "trials"),
}


# --- Steps and trials. -----------------------------------------------------------------------
def check_count(name: str, value: int, stage: str | None = None) -> None:
    """``value`` of the count parameter ``name`` is at most its bound (a typo otherwise)."""
    default_stage, limit, unit = COUNTS[name]
    if value > limit:
        raise StageError(
            stage or default_stage, name, f"{value:,} is above the bound of {limit:,} {unit} (a typo?)"
        )


# --- Hyperparameters. ------------------------------------------------------------------------
def kind_of(values: list[Any]) -> str | None:
    """The kind every value is: bool, int, float (numbers) or str; None for a mix."""
    if values and all(isinstance(v, bool) for v in values):
        return "bool"
    if values and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return "int"
    if values and all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return "float"
    if values and all(isinstance(v, str) for v in values):
        return "str"
    return None


def space_kinds(hp: Any) -> dict[str, str | None]:
    """{name: kind} of the parameters registered on a keras-tuner ``HyperParameters``."""
    kinds: dict[str, str | None] = {}
    for p in hp.space:
        cls = type(p).__name__
        if cls in ("Int", "Float", "Boolean"):
            kinds[p.name] = {"Int": "int", "Float": "float", "Boolean": "bool"}[cls]
        elif hasattr(p, "values"):
            kinds[p.name] = kind_of(list(p.values))
        else:
            kinds[p.name] = kind_of([getattr(p, "value", None)])
    return kinds


def value_kinds(values: dict[str, Any]) -> dict[str, str | None]:
    """{name: kind} of a module's default values."""
    return {k: kind_of([v]) for k, v in values.items()}


def _requirement(name: str, kind: str | None) -> str:
    words = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string"}
    what = words.get(kind or "", "")
    bound = RANGES.get(name)
    if bound is None:
        return what
    low, inclusive, high = bound
    if high is None:
        return f"{what} {'≥' if inclusive else '>'} {low}"
    return f"{what} between {low} and {high} (exclusive)"


def _fits(name: str, value: Any, kind: str | None) -> bool:  # noqa: ANN401
    number = isinstance(value, int | float) and not isinstance(value, bool)
    ok = {
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": number and math.isfinite(value),
        "bool": isinstance(value, bool),
        "str": isinstance(value, str),
    }.get(kind or "", True)
    if not ok or name not in RANGES:
        return ok
    if not number:
        return False
    low, inclusive, high = RANGES[name]
    above = value >= low if inclusive else value > low
    return above and (high is None or value < high)


def check_hyperparameters(
    values: dict[str, Any], kinds: dict[str, str | None] | None, stage: str, module: str = "the module"
) -> None:
    """Each fixed value is a known name of ``kinds`` (None: any name), of its kind, in its range.

    The built-in names (``RANGES``) are held to their range and type whatever ``kinds`` says.
    """
    for name, value in values.items():
        if kinds is not None and name not in kinds:
            close = difflib.get_close_matches(name, list(kinds), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            known = ", ".join(sorted(kinds))
            raise StageError(
                stage, HYPERPARAMETERS, f"{name!r} is not a parameter of {module} ({known}){hint}"
            )
        kind = BUILT_IN.get(name) if name in RANGES else (kinds or {}).get(name)
        if not _fits(name, value, kind):
            raise StageError(
                stage, HYPERPARAMETERS, f"{name!r} must be {_requirement(name, kind)}, got {value!r}"
            )


# --- Batch size: memory and rows. ------------------------------------------------------------
def _read_int(path: str) -> int | None:
    try:
        text = Path(path).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None  # "max": no limit


def available_memory() -> int | None:
    """Bytes this process may still use: MemAvailable, or the cgroup's room if smaller (None: unknown)."""
    found = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    for limit_file, usage_file in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
    ):
        limit = _read_int(limit_file)
        if limit is not None and limit < 2**60:
            found.append(max(0, limit - (_read_int(usage_file) or 0)))
    return min(found) if found else None


def bytes_per_example(columns: int) -> int:
    return max(1, columns) * BYTES_PER_VALUE * ACTIVATION_FACTOR


def _size(n: float) -> str:
    if n < 2**20:
        return f"{n / 2**10:,.0f} KiB"
    return f"{n / 2**30:,.1f} GiB" if n >= 2**30 else f"{n / 2**20:,.0f} MiB"


def check_batch_memory(batch: int, columns: int, stage: str, available: int | None = None) -> None:
    """A training step on ``batch`` examples of ``columns`` columns fits in MEMORY_SHARE of the memory."""
    available = available_memory() if available is None else available
    if available is None:
        return
    each = bytes_per_example(columns)
    room = available * MEMORY_SHARE
    if batch * each > room:
        raise StageError(
            stage,
            "batch_size",
            f"{batch:,} examples of {columns} columns need ≈{_size(batch * each)} of memory "
            f"(≈{each:,} bytes each), over half of the {_size(available)} available: "
            f"at most {int(room // each):,}",
        )


def csv_rows(files: list[Path]) -> tuple[int, bool]:
    """(data rows, exact?) of local CSV files, reading at most SAMPLE_BYTES of each.

    A file read to its end is counted; a bigger one is estimated from the mean length of the
    lines read. A header line per file is not counted.
    """
    total, exact = 0, True
    for file in files:
        size = file.stat().st_size
        with open(file, "rb") as f:
            head = f.read(SAMPLE_BYTES)
        lines = head.count(b"\n") + (1 if head and not head.endswith(b"\n") else 0)
        if len(head) < size:
            exact = False
            lines = round(size * max(head.count(b"\n"), 1) / len(head))
        total += max(lines - 1, 0)
    return total, exact


def check_batch_rows(batch: int, rows: int, exact: bool, stage: str, where: str) -> None:
    """A batch holds at most every row of the data (the preflight's check of a given batch_size)."""
    if batch > rows:
        about = "" if exact else "≈"
        raise StageError(
            stage,
            "batch_size",
            f"{batch:,} is more than the {about}{rows:,} rows of {where}; "
            f"a batch holds at most the training rows (about two thirds of them under the default split)",
        )


def clamp_batch(batch: int, train_rows: int | None, stage: str) -> int:
    """``batch``, or the number of training rows when it is larger (with a console line)."""
    if train_rows and batch > train_rows:
        print(
            f"[{stage}] batch_size: {batch:,} is more than the {train_rows:,} training rows; "
            f"batches of {train_rows:,} instead",
            flush=True,
        )
        return int(train_rows)
    return batch


def at_start(stage: str, counts: dict[str, int], batch: int, train_rows: int | None, columns: int) -> int:
    """Tune's and train's checks before any fit: the counts, then the batch clamped and within memory."""
    for name, value in counts.items():
        check_count(name, value, stage)
    batch = clamp_batch(batch, train_rows, stage)
    check_batch_memory(batch, columns, stage)
    return batch


# --- Columns: the transform graph of the built-in module. ------------------------------------
TRANSFORM_BASE_BYTES = 2**30  # TensorFlow, TFT and Beam imported (0.7 GiB measured), and Beam's own
TRANSFORM_BYTES_PER_COLUMN = int(4.7 * 2**20)  # one z-score analyzer's share of the traced graphs
TRANSFORM_BYTES_PER_COLUMN_PAIR = 5_500  # and the slightly faster than linear growth (0.21/0.80/3.56 GiB)


def transform_memory(columns: int) -> int:
    """Bytes the transform stage's process is estimated to peak at, the built-in module on ``columns``."""
    columns = max(0, columns)
    return TRANSFORM_BASE_BYTES + columns * (
        TRANSFORM_BYTES_PER_COLUMN + columns * TRANSFORM_BYTES_PER_COLUMN_PAIR
    )


def feature_columns(header: list[str], label: str, features: str, exclude_features: str) -> int:
    """How many columns the built-in module would read: ``features``, else the header's others."""
    chosen = [c.strip() for c in features.split(",") if c.strip()]
    if chosen:
        return len(set(chosen) - {label})
    excluded = {c.strip() for c in exclude_features.split(",")} | {label}
    return len({c.strip() for c in header} - excluded)


def check_transform_memory(columns: int, stage: str, available: int | None = None) -> None:
    """The built-in module's transform on ``columns`` feature columns fits in the memory available."""
    available = available_memory() if available is None else available
    need = transform_memory(columns)
    if available is None or need <= available:
        return
    most = 0
    while transform_memory(most + 1) <= available:
        most += 1
    each = (need - TRANSFORM_BASE_BYTES) / max(columns, 1)
    raise StageError(
        stage,
        "columns",
        f"{columns:,} feature columns need ≈{_size(need)} of memory in transform with the built-in module "
        f"(one analyzer per column, ≈{_size(each)} each), over the {_size(available)} "
        f"available: at most {most:,}; choose columns with features= or exclude_features=, or give "
        "the stage more memory",
    )
