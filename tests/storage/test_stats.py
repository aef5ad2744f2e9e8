"""The intervals and verdicts, on synthetic measurements with a known answer.

Each simulated configuration is measured like a real one: a few runner processes, each with its
own layout effect (a random offset shared by all its repeats), and repeat-to-repeat noise within
a process. The true median is known, so how often the interval covers it can be counted.
"""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest

from storage import stats
from storage.stats import NO_DIFFERENCE, interval, ratio


def measured(
    rng,
    center: float,
    processes: int = 3,
    repeats: int = 5,
    layout: float = 0.03,
    noise: float = 0.01,
    bursts: float = 0.0,
) -> list[np.ndarray]:
    """Walls of one configuration: log-normal layout per process, then noise per repeat; with
    ``bursts``, that share of processes runs up to 30% slow (something else took the CPU)."""
    walls = []
    for _ in range(processes):
        slow = 1 + 0.3 * rng.random() if rng.random() < bursts else 1.0
        layout_effect = slow * math.exp(rng.normal(0, layout))
        walls.append(center * layout_effect * np.exp(rng.normal(0, noise, repeats)))
    return walls


@pytest.mark.parametrize("processes", [3, 5, 10])
def test_the_interval_covers_the_true_median_95_times_in_100(processes):
    rng = np.random.default_rng(processes)
    trials = 2000
    covered = sum(
        (found := interval(measured(rng, 1.0, processes))).low <= 1.0 <= found.high
        for _ in range(trials)
    )
    # 95% nominal; binomial sd over 2000 trials is 0.5%
    assert 0.93 <= covered / trials <= 0.975


def test_intervals_of_repeats_alone_miss_the_layout_lottery():
    """What the lab used to show: an interval from one process's repeats. With layout effects
    three times the repeat noise, it covers the truth far less often than it claims."""
    rng = np.random.default_rng(7)
    trials = 1000
    covered = 0
    for _ in range(trials):
        one = interval(measured(rng, 1.0, processes=1, repeats=15))
        assert not one.layout_covered
        covered += one.low <= 1.0 <= one.high
    assert covered / trials < 0.6


def test_same_thing_twice_is_no_difference_at_least_95_times_in_100():
    rng = np.random.default_rng(11)
    trials = 2000
    called = sum(
        ratio(measured(rng, 1.0), measured(rng, 1.0), min_effect=0.0).verdict != NO_DIFFERENCE
        for _ in range(trials)
    )
    assert called / trials <= 0.05
    with_effect = sum(
        ratio(measured(rng, 1.0), measured(rng, 1.0)).verdict != NO_DIFFERENCE
        for _ in range(trials)
    )
    assert with_effect / trials <= called / trials  # a 5% minimum effect never adds one


def test_a_ten_percent_change_is_found_when_layout_moves_figures_by_two():
    rng = np.random.default_rng(13)
    trials = 1000
    verdicts = [
        ratio(measured(rng, 1.0, layout=0.02), measured(rng, 1.1, layout=0.02)).verdict
        for _ in range(trials)
    ]
    assert verdicts.count("slower") / trials >= 0.9
    assert "faster" not in verdicts


def test_a_process_slowed_by_something_else_decides_neither_figure_nor_verdict():
    """One process in ten running up to 30% slow, as on this VM: the trimmed figures keep A/A
    at no difference and still find a 10% change with six processes a side."""
    rng = np.random.default_rng(19)
    trials = 1000

    def verdict(b_center: float) -> str:
        a = measured(rng, 1.0, processes=6, layout=0.02, bursts=0.1)
        b = measured(rng, b_center, processes=6, layout=0.02, bursts=0.1)
        return ratio(a, b).verdict

    assert sum(verdict(1.0) != NO_DIFFERENCE for _ in range(trials)) / trials <= 0.05
    assert sum(verdict(1.1) == "slower" for _ in range(trials)) / trials >= 0.85


def test_sweeps_that_did_not_take_turns_carry_their_own_level():
    """Two sweeps minutes apart each meet the machine at a level of its own, which lasts the
    whole sweep (so its processes cannot show it). Compared as if they had taken turns, the
    same thing is called different far too often; compared across sweeps, it is not."""
    rng = np.random.default_rng(23)
    trials = 1000

    def sweep(center: float) -> list[np.ndarray]:
        level = math.exp(rng.normal(0, 0.03))  # the machine's level during this sweep
        return measured(rng, center * level, processes=6, layout=0.03)

    def called(across: bool) -> float:
        verdicts = [
            ratio(sweep(1.0), sweep(1.0), min_effect=0.0, across_sweeps=across).verdict
            for _ in range(trials)
        ]
        return sum(v != NO_DIFFERENCE for v in verdicts) / trials

    assert called(across=False) > 0.15
    assert called(across=True) <= 0.05


def test_the_ratio_interval_covers_the_true_ratio():
    rng = np.random.default_rng(17)
    trials = 2000
    covered = 0
    for _ in range(trials):
        found = ratio(measured(rng, 1.0, processes=4), measured(rng, 1.25, processes=3))
        covered += found.low <= 1.25 <= found.high
    assert 0.93 <= covered / trials <= 0.975


def test_edge_cases_give_numbers_or_nan_never_errors():
    assert math.isnan(interval([]).median)
    assert math.isnan(interval([[0.0, -1.0, math.inf]]).median)  # nothing usable
    single = interval([[0.5]])
    assert single.median == 0.5 and math.isnan(single.low)
    steady = interval([[1.0, 1.0], [1.0, 1.0]])
    assert steady.low == steady.high == 1.0
    assert ratio([[1.0, 1.0], [1.0, 1.0]], [[2.0, 2.0], [2.0, 2.0]]).verdict == "slower"
    assert ratio([[1.0]], [[1.0]]).verdict == NO_DIFFERENCE


# Whole and Welch's fractional degrees of freedom, up to what hundreds of processes give.
DEGREES = [*range(1, 60), 99, 100, 333, 1000, 1.01, 1.3, 2.5, 3.7, 7.25, 47.9, 123.4, 5000.5, 1e5]


@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_t_quantile_is_scipys(confidence):
    from scipy.special import stdtrit

    from storage.stats import t_quantile

    for df in DEGREES:
        expected = float(stdtrit(df, 0.5 + confidence / 2))
        assert t_quantile(df, confidence) == pytest.approx(expected, rel=1e-9), df


def test_t_two_sided_p_is_scipys():
    from scipy.special import stdtr

    from storage.stats import t_two_sided_p

    for df in DEGREES:
        for statistic in (0.0, 0.3, -1.0, 1.96, 4.0, -12.0):
            expected = float(2 * stdtr(df, -abs(statistic)))
            assert t_two_sided_p(statistic, df) == pytest.approx(expected, rel=1e-9, abs=1e-300)
    assert t_two_sided_p(math.inf, 3) == 0.0 and math.isnan(t_two_sided_p(math.nan, 3))


def test_reports_statistics_do_not_import_scipy(tmp_path):
    import subprocess
    import sys

    # a run's interval (whole df) and a comparison of two (Welch's fractional df, a p-value)
    code = (
        "import sys; from storage.stats import interval, ratio; "
        "interval([[1.0, 1.1], [1.2, 1.3]]); "
        "ratio([[1.0, 1.1], [1.2, 1.3], [1.0]], [[2.0, 2.3], [2.2, 2.1]]); "
        "print('scipy' in sys.modules)"
    )
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert found.stdout.strip() == "False", found.stderr


def test_many_processes_get_the_interval_plain_python_gives():
    """From stats.NUMPY_FROM processes on, the interval is taken with numpy: the figures the
    plain-Python arithmetic gives (a slow tail included)."""
    import random

    rng = random.Random(7)
    medians = [rng.lognormvariate(0, 0.05) * (1.4 if i % 9 == 0 else 1) for i in range(1500)]
    withins = [rng.uniform(0, 0.1) for _ in medians]
    many = stats.interval_of(1.0, medians, withins, [])
    log_center, variance, h, _ = stats._trimmed([math.log(m) for m in medians])
    assert many.processes == 1500 and many.df == h - 1 == 1500 - 2 * 300 - 1
    assert many.center == pytest.approx(math.exp(log_center), rel=1e-12)
    assert many.log_se == pytest.approx(math.sqrt(variance), rel=1e-9)
    assert many.log_sd == pytest.approx(stats._log_sd(medians), rel=1e-9)
    assert many.spread == max(medians) / min(medians) - 1
    assert many.within == statistics.median(withins)
