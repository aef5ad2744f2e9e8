"""Intervals and verdicts that cover what a re-run would meet.

A configuration is measured in several runner processes, each with its own memory layout, and
within each process in several repeats. Repeats of one process share that process's layout, so
they are not independent samples of what the next `conlab run` would see: the process is the
unit. Every interval here is therefore built from per-process values (each process's median
wall time, on a log scale), with Student's t for the few processes a run has:

- a configuration's typical time is the 20%-trimmed geometric mean of its per-process medians,
  and its 95% interval is Yuen's: that ``x exp(+-t(h-1) * se)``, with ``se`` from the
  winsorized spread of the log per-process medians and ``h`` the processes kept after trimming.
  It holds the layout lottery, the drift of the machine between processes, and the
  repeat-to-repeat noise of each process's median, without letting one disturbed process
  decide it;
- the ratio of two configurations is Yuen's (Welch's, on trimmed means) interval on the same
  log values.

With one process there is no between-process spread to measure: the interval then comes from the
repeats alone and says so (``layout_covered`` is False).
"""

from __future__ import annotations

import functools
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

CONFIDENCE = 0.95
# A figure whose process medians spread more than this, and more than twice as far as one
# process's repeats do, is said to have moved between processes (layout, drift).
MOVED_BETWEEN_PROCESSES = 0.10


@functools.lru_cache(maxsize=1024)
def t_quantile(df: float, confidence: float = CONFIDENCE) -> float:
    """Two-sided Student t critical value for any ``df`` > 0 (Welch's are fractional). Starts
    from the Cornish-Fisher expansion around the normal quantile (Abramowitz and Stegun
    26.7.5, near for all but the smallest ``df``), then Newton's steps on ``_t_central`` (its
    slope is twice the t density), each kept inside the bracket found so far. No scipy to
    import (a third of a second a report)."""
    z = statistics.NormalDist().inv_cdf(0.5 + confidence / 2)
    t = max(z, z + sum(g(z) / df**k for k, g in enumerate(_CORNISH_FISHER, start=1)))
    low, high = 0.0, math.inf
    for _ in range(200):
        below = _t_central(t, df) - confidence
        if below < 0:
            low = t
        else:
            high = t
        following = t - below / (2 * _t_density(t, df))
        if not low < following < high:
            following = (low + high) / 2 if high < math.inf else 2 * t
        if abs(following - t) <= 1e-12 * t:  # Newton: the next step would be ~1e-24
            return following
        t = following
    return t


_CORNISH_FISHER = (
    lambda z: (z**3 + z) / 4,
    lambda z: (5 * z**5 + 16 * z**3 + 3 * z) / 96,
    lambda z: (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384,
    lambda z: (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / 92160,
)


def _t_density(t: float, df: float) -> float:
    return math.exp(
        math.lgamma((df + 1) / 2)
        - math.lgamma(df / 2)
        - 0.5 * math.log(df * math.pi)
        - (df + 1) / 2 * math.log1p(t * t / df)
    )


def _t_central(t: float, df: float) -> float:
    """P(|T| < t) for Student's t with ``df`` degrees of freedom: 1 - I_x(df/2, 1/2) with
    x = df / (df + t^2), I the regularized incomplete beta function."""
    if t <= 0:
        return 0.0
    return 1.0 - _incomplete_beta(df / 2, 0.5, df / (df + t * t))


def _incomplete_beta(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b), from its continued fraction
    (modified Lentz; Numerical Recipes 6.4), on the side of x where it converges fast."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    front = math.exp(
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    if x > (a + 1) / (a + b + 2):
        return 1.0 - front * _beta_fraction(b, a, 1 - x) / b
    return front * _beta_fraction(a, b, x) / a


def _beta_fraction(a: float, b: float, x: float) -> float:
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 100_000):
        m2 = 2 * m
        for numerator in (
            m * (b - m) * x / ((a + m2 - 1) * (a + m2)),
            -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 3e-16:  # two units in the last place: as close as floats get
            break
    return h


def t_two_sided_p(statistic: float, df: float) -> float:
    """P(|T| >= |statistic|) for Student's t with ``df`` degrees of freedom."""
    if math.isnan(statistic) or math.isnan(df):
        return math.nan
    if math.isinf(statistic):
        return 0.0
    return _incomplete_beta(df / 2, 0.5, df / (df + statistic * statistic))


@dataclass(frozen=True)
class Interval:
    """A configuration's median wall time and the 95% interval of its typical time, in seconds.

    The interval is centred on ``center``, the trimmed geometric mean of the per-process medians
    (the estimate its standard error belongs to); ``median`` pools every repeat, as tables show
    it. The two differ by a fraction of the interval's width."""

    median: float
    low: float
    high: float
    processes: int
    log_se: float  # standard error of log(median)
    df: float  # degrees of freedom behind log_se (processes kept after trimming, minus one)
    layout_covered: bool  # False when only one process ran: layout and drift are not in it
    spread: float  # max/min of the per-process medians, minus 1 (0 with one process)
    center: float = math.nan
    within: float = math.nan  # max/min of one process's repeats, minus 1 (median over processes)
    log_sd: float = 0.0  # spread of the log per-process medians (winsorized): the machine's level

    @property
    def half_width(self) -> float:
        """Half the interval's width, relative to its centre (0.02 = +-2%)."""
        if not self.center or not math.isfinite(self.high - self.low):
            return math.inf
        return (self.high - self.low) / 2 / self.center


def _groups(groups: Sequence[Sequence[float]]) -> list[list[float]]:
    """Each group's finite, positive values, empty groups dropped. Plain Python: a run has a
    handful of values, and `conlab runs --json` computes this for every stored run."""
    kept = []
    for group in groups:
        values = [float(v) for v in group if isinstance(v, (int, float)) and 0 < v < math.inf]
        if values:
            kept.append(values)
    return kept


def _log_sd(values: list[float]) -> float:
    """Sample standard deviation of the logs of ``values`` (at least two)."""
    logs = [math.log(v) for v in values]
    mean = sum(logs) / len(logs)
    return math.sqrt(sum((x - mean) ** 2 for x in logs) / (len(logs) - 1))


# Trimmed per side from the per-process values before their mean and spread are taken (Yuen's
# trimmed means, 1974). Slowdowns here are one-sided and come in bursts: on this VM one process
# in about ten ran 15-50% slow, and a plain mean and standard deviation let that one process
# decide both the figure and the width of its interval.
TRIM = 0.2


def _trimmed(logs: list[float]) -> tuple[float, float, int, float]:
    """(trimmed mean, squared standard error, values kept, winsorized variance) of ``logs``
    (Yuen): the mean of what is left after trimming ``TRIM`` of the values from each end, and
    its error from the winsorized variance (every value moved into the kept ones' range)."""
    values = sorted(logs)
    n = len(values)
    g = int(TRIM * n)
    kept = values[g : n - g]
    h = len(kept)
    winsorized = [kept[0]] * g + kept + [kept[-1]] * g
    mean_w = sum(winsorized) / n
    variance_w = sum((x - mean_w) ** 2 for x in winsorized) / (n - 1)
    return sum(kept) / h, (n - 1) * variance_w / (h * (h - 1)), h, variance_w


# From this many processes on, their figures are taken with numpy (the same arithmetic; a
# report over a year's runs has tens of thousands per configuration). Below it, plain Python:
# `conlab runs --json` takes an interval of every run, each of a few processes.
NUMPY_FROM = 1000


def _between_processes(medians: Sequence[float], withins: Sequence[float]):
    """(log of the trimmed mean, its squared standard error, values kept, the plain standard
    deviation of the logs, spread, median of ``withins``) of at least two processes' medians."""
    if len(medians) < NUMPY_FROM:
        log_center, variance, h, _ = _trimmed([math.log(m) for m in medians])
        spread = max(medians) / min(medians) - 1
        return log_center, variance, h, _log_sd(medians), spread, statistics.median(withins)
    import numpy as np

    medians = np.asarray(medians, dtype=float)
    logs = np.sort(np.log(medians))
    n = len(logs)
    g = int(TRIM * n)
    kept = logs[g : n - g]
    h = len(kept)
    variance_w = np.clip(logs, kept[0], kept[-1]).var(ddof=1)
    return (
        float(kept.mean()),
        float((n - 1) * variance_w / (h * (h - 1))),
        h,
        float(logs.std(ddof=1)),
        float(medians.max() / medians.min() - 1),
        float(np.median(np.asarray(withins, dtype=float))),
    )


def interval(groups: Sequence[Sequence[float]], confidence: float = CONFIDENCE) -> Interval:
    """The median of every value in ``groups`` (one group per runner process) and its interval."""
    kept = _groups(groups)
    if not kept:
        return interval_of(math.nan, [], [], [], confidence)
    pooled = [v for values in kept for v in values]
    medians = [statistics.median(values) for values in kept]
    withins = [max(values) / min(values) - 1 for values in kept]
    return interval_of(statistics.median(pooled), medians, withins, pooled, confidence)


def interval_of(
    median: float,
    process_medians: list[float],
    withins: list[float],
    pooled: Sequence[float],
    confidence: float = CONFIDENCE,
) -> Interval:
    """The interval from what ``interval`` takes of each process: its median and its max/min
    minus 1 (processes in order, values finite and positive), with ``median`` over every value.
    ``pooled`` (every value, each process's in order) is read only when one process ran."""
    if not process_medians:
        nan = math.nan
        return Interval(nan, nan, nan, 0, nan, 0, False, nan, nan)
    if len(process_medians) >= 2:
        # the machine's level moves at least as far as these processes differ: log_sd is their
        # plain (untrimmed) spread, since a slow process is a level the next sweep may meet
        log_center, variance, h, log_sd, spread, within = _between_processes(
            process_medians, withins
        )
        center, se, df, covered = math.exp(log_center), math.sqrt(variance), h - 1, True
    elif len(pooled) >= 2:
        # One process: the standard error of a median from its repeats (1.2533 = sqrt(pi/2)).
        center, log_sd = median, 0.0  # one process: its level is unknown
        se = 1.2533 * _log_sd(list(pooled)) / math.sqrt(len(pooled))
        df, covered = len(pooled) - 1, False
        spread, within = 0.0, statistics.median(withins)
    else:
        return Interval(median, math.nan, math.nan, 1, math.nan, 0, False, 0.0, median)
    margin = t_quantile(df, confidence) * se
    low, high = center * math.exp(-margin), center * math.exp(margin)
    processes = len(process_medians)
    return Interval(median, low, high, processes, se, df, covered, spread, center, within, log_sd)


def moved_between_processes(spread: float, within: float) -> bool:
    """Whether a figure moved between its processes far more than between repeats of one."""
    return spread > MOVED_BETWEEN_PROCESSES and spread > 2 * within


@dataclass(frozen=True)
class Ratio:
    """B against A: the ratio of medians B/A, its 95% interval, a p-value and a verdict."""

    ratio: float
    low: float
    high: float
    p_value: float
    verdict: str  # "faster", "slower" or "no significant difference"


NO_DIFFERENCE = "no significant difference"


def ratio(
    a: Sequence[Sequence[float]] | Interval,
    b: Sequence[Sequence[float]] | Interval,
    min_effect: float = 0.05,
    confidence: float = CONFIDENCE,
    across_sweeps: bool = False,
    extra_variance: float = 0.0,
) -> Ratio:
    """Compare B with A (groups of per-process values, or their intervals).

    Yuen's interval (Welch's, on trimmed means) on the log per-process medians. "slower" /
    "faster" needs both: the interval excludes 1, and the change is at least ``min_effect``;
    anything else is no significant difference.

    ``across_sweeps``: A and B did not take turns, so each met the machine's level of its own
    minutes. That level moves about as much as processes of one sweep differ (on this VM,
    identical sweeps 20 s apart sat 7.5% apart), and one sweep cannot measure it: each side's
    process-level variance is added to its error.

    ``extra_variance``: of the log ratio, from outside the two sides' processes (the
    uncertainty of the control's slope, storage.controlled), added as it is.
    """
    ia = a if isinstance(a, Interval) else interval(a, confidence)
    ib = b if isinstance(b, Interval) else interval(b, confidence)
    value = ib.center / ia.center if ia.center else math.nan
    var_a, var_b = ia.log_se**2, ib.log_se**2
    if across_sweeps:
        var_a, var_b = var_a + ia.log_sd**2, var_b + ib.log_sd**2
    variance = var_a + var_b + extra_variance
    if not (math.isfinite(value) and math.isfinite(variance)) or value <= 0:
        return Ratio(value, math.nan, math.nan, math.nan, NO_DIFFERENCE)
    if variance == 0:
        low = high = value
        p_value = 0.0 if value != 1 else 1.0
    else:
        # Welch–Satterthwaite degrees of freedom.
        df = variance**2 / (var_a**2 / max(ia.df, 1) + var_b**2 / max(ib.df, 1))
        se = math.sqrt(variance)
        margin = t_quantile(df, confidence) * se
        low, high = value * math.exp(-margin), value * math.exp(margin)
        p_value = t_two_sided_p(math.log(value) / se, df)
    return Ratio(value, low, high, p_value, decide(value, low, high, min_effect))


def decide(value: float, low: float, high: float, min_effect: float) -> str:
    """The verdict for a ratio B/A with its interval: a difference inside the interval, or
    smaller than ``min_effect``, is no difference."""
    if low > 1 and value >= 1 + min_effect:
        return "slower"
    if high < 1 and value <= 1 - min_effect:
        return "faster"
    return NO_DIFFERENCE
