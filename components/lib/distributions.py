"""Two splits' distributions of one feature on the SAME bins, read from TFDV statistics.

TFDV gives each split its own histogram: ten equal-width buckets over that split's own min ..
max, computed from its quantile sketch, a bucket holding the values in ``(low, high]`` (the first
also its ``low``). Overlaying two such histograms, or comparing them bin by bin, compares
different intervals: cars' ``Cylinders`` (3, 4, 5, 6, 8) puts 4 in train's ``(3.5, 4]`` and, in
an eval split without a 3, in ``[4, 4.4]``, so a shared axis showed 53.2 % against 0 % where the
real shares are 53.2 % and 47.5 %. Here every split is re-binned onto common bins:

- text (``string_stats``): one bin per value (the rank histogram or the top values), the rest
  as ``(other values)``;
- an integer feature whose values span fewer than ``DISCRETE_SPAN`` integers in every split (a
  count, a class, a cylinder count): one bin per integer value, drawn as categories. Each split's
  buckets are then narrower than 1, so each holds at most one integer and its count is exactly
  that value's (to the sketch's rounding);
- other integers: bins of whole integers (edges at half-integers), each bucket's count spread
  over the integers it holds;
- other numbers: ``BINS`` equal-width bins over the splits' common min .. max, each bucket's
  count spread uniformly over its width.

``beyond_noise`` says whether two splits' counts on those bins differ by more than sampling
noise (a chi-square test of homogeneity): 3 eval rows never differ "significantly" from train,
and a million rows do for a real change of a few points. Standard library only.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Sequence
from typing import Any

from components.lib.html import fmt_num

BINS = 10  # as TFDV's own STANDARD histogram
DISCRETE_SPAN = 10  # integer features spanning fewer integers are drawn as categories
OTHER = "(other values)"
NOISE_Z = 3.09  # one-sided 99.9 % normal quantile: a difference beyond noise at 1 in 1,000
# Identifier-like: as the schema stage's rule (``schema.identifier_reasons``), which decides;
# the statistics report, written before the schema, only observes it.
ID_MIN_DISTINCT, ID_DISTINCT_SHARE, ID_MIN_ROWS = 20, 0.9, 100
_PLAIN_NAME = re.compile(r"(^|[^a-z])(id|year|yr|zip|zipcode|postcode|code)s?$", re.IGNORECASE)
QUANTILES = (
    ("min", 0.0),
    ("p10", 0.1),
    ("p25", 0.25),
    ("median", 0.5),
    ("p75", 0.75),
    ("p90", 0.9),
    ("max", 1.0),
)


def _histogram(feature: Any, kind: str = "STANDARD") -> list[tuple[float, float, float]]:
    from tensorflow_metadata.proto.v0 import statistics_pb2

    wanted = statistics_pb2.Histogram.HistogramType.Value(kind)
    for hist in feature.num_stats.histograms:
        if hist.type == wanted:
            return [(b.low_value, b.high_value, b.sample_count) for b in hist.buckets]
    return []


def is_integer(feature: Any) -> bool:
    from tensorflow_metadata.proto.v0 import statistics_pb2

    return feature.type == statistics_pb2.FeatureNameStatistics.INT and feature.HasField("num_stats")


def common_stats(feature: Any) -> Any:
    return (
        feature.num_stats.common_stats if feature.HasField("num_stats") else feature.string_stats.common_stats
    )


def type_name(feature: Any) -> str:
    from tensorflow_metadata.proto.v0 import statistics_pb2

    return statistics_pb2.FeatureNameStatistics.Type.Name(feature.type)


def missing_fraction(feature: Any, num_examples: int) -> float:
    common = common_stats(feature)
    total = common.num_non_missing + common.num_missing
    return (common.num_missing / total) if total else (1.0 if num_examples else 0.0)


def non_missing(feature: Any) -> int:
    common = (
        feature.num_stats.common_stats if feature.HasField("num_stats") else feature.string_stats.common_stats
    )
    return int(common.num_non_missing)


def category_counts(feature: Any) -> dict[str, float]:
    """{value: count} of a text feature (the rank histogram, else the top values)."""
    ss = feature.string_stats
    if ss.rank_histogram.buckets:
        return {b.label: b.sample_count for b in ss.rank_histogram.buckets}
    return {v.value: v.frequency for v in ss.top_values}


def rebin(buckets: Sequence[tuple[float, float, float]], edges: Sequence[float]) -> list[float]:
    """Counts of ``[(low, high, count)]`` buckets spread over new bins (uniform within a bucket).

    A bucket of zero width (a constant value) goes whole to the bin holding its value.
    """
    out = [0.0] * (len(edges) - 1)
    for low, high, count in buckets:
        if not count:
            continue
        if high <= low:
            i = next((k for k in range(len(out)) if edges[k] <= low < edges[k + 1]), len(out) - 1)
            out[max(i, 0)] += count
            continue
        for k in range(len(out)):
            overlap = min(high, edges[k + 1]) - max(low, edges[k])
            if overlap > 0:
                out[k] += count * overlap / (high - low)
    return out


def integer_buckets(buckets: Sequence[tuple[float, float, float]]) -> list[tuple[float, float, float]]:
    """TFDV's buckets of an integer feature as ranges of the integers they hold, ± 0.5.

    A bucket ``(low, high]`` (the first ``[low, high]``) holds the integers ``floor(low) + 1 ..
    floor(high)``; one that holds none (a sliver of the sketch's interpolation) goes to the
    integer nearest its middle.
    """
    out = []
    for i, (low, high, count) in enumerate(buckets):
        first = math.ceil(low) if i == 0 else math.floor(low) + 1
        last = math.floor(high)
        if last < first:
            first = last = round((low + high) / 2)
        out.append((first - 0.5, last + 0.5, count))
    return out


@dataclasses.dataclass
class Shared:
    """One feature of several splits on common bins.

    ``kind``: "categories" (text values), "values" (an integer with few values) or "bins";
    ``labels``: a label per bin (values, or ``[low, high)``); ``edges``: the bins' bounds ("bins"
    only); ``counts``: {split: rows per bin}; ``totals``: {split: rows with a value}.
    """

    kind: str
    labels: list[str]
    edges: list[float]
    counts: dict[str, list[float]]
    totals: dict[str, int]

    def percent(self, split: str) -> list[float]:
        """Each bin's share of the split's rows with a value, in %."""
        total = self.totals[split] or 1
        return [100.0 * c / total for c in self.counts[split]]

    @property
    def categorical(self) -> bool:
        return self.kind != "bins"


def _categories(features: dict[str, Any]) -> Shared:
    counts = {s: category_counts(f) for s, f in features.items()}
    values: list[str] = []
    for d in counts.values():  # the first split's order, then values only the others have
        values += [v for v, _ in sorted(d.items(), key=lambda kv: -kv[1]) if v not in values]
    totals = {s: non_missing(f) for s, f in features.items()}
    rows = {s: [counts[s].get(v, 0.0) for v in values] for s in features}
    rest = {s: max(totals[s] - sum(rows[s]), 0.0) for s in features}
    if any(r >= 0.5 for r in rest.values()):
        values.append(OTHER)
        for s in features:
            rows[s].append(rest[s])
    return Shared("categories", values, [], rows, totals)


def _few_integers(features: dict[str, Any]) -> bool:
    return all(is_integer(f) for f in features.values()) and all(
        f.num_stats.max - f.num_stats.min < DISCRETE_SPAN for f in features.values()
    )


def _integer_values(features: dict[str, Any], fmt: Any) -> Shared:
    lo = int(min(f.num_stats.min for f in features.values()))
    hi = int(max(f.num_stats.max for f in features.values()))
    edges = [v - 0.5 for v in range(lo, hi + 2)]
    counts = {s: rebin(integer_buckets(_histogram(f)) or _constant(f), edges) for s, f in features.items()}
    keep = [i for i in range(len(edges) - 1) if any(c[i] >= 0.5 for c in counts.values())]
    return Shared(
        "values",
        [fmt(float(lo + i)) for i in keep],
        [],
        {s: [c[i] for i in keep] for s, c in counts.items()},
        {s: non_missing(f) for s, f in features.items()},
    )


def _constant(feature: Any) -> list[tuple[float, float, float]]:
    """A histogram-less feature (a single value) as one bucket at its value."""
    v = feature.num_stats.min
    return [(v, v, float(non_missing(feature)))]


def _numeric_bins(features: dict[str, Any], fmt: Any) -> Shared:
    lo = min(f.num_stats.min for f in features.values())
    hi = max(f.num_stats.max for f in features.values())
    integer = all(is_integer(f) for f in features.values())
    if integer:
        step = math.ceil((hi - lo + 1) / BINS)
        edges = [lo - 0.5 + k * step for k in range(math.ceil((hi - lo + 1) / step) + 1)]
    else:
        if hi <= lo:
            lo, hi = lo - 0.5, hi + 0.5
        edges = [lo + (hi - lo) * i / BINS for i in range(BINS + 1)]
    counts = {}
    for s, f in features.items():
        buckets = _histogram(f) or _constant(f)
        counts[s] = rebin(integer_buckets(buckets) if integer else buckets, edges)
    if integer:  # whole integers: 1970–1971
        labels = [f"{fmt(edges[i] + 0.5)}–{fmt(edges[i + 1] - 0.5)}" for i in range(len(edges) - 1)]
    else:
        labels = [f"[{fmt(edges[i])}, {fmt(edges[i + 1])})" for i in range(len(edges) - 1)]
    return Shared("bins", labels, edges, counts, {s: non_missing(f) for s, f in features.items()})


def shared_bins(features: dict[str, Any], fmt: Any = fmt_num) -> Shared | None:
    """The splits' ``FeatureNameStatistics`` (``{split: feature}``, all of one kind) on common bins.

    ``fmt`` formats a number as a bin's label. None when no split has a value.
    """
    features = {s: f for s, f in features.items() if f is not None and non_missing(f)}
    if not features:
        return None
    kinds = {f.HasField("num_stats") for f in features.values()}
    if kinds != {True}:
        return _categories(features) if kinds == {False} else None
    if _few_integers(features):
        return _integer_values(features, fmt)
    return _numeric_bins(features, fmt)


def chi_square_critical(df: int, z: float = NOISE_Z) -> float:
    """The value a chi-square statistic of ``df`` degrees exceeds with the normal tail of ``z``.

    The Wilson-Hilferty approximation (within 1 % of the exact quantile from 3 degrees up).
    """
    if df <= 0:
        return math.inf
    k = 2.0 / (9.0 * df)
    return df * (1.0 - k + z * math.sqrt(k)) ** 3


def beyond_noise(a: Sequence[float], b: Sequence[float]) -> bool:
    """Whether counts ``a`` and ``b`` over the same bins differ by more than sampling noise.

    Pearson's chi-square test of homogeneity of the 2 × k table at 1 in 1,000: two samples of
    one distribution pass it 999 times in 1,000, however few rows they have.
    """
    na, nb = sum(a), sum(b)
    if na < 1 or nb < 1:
        return False
    statistic, df = 0.0, -1
    for ca, cb in zip(a, b, strict=True):
        col = ca + cb
        if col <= 0:
            continue
        df += 1
        for count, n in ((ca, na), (cb, nb)):
            expected = col * n / (na + nb)
            statistic += (count - expected) ** 2 / expected
    return statistic > chi_square_critical(df)


def largest_gap(shared: Shared, a: str, b: str) -> tuple[int, float]:
    """(bin index, points) of the largest difference of a bin's share between splits ``a`` and ``b``."""
    pa, pb = shared.percent(a), shared.percent(b)
    gaps = [abs(x - y) for x, y in zip(pa, pb, strict=True)]
    if not gaps:
        return -1, 0.0
    i = max(range(len(gaps)), key=gaps.__getitem__)
    return i, gaps[i]


def quantiles(feature: Any) -> dict[str, float]:
    """min, p10, p25, median, p75, p90, max read from TFDV's QUANTILES histogram (equal-count buckets)."""
    from tensorflow_metadata.proto.v0 import statistics_pb2

    wanted = statistics_pb2.Histogram.QUANTILES
    buckets = next(
        (
            [(b.low_value, b.high_value) for b in hist.buckets]
            for hist in feature.num_stats.histograms
            if hist.type == wanted
        ),
        [],
    )
    if not buckets:
        return {}
    out = {}
    for name, p in QUANTILES:
        pos = p * len(buckets)
        k = min(int(pos), len(buckets) - 1)
        low, high = buckets[k]
        out[name] = low + (pos - k) * (high - low)
    return out


def feature_format(name: str, features: list[Any]) -> Any:
    """How to print a feature's values: without thousands separators for years, ids and codes.

    An integer feature named like one (``year``, ``id``, ``zip``, ``code``) or whose values all
    lie in 1000 .. 2999 (years) prints ``2007``, not ``2,007``; everything else :func:`html.fmt_num`.
    """
    ints = [f for f in features if is_integer(f)]
    year_like = bool(ints) and all(1000 <= f.num_stats.min and f.num_stats.max <= 2999 for f in ints)
    if ints and (year_like or _PLAIN_NAME.search(name)):
        return lambda v: fmt_num(v, grouping=False)
    return fmt_num


def identifier_like(features: list[Any]) -> str:
    """Why a feature looks like an identifier (text nearly all distinct, a row number), or ""."""
    rows = sum(non_missing(f) for f in features)
    text = [f for f in features if f.HasField("string_stats")]
    if text:
        ss = text[0].string_stats
        distinct, present = int(ss.unique), int(ss.common_stats.num_non_missing)
        if distinct > ID_MIN_DISTINCT and distinct >= ID_DISTINCT_SHARE * present:
            return f"identifier-like: {distinct:,} distinct of {present:,} rows"
        return ""
    ints = [f for f in features if is_integer(f)]
    if (
        len(ints) == len(features)
        and rows >= ID_MIN_ROWS
        and not any(f.num_stats.common_stats.num_missing for f in ints)
    ):
        low, high = min(f.num_stats.min for f in ints), max(f.num_stats.max for f in ints)
        if high - low + 1 == rows:
            return f"identifier-like: a row number ({low:.0f} .. {high:.0f}, one per row)"
    return ""
