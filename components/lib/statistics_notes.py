"""What stands out in one feature across the splits, read from TFDV statistics (the report's notes).

A feature absent from a split or of another type there (red); missing values, a single value,
values only one split has, an identifier-like column, or a bin's or category's share differing
between the splits by ``DIFFERENCE_FLAG`` or more AND by more than sampling noise (amber). A
difference of 10 points or more that sampling noise explains (``distributions.beyond_noise``:
3 eval rows against 17) is a grey note that says so, never a flag.
"""

from __future__ import annotations

from typing import Any

from components.lib import html as h
from components.lib.distributions import (
    OTHER,
    Shared,
    beyond_noise,
    feature_format,
    identifier_like,
    largest_gap,
    missing_fraction,
    shared_bins,
    type_name,
)

DIFFERENCE_FLAG = 0.10  # a bin's or category's share differing by 10 points between splits


class FeatureView:
    """One feature across the splits: its statistics per split, their common bins and what stands out."""

    def __init__(
        self,
        name: str,
        splits: list[str],
        views: dict[str, dict[str, Any]],
        rows: dict[str, int],
        label: str = "",
    ):
        self.name = name
        self.splits = splits
        self.stats = {s: views[s].get(name) for s in splits}
        self.rows = rows
        self.is_label = bool(label) and name == label
        present = [f for f in self.stats.values() if f is not None]
        self.first = present[0]
        self.numeric = self.first.HasField("num_stats")
        self.type = type_name(self.first)
        self.fmt = feature_format(name, present)
        self.notes: list[tuple[str, str]] = []  # (text, "warn" | "bad" | "" for a grey note)
        here = {s: self.here(s) for s in splits}
        self.shared: Shared | None = shared_bins({s: f for s, f in here.items() if f is not None}, self.fmt)
        self.gap = 0.0  # the largest difference of a bin's or value's share between splits
        self._observe()

    def here(self, split: str) -> Any:
        f = self.stats[split]
        if f is None or f.HasField("num_stats") != self.numeric:
            return None
        return f

    def _observe(self) -> None:
        for s, f in self.stats.items():
            if f is None:
                self.notes.append((f"absent from {s}", "bad"))
            elif type_name(f) != self.type:
                self.notes.append((f"{s} has type {type_name(f)}, {self.splits[0]} {self.type}", "bad"))
        missing = {s: missing_fraction(f, self.rows[s]) for s in self.splits if (f := self.here(s))}
        if any(v > 0 for v in missing.values()):
            self.notes.append(
                ("missing " + ", ".join(f"{s} {h.fmt_pct(v)}" for s, v in missing.items()), "warn")
            )
        present = [f for s in self.splits if (f := self.here(s)) is not None]
        if (
            self.numeric
            and present
            and min(f.num_stats.min for f in present) == max(f.num_stats.max for f in present)
        ):
            self.notes.append((f"one value only ({self.fmt(present[0].num_stats.min)})", "warn"))
        elif (
            not self.numeric
            and self.shared
            and any(len([c for c in self.shared.counts[s] if c]) == 1 for s in self.shared.counts)
        ):
            self.notes.append(("one value only", "warn"))
        why = "" if self.is_label else identifier_like(present)
        if why:
            self.notes.append((why, "warn"))
        if not self.numeric and not why:  # an identifier's values are all new: said already
            self._new_values()
        self._flag_difference()

    def _new_values(self) -> None:
        first = self.splits[0]
        if self.shared is None or first not in self.shared.counts:
            return
        known = {v for v, c in zip(self.shared.labels, self.shared.counts[first], strict=True) if c}
        for s in self.splits[1:]:
            if s in self.shared.counts:
                new = [
                    v
                    for v, c in zip(self.shared.labels, self.shared.counts[s], strict=True)
                    if c and v not in known and v != OTHER
                ]
                if new:
                    shown = ", ".join(new[:3]) + (f" and {len(new) - 3} more" if len(new) > 3 else "")
                    self.notes.append((f"values only in {s}: {shown}", "warn"))

    def _flag_difference(self) -> None:
        """Each split against the first on the common bins: flagged when 10 points apart and beyond noise."""
        sh = self.shared
        present = [s for s in self.splits if sh is not None and s in sh.counts]
        if sh is None or len(present) < 2:
            return
        first = present[0]
        for s in present[1:]:
            i, gap = largest_gap(sh, first, s)
            self.gap = max(self.gap, gap / 100.0)
            if gap < 100.0 * DIFFERENCE_FLAG:
                continue
            if beyond_noise(sh.counts[first], sh.counts[s]):
                where = sh.labels[i] if sh.categorical else f"the bin {sh.labels[i]}"
                self.notes.append(
                    (
                        f"splits differ: {where} is {sh.percent(first)[i]:.1f} % of {first}, "
                        f"{sh.percent(s)[i]:.1f} % of {s}",
                        "warn",
                    )
                )
            else:
                self.notes.append(
                    (
                        f"{s} differs by up to {gap:.0f} points, within sampling noise of "
                        f"{sh.totals[s]:,} vs {sh.totals[first]:,} rows",
                        "",
                    )
                )

    @property
    def kind(self) -> str:
        kinds = {k for _, k in self.notes}
        return "bad" if "bad" in kinds else "warn" if "warn" in kinds else ""

    def badges(self) -> str:
        label = h.badge("label", "label") + " " if self.is_label else ""
        return label + " ".join(h.badge(text, kind) for text, kind in self.notes)
