"""The writer's CPU per write under a condition against an unprobed write in the same repetitions:
the comparisons the write-overhead rows share."""

from . import stats
from .table import Row, Value


CPU_NS = "CPU ns/write"


def vs_unprobed(metric: str, s: dict, key: str, target: str = "report", limit: float | None = None,
                 note: str = "", unprobed: str = "unprobed") -> Row:
    """`key`'s writes against the unprobed writes (condition `unprobed`) of the same repetitions."""
    return Row(metric, Value(stats.median(s[key]), CPU_NS), Value(stats.median(s[unprobed]), CPU_NS),
               "unprobed", stats.paired_ratio(s[key], s[unprobed]), target,
               check=None if limit is None else (lambda v, r: r <= limit), note=note)


def overhead(s: dict, key: str, unprobed: str = "unprobed") -> float:
    """Median extra CPU ns per write over the unprobed run of the same repetition."""
    return stats.median([a - b for a, b in zip(s[key], s[unprobed])])


def overhead_vs_peer(metric: str, s: dict, key: str, peer: str, peer_label: str,
                      unprobed: str = "unprobed") -> Row:
    """`key`'s overhead (over `unprobed`) against `peer`'s (over the same-file-system unprobed)."""
    mine, theirs = overhead(s, key, unprobed), overhead(s, peer)
    return Row(metric, Value(mine, CPU_NS), Value(theirs, CPU_NS), peer_label,
               mine / theirs if theirs > 0 else None, f"<= 1.0x (<= {peer})",
               check=lambda v, r: r is not None and r <= 1.0)


def overhead_ratio(s: dict, key: str, peer: str, unprobed: str = "unprobed") -> float | None:
    """Median over repetitions of key's extra CPU ns per write over that repetition's unprobed
    run, divided by peer's (the three ran in the same repetition); None if peer never showed
    any overhead."""
    ratios = [(k - u) / (p - u) for k, p, u in zip(s[key], s[peer], s[unprobed]) if p > u]
    return stats.median(ratios) if ratios else None
