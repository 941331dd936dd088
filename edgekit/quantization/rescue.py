"""Accuracy-budget rescue: the fewest layers kept in float that bring an int8 model within a top-1 budget."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Score:
    """An int8 candidate measured on the user's images against the float model."""

    drop: float  # top-1 points lost against the float model (labels), or points of top-1 disagreement (no labels)
    error: float  # mean squared logit error relative to the float logits' mean square

    def to_dict(self) -> dict:
        return {"drop": round(self.drop, 3), "relative_logit_mse": float(f"{self.error:.4g}")}


@dataclass
class Rescue:
    """What the search kept in float, and every candidate it measured on the way."""

    kept: list[str]
    budget: float
    score: Score
    baseline: Score
    ranking: list[tuple[str, Score]] = field(default_factory=list)
    steps: list[tuple[int, Score]] = field(default_factory=list)

    @property
    def met(self) -> bool:
        return self.score.drop <= self.budget

    def to_dict(self) -> dict:
        return {"budget": self.budget, "met": self.met, "kept_float": self.kept, "final": self.score.to_dict(),
                "all_int8": self.baseline.to_dict(),
                "ranking": [{"layer": name, **score.to_dict()} for name, score in self.ranking],
                "greedy": [{"layers": count, **score.to_dict()} for count, score in self.steps]}


def scorer(reference: np.ndarray, labels: np.ndarray | None) -> Callable[[np.ndarray], Score]:
    """Scores candidate logits against the float `reference` logits, on top-1 against `labels` when given."""
    top1 = reference.argmax(1)
    power = float(np.mean(reference ** 2)) or 1.0

    def score(logits: np.ndarray) -> Score:
        predicted = logits.argmax(1)
        if labels is not None:
            drop = 100.0 * (np.mean(top1 == labels) - np.mean(predicted == labels))
        else:
            drop = 100.0 * np.mean(predicted != top1)
        return Score(float(drop), float(np.mean((logits - reference) ** 2)) / power)

    return score


def search(layers: list[str], measure: Callable[[list[str]], Score], budget: float,
           say: Callable[[str], None] = print) -> Rescue:
    """Greedy search for the fewest `layers` to keep in float so that the measured drop is within `budget`.

    Every layer in float is measured first: if even that misses the budget, no subset can be relied on to meet
    it, and the search stops there (one candidate instead of twice the layer count). Otherwise each layer is
    measured alone in float; they are then added in the order that lowered the logit error most, one at a
    time, until the drop is within budget. `measure(kept)` quantizes with `kept` in float and scores the result.
    """
    baseline = measure([])
    say(f"all int8: drop {baseline.drop:.2f} points (budget {budget:g})")
    rescue = Rescue([], budget, baseline, baseline)
    if rescue.met:
        return rescue
    everything = measure(list(layers))
    say(f"all {len(layers)} in float: drop {everything.drop:.2f} points")
    if everything.drop > budget:
        rescue.kept, rescue.score = list(layers), everything
        rescue.steps.append((len(layers), everything))
        return rescue
    for index, layer in enumerate(layers, 1):
        rescue.ranking.append((layer, measure([layer])))
        if index % 10 == 0 or index == len(layers):
            say(f"ranked {index}/{len(layers)} layers")
    rescue.ranking.sort(key=lambda item: (item[1].error, item[1].drop))
    for count in range(1, len(layers) + 1):
        kept = [name for name, _ in rescue.ranking[:count]]
        score = everything if count == len(layers) else measure(kept)
        rescue.steps.append((count, score))
        say(f"{count} in float: drop {score.drop:.2f} points")
        rescue.kept, rescue.score = kept, score
        if rescue.met:
            break
    return rescue


def user_images(spec) -> tuple[np.ndarray, np.ndarray | None]:
    """The images of `spec.data`, preprocessed by the card (NCHW), and their labels (None unless all have one)."""
    from edgekit.images import find_images, load_batch

    images = find_images(spec.data, spec.card)
    labels = np.array([image.label for image in images]) if all(i.label is not None for i in images) else None
    return load_batch([image.path for image in images], spec.card), labels


def run(layers: list[str], measure: Callable[[list[str]], Score], spec, images: int, labelled: bool,
        what: str = "layers", hint: str = "") -> Rescue:
    """`search` within `spec.max_drop`, announced in the step's log.

    Raises:
        BudgetNotMetError: not even every layer in float meets the budget (exit code 3, as a failed verdict).
    """
    from edgekit.errors import BudgetNotMetError

    measured = "top-1 points lost" if labelled else "points of top-1 disagreement (the images have no labels)"
    print(f"keep-float search on {images} images of {spec.data}, budget {spec.max_drop:g} {measured}", flush=True)
    result = search(layers, measure, spec.max_drop, say=lambda line: print(line, flush=True))
    if not result.met:
        raise BudgetNotMetError(f"--max-drop {spec.max_drop:g}: even with all {len(layers)} {what} in float the "
                                f"drop is {result.score.drop:.2f} points on {images} images{hint}")
    return result
