"""Erlang C math: published worked examples, exactness against rational arithmetic, stability at
hundreds of agents, monotonicity, shrinkage and the unstable queue."""

from __future__ import annotations

import itertools
import math
import time
from fractions import Fraction

import pytest

from bot.analytics.erlang import (
    erlang_b,
    erlang_c,
    performance,
    required_agents,
    traffic_intensity,
)


def exact_erlang_c(agents: int, traffic: Fraction) -> Fraction:
    """The textbook formula, term by term in exact rational arithmetic:
    (A^N/N! · N/(N-A)) / (sum_{k<N} A^k/k! + A^N/N! · N/(N-A))."""
    term, total = Fraction(1), Fraction(0)
    for k in range(agents):
        total += term
        term = term * traffic / (k + 1)
    top = term * agents / (agents - traffic)
    return top / (total + top)


def naive_erlang_c(agents: int, traffic: float) -> float:
    """The textbook formula in floating point, as often written: overflows at large N."""
    top = traffic**agents / math.factorial(agents) * agents / (agents - traffic)
    return top / (sum(traffic**k / math.factorial(k) for k in range(agents)) + top)


# -- published worked examples -------------------------------------------------------------


def test_call_centre_helper_worked_example() -> None:
    # Call Centre Helper, "Erlang C Formula - Made Simple With an Easy Worked Example"
    # (callcentrehelper.com/erlang-c-formula-example-121281.htm): 100 calls per 30 minutes,
    # AHT 180 s, 80% answered within 20 s, maximum occupancy 85%, shrinkage 30%.
    # Published: traffic 10 Erlangs; the first try, N = 11, waits with probability 68.21%;
    # the answer is 14 agents (20 with shrinkage), service level 88.8%, occupancy 71.4%.
    # The same example with full-precision answers is published in the README of pyworkforce
    # 0.1.0 (pypi.org/project/pyworkforce/0.1.0): raw_positions 14, positions 20,
    # service_level 0.8883500191794669, occupancy 0.7142857142857143,
    # waiting_probability 0.1741319335950498; and of the R package ErlangC 0.1.0 (CRAN):
    # average_speed_of_answer 7.83593701177724 s, wait probability at 11 agents 0.6821182.
    r = required_agents(100, 30 * 60, 180, 20, 0.8, shrinkage=0.3, max_occupancy=0.85)
    assert r.traffic_erlangs == pytest.approx(10.0)
    assert r.agents == 14
    assert r.scheduled_agents == 20
    assert r.service_level == pytest.approx(0.8883500191794669, rel=1e-12)
    assert r.occupancy == pytest.approx(0.7142857142857143, rel=1e-12)
    assert r.probability_wait == pytest.approx(0.1741319335950498, rel=1e-12)
    assert r.asa_s == pytest.approx(7.83593701177724, rel=1e-12)
    assert erlang_c(11, 10.0) == pytest.approx(0.6821182, abs=5e-8)
    # 13 agents fall just short of 80% (so 14 is the least that meets it)
    assert performance(13, 10.0, 180, 20).service_level < 0.8


def test_mitan_erlang_c_worked_example() -> None:
    # "The Erlang-C formula" step by step, mitan.co.uk/erlang/elgcmath.htm (archived at
    # web.archive.org/web/20181209042241/http://www.mitan.co.uk/erlang/elgcmath.htm):
    # 360 calls per half hour (0.2 calls/s), average call duration 240 s, 55 agents, target
    # answer time 15 s. Published: traffic intensity 48, probability of waiting 0.2387,
    # average speed of answer 8.184 s, service level 0.8459 (figures as reproduced by the
    # Maxima "erlang.mac" worked example, which states that they agree with the page).
    assert traffic_intensity(360, 30 * 60, 240) == pytest.approx(48.0)
    p = performance(55, 48.0, 240, 15)
    assert p.probability_wait == pytest.approx(0.2387, abs=5e-5)
    assert p.asa_s == pytest.approx(8.184, abs=5e-4)
    assert p.service_level == pytest.approx(0.8459, abs=5e-5)
    assert p.occupancy == pytest.approx(48 / 55)


def test_erlang_b_table_value() -> None:
    # Erlang B tables: 5 Erlangs offered to 10 circuits are blocked 1.84% of the time.
    assert erlang_b(10, 5.0) == pytest.approx(0.01838, abs=5e-6)
    assert erlang_b(0, 5.0) == 1.0


# -- exactness and stability ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("traffic", "agents"),
    [(Fraction(1, 2), 1), (Fraction(3), 4), (Fraction(10), 11), (Fraction(10), 14),
     (Fraction(48), 55), (Fraction(97, 3), 40), (Fraction(1, 10), 5)],
)  # fmt: skip
def test_matches_exact_rational_computation(traffic: Fraction, agents: int) -> None:
    assert erlang_c(agents, float(traffic)) == pytest.approx(
        float(exact_erlang_c(agents, traffic)), rel=1e-12
    )


@pytest.mark.parametrize(
    ("traffic", "agents"),
    [(Fraction(1000, 3), 345), (Fraction(400), 450), (Fraction(900), 905), (Fraction(2500), 2600)],
)
def test_stable_at_hundreds_of_agents(traffic: Fraction, agents: int) -> None:
    exact = float(exact_erlang_c(agents, traffic))
    assert 0 < exact < 1
    assert erlang_c(agents, float(traffic)) == pytest.approx(exact, rel=1e-9)
    # where the factorial formula in floating point cannot even be evaluated
    with pytest.raises(OverflowError):
        naive_erlang_c(agents, float(traffic))


def test_hundreds_of_agents_is_fast() -> None:
    # 2000 calls per 30 min at AHT 300 s: 333 Erlangs, hundreds of agents
    start = time.perf_counter()
    r = required_agents(2000, 30 * 60, 300, 20, 0.8, shrinkage=0.3)
    big = required_agents(200_000, 30 * 60, 300, 20, 0.8)  # 33 333 Erlangs
    elapsed = time.perf_counter() - start
    assert r.traffic_erlangs == pytest.approx(1000 / 3)
    assert r.agents == 345
    assert r.probability_wait == pytest.approx(float(exact_erlang_c(345, Fraction(1000, 3))))
    assert performance(344, 1000 / 3, 300, 20).service_level < 0.8 <= r.service_level
    assert r.scheduled_agents == math.ceil(345 / 0.7)
    assert big.agents > 33_333 and 0.8 <= big.service_level < 0.9
    assert elapsed < 2.0


# -- properties ----------------------------------------------------------------------------


def test_more_agents_never_make_things_worse() -> None:
    traffic, aht = 48.0, 240.0
    rows = [performance(n, traffic, aht, 20) for n in range(49, 80)]
    for fewer, more in itertools.pairwise(rows):
        assert more.probability_wait < fewer.probability_wait
        assert more.service_level > fewer.service_level
        assert more.asa_s < fewer.asa_s
        assert more.occupancy < fewer.occupancy


def test_more_traffic_means_more_waiting() -> None:
    waits = [erlang_c(30, a) for a in (5.0, 10.0, 20.0, 25.0, 29.0, 29.9)]
    assert waits == sorted(waits)
    assert waits[0] < 1e-6 and waits[-1] > 0.9


def test_required_agents_is_the_least_meeting_the_target() -> None:
    for calls in (1, 7, 60, 100, 360, 1234):
        for aht in (45.0, 180.0, 600.0):
            r = required_agents(calls, 1800, aht, 20, 0.8)
            assert r.service_level >= 0.8
            fewer = performance(r.agents - 1, r.traffic_erlangs, aht, 20)
            assert not fewer.stable or fewer.service_level < 0.8


def test_required_agents_grow_with_demand_and_ambition() -> None:
    def agents(calls: float = 100, aht: float = 180, target_s: float = 20, sl: float = 0.8) -> int:
        return required_agents(calls, 1800, aht, target_s, sl).agents

    by_calls = [agents(calls=c) for c in (10, 50, 100, 200, 400, 800)]
    assert by_calls == sorted(by_calls) and by_calls[0] < by_calls[-1]
    by_aht = [agents(aht=a) for a in (60, 120, 180, 300, 600)]
    assert by_aht == sorted(by_aht) and by_aht[0] < by_aht[-1]
    by_level = [agents(sl=s) for s in (0.5, 0.7, 0.8, 0.9, 0.95, 0.99)]
    assert by_level == sorted(by_level) and by_level[0] < by_level[-1]
    by_target = [agents(target_s=t) for t in (0, 5, 20, 60, 300)]
    assert by_target == sorted(by_target, reverse=True) and by_target[0] > by_target[-1]


def test_asa_and_occupancy_targets_add_agents() -> None:
    plain = required_agents(100, 1800, 180, 20, 0.8)
    fast = required_agents(100, 1800, 180, 20, 0.8, asa_target_s=2.0)
    assert fast.agents > plain.agents
    assert fast.asa_s <= 2.0 < performance(fast.agents - 1, 10.0, 180, 20).asa_s
    relaxed = required_agents(100, 1800, 180, 20, 0.1, max_occupancy=0.5)
    assert relaxed.agents == 20 and relaxed.occupancy == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("shrinkage", "scheduled"), [(0.0, 14), (0.3, 20), (0.25, 19), (0.5, 28), (0.9, 140)]
)
def test_shrinkage_rounds_scheduled_agents_up(shrinkage: float, scheduled: int) -> None:
    r = required_agents(100, 1800, 180, 20, 0.8, shrinkage=shrinkage)
    assert r.agents == 14  # shrinkage never changes who is needed on the queue
    assert r.scheduled_agents == scheduled


# -- the unstable queue and edge cases -----------------------------------------------------


@pytest.mark.parametrize("agents", [0, 5, 9, 10])
def test_too_few_agents_is_unstable(agents: int) -> None:
    p = performance(agents, 10.0, 180, 20)
    assert not p.stable
    assert p.probability_wait == 1.0
    assert p.service_level == 0.0
    assert p.asa_s == math.inf
    assert p.occupancy == 1.0
    assert erlang_c(agents, 10.0) == 1.0


def test_just_enough_agents_is_stable_but_bad() -> None:
    p = performance(11, 10.0, 180, 20)
    assert p.stable and 0 < p.service_level < 0.5 and math.isfinite(p.asa_s)


def test_no_traffic_needs_no_agents() -> None:
    r = required_agents(0, 1800, 180, 20, 0.8, shrinkage=0.3)
    assert (r.agents, r.scheduled_agents) == (0, 0)
    assert r.service_level == 1.0 and r.asa_s == 0.0 and r.probability_wait == 0.0


def test_zero_target_answer_time_is_share_answered_at_once() -> None:
    p = performance(14, 10.0, 180, 0)
    assert p.service_level == pytest.approx(1 - p.probability_wait)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"calls": -1}, "calls"),
        ({"interval_s": 0}, "interval"),
        ({"aht_s": 0}, "handle time"),
        ({"aht_s": math.nan}, "handle time"),
        ({"target_answer_s": -5}, "target answer time"),
        ({"service_level_target": 1.0}, "service level"),
        ({"service_level_target": 80}, "service level"),
        ({"shrinkage": 1.0}, "shrinkage"),
        ({"shrinkage": -0.1}, "shrinkage"),
        ({"max_occupancy": 0}, "occupancy"),
        ({"max_occupancy": 1.2}, "occupancy"),
        ({"asa_target_s": 0}, "ASA"),
    ],
)
def test_bad_input_is_refused(kwargs: dict[str, float], message: str) -> None:
    good = {
        "calls": 100,
        "interval_s": 1800,
        "aht_s": 180,
        "target_answer_s": 20,
        "service_level_target": 0.8,
    }
    with pytest.raises(ValueError, match=message):
        required_agents(**{**good, **kwargs})  # type: ignore[arg-type]


def test_negative_agents_refused() -> None:
    with pytest.raises(ValueError, match="agents"):
        performance(-1, 10.0, 180, 20)
