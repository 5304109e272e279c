"""Medians over interleaved repetitions: each repetition runs every condition once, in a
rotating order, so slow drifts of this noisy machine hit all conditions alike."""

import statistics
from typing import Callable, Mapping


# Every interleaved() result of this run, in order (bench.py writes them into results.json).
RECORDED: list[dict[str, list[float]]] = []


def interleaved(reps: int, conditions: Mapping[str, Callable[[], float]]) -> dict[str, list[float]]:
    names = list(conditions)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for rep in range(reps):
        shift = rep % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(conditions[name]())
    RECORDED.append(samples)
    return samples


def median(values: list[float]) -> float:
    return statistics.median(values)


def paired_ratio(subject: list[float], baseline: list[float]) -> float:
    """Median of the per-repetition ratios (the pairs ran back to back)."""
    return statistics.median(s / b for s, b in zip(subject, baseline))
