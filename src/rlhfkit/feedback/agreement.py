"""Inter-annotator agreement: Krippendorff's α and Fleiss' κ. Pure Python, no imports of ours.

Both take `units`: one list of values per item (one value per annotator who labelled it; items
with fewer than two values carry no information about agreement and are ignored).

- Krippendorff's α (Krippendorff 2011, "Computing Krippendorff's Alpha-Reliability"):
  α = 1 − D_o / D_e from the coincidence matrix; handles any number of annotators per item and
  any distance (nominal: 0/1; interval: squared difference). 1 = perfect agreement, 0 = chance,
  < 0 = systematic disagreement.
- Fleiss' κ (Fleiss 1971) for nominal labels, in the form that allows a varying number of raters
  per item: P_i = Σ_j n_ij(n_ij − 1) / (n_i(n_i − 1)), p_j = share of all ratings in category j,
  κ = (mean P_i − Σ p_j²) / (1 − Σ p_j²). With a constant number of raters it is Fleiss' κ exactly.
"""

from __future__ import annotations

from collections import Counter
from typing import Callable, Hashable, Sequence


def nominal_distance(a, b) -> float:
    return 0.0 if a == b else 1.0


def interval_distance(a, b) -> float:
    return (float(a) - float(b)) ** 2


DISTANCES: dict[str, Callable] = {"nominal": nominal_distance, "interval": interval_distance}


def krippendorff_alpha(units: Sequence[Sequence[Hashable]], level: str = "nominal") -> float | None:
    """Krippendorff's α over `units` (lists of values, one per annotator). None when undefined
    (fewer than two pairable values, or every value identical so that D_e = 0)."""
    distance = DISTANCES[level]
    pairable = [list(u) for u in units if len(u) >= 2]
    # Coincidence matrix o_ck: every ordered pair of values within a unit, weighted 1/(m_u − 1).
    coincidence: Counter = Counter()
    for values in pairable:
        weight = 1.0 / (len(values) - 1)
        for i, a in enumerate(values):
            for j, b in enumerate(values):
                if i != j:
                    coincidence[(a, b)] += weight
    totals: Counter = Counter()  # n_c
    for (a, _), count in coincidence.items():
        totals[a] += count
    n = sum(totals.values())
    if n < 2:
        return None
    observed = sum(count * distance(a, b) for (a, b), count in coincidence.items()) / n
    values = list(totals)
    expected = sum(totals[a] * totals[b] * distance(a, b) for a in values for b in values) / (n * (n - 1))
    if expected == 0:
        return None
    return 1.0 - observed / expected


def fleiss_kappa(units: Sequence[Sequence[Hashable]]) -> float | None:
    """Fleiss' κ for nominal labels (varying raters per item allowed). None when undefined."""
    pairable = [list(u) for u in units if len(u) >= 2]
    if not pairable:
        return None
    agreement = []
    category_totals: Counter = Counter()
    for values in pairable:
        counts = Counter(values)
        m = len(values)
        agreement.append(sum(c * (c - 1) for c in counts.values()) / (m * (m - 1)))
        category_totals.update(counts)
    total = sum(category_totals.values())
    chance = sum((c / total) ** 2 for c in category_totals.values())
    if chance >= 1.0:
        return None
    return (sum(agreement) / len(agreement) - chance) / (1.0 - chance)


def percent_agreement(units: Sequence[Sequence[Hashable]]) -> float | None:
    """Share of annotator pairs (within an item) that gave the same value."""
    agree = pairs = 0
    for values in units:
        for i in range(len(values)):
            for j in range(i + 1, len(values)):
                pairs += 1
                agree += values[i] == values[j]
    return agree / pairs if pairs else None
