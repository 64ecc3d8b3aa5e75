"""The explanation lab on one image: the randomisation check and the deletion and insertion curves of every
method's map (the measures are cxr_pneumonia.explanation_quality's), and a plot of the curves."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure

from cxr_pneumonia.explain import Explainer
from cxr_pneumonia.explanation_quality import (
    PerturbationCurves,
    blurred_baseline,
    passes_randomisation,
    perturbation_curves,
    rank_correlation,
)
from cxr_pneumonia.model import PneumoniaModel


@dataclass(frozen=True)
class RandomisationCheck:
    """One method's map from the model with its top re-initialised, and its rank correlation with the trained map."""

    randomised: np.ndarray
    rho: float

    @property
    def passed(self) -> bool:
        """True when the map changed enough (explanation_quality.RANDOMISATION_MAX_RHO)."""
        return passes_randomisation(self.rho)


def randomisation_checks(explainer: Explainer, model_input: np.ndarray, label: str,
                         trained: Mapping[str, np.ndarray]) -> dict[str, RandomisationCheck]:
    """Each method's map of `label` from the randomised-top copy, against its map from the trained model."""
    randomised = explainer.randomised_top()
    checks = {}
    for method, heatmap in trained.items():
        other = randomised.heatmap(model_input, label, method)
        checks[method] = RandomisationCheck(other, rank_correlation(heatmap, other))
    return checks


def explained_probability(model: PneumoniaModel, label: str) -> Callable[[np.ndarray], np.ndarray]:
    """A batch of model inputs to the calibrated probability of `label`."""
    if label == "PNEUMONIA":
        return model.probabilities
    return lambda batch: 1.0 - model.probabilities(batch)


def faithfulness(model: PneumoniaModel, model_input: np.ndarray, label: str,
                 maps: Mapping[str, np.ndarray]) -> dict[str, PerturbationCurves]:
    """Each map's deletion and insertion curves for the probability of `label`, against the blurred baseline."""
    probability = explained_probability(model, label)
    baseline = blurred_baseline(model_input)
    return {method: perturbation_curves(probability, model_input, heatmap, baseline)
            for method, heatmap in maps.items()}


def curves_figure(curves: Mapping[str, PerturbationCurves], label: str) -> Figure:
    """Deletion above insertion for every method, the area under each in the legend; stacked and in large type
    so that the figure stays readable when a phone shrinks it to its width."""
    figure = Figure(figsize=(6, 7), layout="constrained")  # no pyplot: safe in the server's threads
    deletion, insertion = figure.subplots(2, 1, sharex=True)
    for method, curve in curves.items():
        deletion.plot(curve.fractions, curve.deletion, label=f"{method} (AUC {curve.deletion_auc:.2f})")
        insertion.plot(curve.fractions, curve.insertion, label=f"{method} (AUC {curve.insertion_auc:.2f})")
    for axes, title in ((deletion, "Deletion: top pixels blurred first (low AUC is good)"),
                        (insertion, "Insertion: top pixels restored first (high AUC is good)")):
        axes.set_title(title, fontsize=12)
        axes.set_ylabel(f"probability of {label}", fontsize=11)
        axes.set_ylim(-0.02, 1.02)
        axes.grid(alpha=0.3)
        axes.legend(fontsize=10)
        axes.tick_params(labelsize=10)
    insertion.set_xlabel("share of pixels changed", fontsize=11)
    return figure
