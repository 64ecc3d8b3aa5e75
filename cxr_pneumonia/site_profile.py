"""A site profile: the decision threshold fitted on a hospital's own normal X-rays, as a small JSON document that
travels with the user (the server keeps none).

The fitting rule is distribution-free (split conformal prediction, Vovk et al. 2005; Angelopoulos and Bates,
"A gentle introduction to conformal prediction and distribution-free uncertainty quantification", 2021): with n
normal X-rays the input gate accepts, the threshold lies just above the k-th lowest calibrated probability,
k = ceil((n + 1) x target). A new normal X-ray of the same site is then called NORMAL with probability k / (n + 1)
>= target, whatever the model's scores look like there; given the n images, that probability follows
Beta(k, n + 1 - k), whose 5 % quantile is the one-sided 95 % lower bound the profile reports.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.stats import beta

from cxr_pneumonia.config import (
    LABELS,
    MIN_PROFILE_NORMALS,
    MIN_PROFILE_PNEUMONIAS,
    POSITIVE_LABEL,
    PROFILE_SENSITIVITY_WARNING,
    PROFILE_TARGET_RANGE,
    RECOMMENDED_PROFILE_NORMALS,
)
from cxr_pneumonia.metrics import wilson_interval

if TYPE_CHECKING:
    from cxr_pneumonia.model import PneumoniaModel

PROFILE_FORMAT = 1
MAX_SITE_NAME = 64
LOWER_BOUND_LEVEL = 0.95


class ProfileError(ValueError):
    """A profile that cannot be made or read (HTTP 400); `code` and `values` let a page say it in its language."""

    def __init__(self, message: str, code: str = "malformed", **values: object):
        super().__init__(message)
        self.code = code
        self.values = values


class ProfileMismatchError(ProfileError):
    """A well-formed profile fitted for another model version or other weights (HTTP 409)."""


@dataclass(frozen=True)
class SiteProfile:
    """A threshold fitted for one site and one model's weights, with how sure its specificity is."""

    site: str
    model_version: str
    weights_sha256: str
    threshold: float
    uncertain_band: tuple[float, float] | None
    target_specificity: float
    n_normal: int
    n_pneumonia: int
    n_refused: int
    expected_specificity: float
    specificity_lower_bound: float
    sensitivity: float | None
    sensitivity_interval: tuple[float, float] | None
    warnings: tuple[str, ...]
    fitted_at: str
    format_version: int = PROFILE_FORMAT

    def to_json(self) -> dict[str, Any]:
        """The JSON document, with a checksum of its content so that an edited copy is refused."""
        content = _content(self)
        return {**content, "checksum": _checksum(content)}

    @classmethod
    def from_json(cls, document: Any) -> SiteProfile:
        """Read a profile document; ProfileError when it is malformed or was edited."""
        if not isinstance(document, dict):
            raise ProfileError("A site profile must be a JSON object.")
        expected = {field.name for field in fields(cls)} | {"checksum"}
        if set(document) != expected:
            missing, unknown = sorted(expected - set(document)), sorted(set(document) - expected)
            raise ProfileError(f"The site profile's keys are wrong (missing: {', '.join(missing) or 'none'}; "
                               f"unknown: {', '.join(unknown) or 'none'}).", "malformed_keys")
        content = {key: value for key, value in document.items() if key != "checksum"}
        if document["checksum"] != _checksum(content):
            raise ProfileError("The site profile was changed after it was fitted (its checksum does not match). "
                               "Fit it again rather than editing it.", "tampered")
        try:
            profile = cls(**{**content, "uncertain_band": _pair(content["uncertain_band"]),
                             "sensitivity_interval": _pair(content["sensitivity_interval"]),
                             "warnings": tuple(content["warnings"])})
        except (TypeError, ValueError) as error:
            raise ProfileError(f"The site profile is malformed: {error}") from None
        profile.validate()
        return profile

    def validate(self) -> None:
        """ProfileError unless every field has a sensible type and value."""
        checks = (
            (self.format_version == PROFILE_FORMAT, f"format_version must be {PROFILE_FORMAT}"),
            (isinstance(self.site, str) and 0 < len(self.site) <= MAX_SITE_NAME, "site must be 1-64 characters"),
            (_probability(self.threshold), "threshold must lie strictly between 0 and 1"),
            (self.uncertain_band is None or (_probability(self.uncertain_band[0]) and _probability(
                self.uncertain_band[1]) and self.uncertain_band[0] <= self.threshold <= self.uncertain_band[1]),
             "uncertain_band must hold the threshold"),
            (_probability(self.target_specificity), "target_specificity must lie between 0 and 1"),
            (all(isinstance(n, int) and n >= 0 for n in (self.n_normal, self.n_pneumonia, self.n_refused)),
             "the counts must be whole numbers"),
        )
        for passed, message in checks:
            if not passed:
                raise ProfileError(f"The site profile is malformed: {message}.")

    def check_model(self, version: str | None, weights_sha256: str | None) -> None:
        """ProfileMismatchError unless the profile was fitted for this model version and weights."""
        if self.model_version != version or self.weights_sha256 != weights_sha256:
            raise ProfileMismatchError(
                f"This site profile was fitted for model {self.model_version} (weights {self.weights_sha256[:12]}); "
                f"the model here is {version} (weights {(weights_sha256 or 'unknown')[:12]}). Fit it again on "
                "this model.", "other_model", fitted_for=self.model_version, served=version)

    def describe(self) -> str:
        """One line for a page or a log: where the threshold comes from."""
        return f"the threshold fitted for {self.site} on {self.n_normal} normal X-rays"


def _content(profile: SiteProfile) -> dict[str, Any]:
    content = asdict(profile)
    for key in ("uncertain_band", "sensitivity_interval"):
        content[key] = None if content[key] is None else list(content[key])
    content["warnings"] = list(content["warnings"])
    return content


def _checksum(content: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(content, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _pair(value: Any) -> tuple[float, float] | None:
    if value is None:
        return None
    low, high = value
    return float(low), float(high)


def _probability(value: Any) -> bool:
    return isinstance(value, float | int) and not isinstance(value, bool) and 0.0 < value < 1.0


def rank_for(n: int, target: float) -> int:
    """k = ceil((n + 1) x target): the order statistic of the normals' probabilities the threshold sits above."""
    return math.ceil(round((n + 1) * target, 9))  # round: (n + 1) x target computed as 26.000000000000004 is 26


def normals_needed(target: float) -> int:
    """The fewest normal X-rays for which the rule can reach `target`, and at least MIN_PROFILE_NORMALS."""
    n = MIN_PROFILE_NORMALS
    while rank_for(n, target) > n:
        n += 1
    return n


def order_statistic_threshold(normal_probabilities: np.ndarray, target: float) -> tuple[float, int]:
    """The threshold: the k-th lowest normal probability (a new normal is called NORMAL when it scores below it,
    with probability k / (n + 1)); and k. ProfileError when there are too few normals."""
    scores = np.sort(np.asarray(normal_probabilities, dtype=np.float64))
    n, needed = len(scores), normals_needed(target)
    if n < needed:
        raise ProfileError(f"{n} normal X-rays were accepted; at least {needed} are needed to fit a threshold at a "
                           f"specificity of {target:.0%} ({RECOMMENDED_PROFILE_NORMALS} or more are recommended).",
                           "too_few_normals", n=n, needed=needed, target=target)
    k = rank_for(n, target)
    return float(scores[k - 1]), k


def moved_band(band: tuple[float, float] | None, old: float, new: float) -> tuple[float, float] | None:
    """The UNCERTAIN band moved from threshold `old` to `new`, keeping its widths in logit space."""
    if band is None:
        return None
    shift = _logit(new) - _logit(old)
    return _sigmoid(_logit(band[0]) + shift), _sigmoid(_logit(band[1]) + shift)


def _logit(probability: float) -> float:
    probability = min(max(probability, 1e-12), 1.0 - 1e-12)
    return math.log(probability / (1.0 - probability))


def _sigmoid(value: float) -> float:
    return 1.0 / (1.0 + math.exp(-value))


def check_target(target: float) -> float:
    """The target specificity, or ProfileError outside PROFILE_TARGET_RANGE."""
    low, high = PROFILE_TARGET_RANGE
    if not isinstance(target, float | int) or isinstance(target, bool) or not low <= target <= high:
        raise ProfileError(f"The target specificity must lie between {low} and {high}.", "bad_target",
                           low=low, high=high)
    return float(target)


def check_site(site: Any) -> str:
    """The site's name, stripped, or ProfileError when it is empty or too long."""
    if not isinstance(site, str) or not site.strip() or len(site.strip()) > MAX_SITE_NAME:
        raise ProfileError(f"The site's name must be 1 to {MAX_SITE_NAME} characters.", "bad_site",
                           limit=MAX_SITE_NAME)
    return site.strip()


@dataclass(frozen=True)
class ModelIdentity:
    """What a profile is fitted for: the model's version and weights, and its own threshold and band."""

    version: str
    weights_sha256: str
    threshold: float
    uncertain_band: tuple[float, float] | None

    @classmethod
    def of(cls, model: PneumoniaModel) -> ModelIdentity:
        """A loaded model's identity, with its own threshold and band."""
        config = model.config
        return cls(str(config.extra.get("version")), str(model.weights_sha256), config.threshold, config.uncertain_band)


def fit_profile(site: str, model: ModelIdentity, target: float, normal_probabilities: np.ndarray,
                pneumonia_probabilities: np.ndarray, n_refused: int, fitted_at: datetime | None = None) -> SiteProfile:
    """The site profile of the accepted normal and pneumonia X-rays' calibrated probabilities (see the module)."""
    site, target = check_site(site), check_target(target)
    threshold, k = order_statistic_threshold(normal_probabilities, target)
    n = len(normal_probabilities)
    pneumonias = np.asarray(pneumonia_probabilities, dtype=np.float64)
    sensitivity, interval, warnings = None, None, []
    if len(pneumonias) >= MIN_PROFILE_PNEUMONIAS:
        found = int((pneumonias >= threshold).sum())
        sensitivity, interval = found / len(pneumonias), tuple(wilson_interval(found, len(pneumonias)))
        if sensitivity < PROFILE_SENSITIVITY_WARNING:
            warnings.append("low_sensitivity")
    if n < RECOMMENDED_PROFILE_NORMALS:
        warnings.append("few_normals")
    return SiteProfile(
        site=site, model_version=model.version, weights_sha256=model.weights_sha256, threshold=threshold,
        uncertain_band=moved_band(model.uncertain_band, model.threshold, threshold), target_specificity=target,
        n_normal=n, n_pneumonia=len(pneumonias), n_refused=int(n_refused), expected_specificity=k / (n + 1),
        specificity_lower_bound=float(beta.ppf(1.0 - LOWER_BOUND_LEVEL, k, n + 1 - k)), sensitivity=sensitivity,
        sensitivity_interval=interval, warnings=tuple(warnings),
        fitted_at=(fitted_at or datetime.now(UTC)).isoformat(timespec="seconds"))


def profile_from_rows(site: str, model: ModelIdentity, target: float, rows: list[tuple[str, float | None, bool]],
                      fitted_at: datetime | None = None) -> SiteProfile:
    """fit_profile on labelled rows (label, calibrated probability or None when unread, refused by the gate): the
    X-rays the gate accepts, the refused ones counted."""
    accepted = [(label, probability) for label, probability, refused in rows if probability is not None and not refused]
    return fit_profile(site, model, target,
                       np.array([probability for label, probability in accepted if label == LABELS[0]]),
                       np.array([probability for label, probability in accepted if label == POSITIVE_LABEL]),
                       sum(bool(refused) for _, probability, refused in rows if probability is not None), fitted_at)


def read_site_profile(path: str | Path | None) -> SiteProfile | None:
    """The profile in the JSON file at `path` (None for no path); ProfileError when it cannot be used."""
    if not path:
        return None
    try:
        document = json.loads(Path(path).read_text())
    except (OSError, ValueError, RecursionError) as error:
        raise ProfileError(f"The site profile {path} cannot be read: {error}") from None
    return SiteProfile.from_json(document)


def without_date(profile: SiteProfile) -> SiteProfile:
    """The profile with its date blanked: what must be equal when the same images are fitted twice."""
    return replace(profile, fitted_at="")
