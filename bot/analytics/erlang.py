"""Erlang C: how many agents a queue of randomly arriving contacts needs (pure math, no I/O).

The model is the M/M/N queue: Poisson arrivals, exponential handle times, N agents, callers
who wait as long as it takes. With traffic intensity ``A = λ·AHT`` (in Erlangs):

* probability of waiting ``C(N, A)``, computed from Erlang B by the recursion
  ``B(0) = 1, B(n) = A·B(n-1) / (n + A·B(n-1))`` and ``C = N·B / (N - A·(1 - B))``: every
  step stays between 0 and 1, so there is no factorial or power to overflow, even at
  thousands of agents;
* service level ``SL(T) = 1 - C·exp(-(N - A)·T / AHT)``, the share answered within ``T``;
* average speed of answer ``ASA = C·AHT / (N - A)``;
* occupancy ``A / N``.

With ``N ≤ A`` the queue grows without bound: every caller waits (C = 1), none is answered
in time (SL = 0) and the average wait is infinite. That case is reported, never computed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# ceil(14 / 0.7) must be 20, not 21 (14 / 0.7 == 20.000000000000004 in binary floating point)
_CEIL_SLACK = 1e-9


@dataclass(frozen=True)
class Performance:
    """How a queue with a given number of agents performs (one row of an Erlang C table)."""

    agents: int
    traffic_erlangs: float
    probability_wait: float  # C(N, A): share of contacts that wait at all
    service_level: float  # share answered within the target answer time
    asa_s: float  # average speed of answer (mean wait over all contacts), seconds
    occupancy: float  # share of agents' time spent handling contacts
    stable: bool  # False when agents ≤ traffic: the queue grows without bound


@dataclass(frozen=True)
class StaffingRequirement:
    """The agents a queue needs for its targets, with every figure of the answer."""

    calls: float  # contacts arriving per interval
    interval_s: float
    aht_s: float  # average handle time, wrap-up included
    target_answer_s: float
    service_level_target: float
    shrinkage: float
    max_occupancy: float | None
    asa_target_s: float | None
    agents: int  # on the phones: the smallest N meeting every target
    scheduled_agents: int  # to roster once shrinkage (breaks, training, absence) is allowed for
    traffic_erlangs: float
    probability_wait: float
    service_level: float
    asa_s: float
    occupancy: float


def traffic_intensity(calls: float, interval_s: float, aht_s: float) -> float:
    """Offered load in Erlangs: ``calls`` arriving per ``interval_s``, each taking ``aht_s``."""
    _check_non_negative("calls", calls)
    _check_positive("interval", interval_s)
    _check_positive("average handle time", aht_s)
    return calls / interval_s * aht_s


def erlang_b(agents: int, traffic: float) -> float:
    """Erlang B: the probability that all ``agents`` are busy in a loss system (no queue)."""
    _check_agents(agents)
    _check_non_negative("traffic", traffic)
    b = 1.0
    for n in range(1, agents + 1):
        b = traffic * b / (n + traffic * b)
    return b


def erlang_c(agents: int, traffic: float) -> float:
    """Erlang C: the probability that a contact has to wait; 1.0 when ``agents ≤ traffic``."""
    _check_agents(agents)
    _check_non_negative("traffic", traffic)
    if traffic == 0:
        return 0.0
    if agents <= traffic:
        return 1.0
    return _c_from_b(agents, traffic, erlang_b(agents, traffic))


def performance(agents: int, traffic: float, aht_s: float, target_answer_s: float) -> Performance:
    """Probability of waiting, service level, ASA and occupancy of ``agents`` on ``traffic``."""
    _check_agents(agents)
    _check_non_negative("traffic", traffic)
    _check_positive("average handle time", aht_s)
    _check_non_negative("target answer time", target_answer_s)
    b = erlang_b(agents, traffic) if traffic > 0 else 0.0
    return _performance(agents, float(traffic), b, aht_s, target_answer_s)


def required_agents(
    calls: float,
    interval_s: float,
    aht_s: float,
    target_answer_s: float,
    service_level_target: float,
    *,
    shrinkage: float = 0.0,
    max_occupancy: float | None = None,
    asa_target_s: float | None = None,
) -> StaffingRequirement:
    """The fewest agents giving ``service_level_target`` of contacts answered within
    ``target_answer_s`` (and, when given, an ASA of at most ``asa_target_s`` and an occupancy
    of at most ``max_occupancy``); then ``scheduled = ceil(agents / (1 - shrinkage))``.

    Raises :class:`ValueError` naming the first input out of range."""
    traffic = traffic_intensity(calls, interval_s, aht_s)
    _check_non_negative("target answer time", target_answer_s)
    if not 0 < service_level_target < 1:
        raise ValueError(
            f"service level target must be a fraction between 0 and 1 (e.g. 0.8), "
            f"not {service_level_target}"
        )
    if not 0 <= shrinkage < 1:
        raise ValueError(f"shrinkage must be at least 0 and below 1 (e.g. 0.3), not {shrinkage}")
    if max_occupancy is not None and not 0 < max_occupancy <= 1:
        raise ValueError(
            f"maximum occupancy must be above 0 and at most 1 (e.g. 0.85), not {max_occupancy}"
        )
    if asa_target_s is not None:
        _check_positive("ASA target", asa_target_s)

    def meets(p: Performance) -> bool:
        return (
            p.stable
            and p.service_level >= service_level_target
            and (asa_target_s is None or p.asa_s <= asa_target_s)
            and (max_occupancy is None or p.occupancy <= max_occupancy)
        )

    if traffic == 0:
        best = _performance(0, 0.0, 0.0, aht_s, target_answer_s)
    else:
        # Erlang B is computed once, one agent at a time: O(N) for the whole search.
        n, b = 0, 1.0
        while True:
            n += 1
            b = traffic * b / (n + traffic * b)
            if n <= traffic:
                continue
            best = _performance(n, traffic, b, aht_s, target_answer_s)
            if meets(best):
                break
    scheduled = math.ceil(best.agents / (1 - shrinkage) - _CEIL_SLACK)
    return StaffingRequirement(
        calls=calls,
        interval_s=interval_s,
        aht_s=aht_s,
        target_answer_s=target_answer_s,
        service_level_target=service_level_target,
        shrinkage=shrinkage,
        max_occupancy=max_occupancy,
        asa_target_s=asa_target_s,
        agents=best.agents,
        scheduled_agents=max(scheduled, best.agents),
        traffic_erlangs=traffic,
        probability_wait=best.probability_wait,
        service_level=best.service_level,
        asa_s=best.asa_s,
        occupancy=best.occupancy,
    )


def _c_from_b(agents: int, traffic: float, b: float) -> float:
    return agents * b / (agents - traffic * (1 - b))


def _performance(
    agents: int, traffic: float, b: float, aht_s: float, target_answer_s: float
) -> Performance:
    """The figures from Erlang B already computed for ``agents`` (``b``)."""
    if traffic == 0:
        return Performance(agents, 0.0, 0.0, 1.0, 0.0, 0.0, True)
    if agents <= traffic:
        return Performance(agents, traffic, 1.0, 0.0, math.inf, 1.0, False)
    c = _c_from_b(agents, traffic, b)
    spare = agents - traffic
    return Performance(
        agents=agents,
        traffic_erlangs=traffic,
        probability_wait=c,
        service_level=1 - c * math.exp(-spare * target_answer_s / aht_s),
        asa_s=c * aht_s / spare,
        occupancy=traffic / agents,
        stable=True,
    )


def _check_agents(agents: int) -> None:
    if agents < 0:
        raise ValueError(f"number of agents cannot be negative ({agents})")


def _check_non_negative(name: str, value: float) -> None:
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number of at least 0, not {value}")


def _check_positive(name: str, value: float) -> None:
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number above 0, not {value}")
