"""What the UI and the REST API call: load models by revision (cached), analyse an upload, describe the model,
and the explanation lab: every method side by side, the randomisation check, deletion and insertion."""

from __future__ import annotations

import io
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from PIL import Image

from cxr_pneumonia.config import DECODE_TIMEOUT_SECONDS, DEFAULT_OPACITY, DEFAULT_PREVALENCE, JPEG_QUALITY
from cxr_pneumonia.evaluation import Progress, Submit, evaluate_images, submit_here
from cxr_pneumonia.examples import content_digest
from cxr_pneumonia.explain import (
    DEFAULT_METHOD,
    Explainer,
    TimedMap,
    display_image,
    draw_boxes,
    heatmap_on_image,
    overlay_heatmap,
    to_uint8,
)
from cxr_pneumonia.explanation_quality import (
    Box,
    PerturbationCurves,
    box_mask,
    boxes_in_field,
    localization_scores,
)
from cxr_pneumonia.gate import GateResult
from cxr_pneumonia.hub import (
    HUB_ERRORS,
    HubSettings,
    ModelLocation,
    Version,
    list_versions,
    resolve_model,
    version_of,
)
from cxr_pneumonia.imaging import decode_image_with_timeout, read_file_bytes
from cxr_pneumonia.lab import RandomisationCheck, faithfulness, randomisation_checks
from cxr_pneumonia.labelled_zip import LabelledArchive, missing_labels_error
from cxr_pneumonia.model import PneumoniaModel, Prediction, load_model_dir
from cxr_pneumonia.preprocessing import Field
from cxr_pneumonia.site_profile import ModelIdentity, SiteProfile, check_site, check_target, profile_from_rows

METRIC_KEYS = ("n", "accuracy", "auc", "sensitivity", "specificity")


class UnknownVersionError(LookupError):
    """A model version that cannot be served; `available` lists the tags that can (None: the list is unknown)."""

    def __init__(self, version: str, available: list[str] | None, reason: str = ""):
        self.version = version
        self.available = available
        if available is None:
            listing = "the list of versions cannot be fetched (the Hub is off or out of reach)"
        else:
            listing = f"available: {', '.join(available) or 'none'}"
        super().__init__(f"Model version {version[:60]!r} cannot be served{reason}; {listing}.")


@dataclass(frozen=True)
class LoadedModel:
    """A model ready to serve, with where it came from."""

    model: PneumoniaModel
    explainer: Explainer
    location: ModelLocation
    version: str | None
    profile: SiteProfile | None = None

    def with_profile(self, profile: SiteProfile | None) -> LoadedModel:
        """This model deciding at a site profile's threshold and band; ProfileMismatchError (409) when the profile
        was fitted for another version or other weights."""
        if profile is None:
            return self
        profile.check_model(self.model.config.extra.get("version"), self.model.weights_sha256)
        model = self.model.with_decision(profile.threshold, profile.uncertain_band)
        return replace(self, model=model, explainer=self.explainer.for_model(model), profile=profile)

    def info(self) -> dict:
        """JSON-ready description: repo, revision, commit, version, source and test metrics."""
        test = self.model.metrics.get("test", {})
        return {
            "repo_id": self.location.repo_id,
            "revision": self.location.revision,
            "commit": self.location.commit,
            "version": self.version,
            "source": self.location.source,
            "fallback_reason": self.location.fallback_reason,
            "fallback_code": self.location.fallback_code,
            "architecture": self.model.config.extra.get("architecture"),
            "image_size": self.model.config.image_size,
            "threshold": self.model.config.threshold,
            "temperature": self.model.config.temperature,
            "input_gate": self.model.gate.present,
            "gradcam_grid": self.model.gradcam_grid,
            "calibrated_prevalence": self.model.config.calibrated_prevalence,
            "uncertain_band": list(band) if (band := self.model.config.uncertain_band) else None,
            "site_profile": None if self.profile is None else {
                "site": self.profile.site, "threshold": self.profile.threshold, "n_normal": self.profile.n_normal,
                "target_specificity": self.profile.target_specificity,
                "expected_specificity": self.profile.expected_specificity,
                "specificity_lower_bound": self.profile.specificity_lower_bound},
            "metrics": {key: test.get(key) for key in METRIC_KEYS},
            "test_by_source": {source: {key: metrics.get(key) for key in METRIC_KEYS}
                               for source, metrics in self.model.metrics.get("test_by_source", {}).items()},
        }


@dataclass(frozen=True)
class Analysis:
    """One analysed image: the gate's verdict, and unless it refused the image the prediction and
    heatmap overlay; the original for display, and the model used."""

    gate: GateResult
    prediction: Prediction | None
    original: np.ndarray
    overlay: np.ndarray | None
    heatmap: np.ndarray | None
    method: str
    model_info: dict
    boxes: tuple[Box, ...] = ()
    box_scores: dict[str, float | bool | None] = field(default_factory=dict)

    @property
    def refused(self) -> bool:
        """True when the input gate refused the image: then there is no prediction and no heatmap."""
        return not self.gate.passed

    @property
    def decision(self) -> str:
        """The decision at the model's threshold in one plain sentence, or why the image was refused."""
        if self.prediction is None:
            return self.gate.explanation()
        prediction = self.prediction
        percent = 100 * prediction.pneumonia_probability
        side = "at or above" if prediction.label == "PNEUMONIA" else "below"
        finding = "signs of pneumonia" if prediction.label == "PNEUMONIA" else "no sign of pneumonia"
        return (
            f"The model sees {finding}: pneumonia probability {percent:.0f} %, {side} its decision "
            f"threshold of {100 * prediction.threshold:.0f} %. This is a demo, not a diagnosis."
        )

    @property
    def box_statement(self) -> str:
        """Where the map lies against the radiologists' boxes, in one sentence (or that none are known)."""
        if not self.boxes:
            return ("No radiologists' boxes are known for this image: only the adult examples from the RSNA test "
                    "split that show pneumonia have them.")
        if not self.box_scores:
            return ""
        return box_sentence(self.box_scores, f"The {self.method} map of {self.prediction.label}")

    def as_json(self, prevalence: float = DEFAULT_PREVALENCE) -> dict:
        """The result as JSON-ready data: gate verdict, probability, label and answer (null when refused), the
        probability at `prevalence` (null when refused or when the model states no calibrated prevalence), model."""
        at_prevalence = None
        if self.prediction is not None and self.prediction.calibrated_prevalence is not None:
            at_prevalence = self.prediction.probability_at(prevalence)
        return {
            "gate_passed": self.gate.passed,
            "gate_checked": self.gate.checked,
            "gate_message": self.gate.message,
            "gate_scores": self.gate.scores,
            "gate_evidence": self.gate.evidence,
            "gate_limit": None if self.gate.rule is None else self.gate.rule.limit,
            "pneumonia_probability": None if self.prediction is None else self.prediction.pneumonia_probability,
            "label": None if self.prediction is None else self.prediction.label,
            "answer": None if self.prediction is None else self.prediction.answer,
            "prevalence": prevalence,
            "pneumonia_probability_at_prevalence": at_prevalence,
            "threshold": self.model_info["threshold"],
            "site": None if self.model_info.get("site_profile") is None else self.model_info["site_profile"]["site"],
            "model_version": self.model_info["version"],
            "model_commit": self.model_info["commit"],
            **({"boxes": [[box.x, box.y, box.width, box.height] for box in self.boxes]} if self.boxes else {}),
            **self.box_scores,
        }


def box_sentence(scores: Mapping[str, float | bool | None], subject: str) -> str:
    """The hit test and the mass share inside the boxes as a sentence about `subject` (a map)."""
    if scores["box_mass_share"] is None:
        return f"{subject} is empty (no pixel has positive evidence): there is nothing to hold against the boxes."
    where = "inside" if scores["box_hit"] else "outside"
    return (f"{subject} peaks **{where}** the radiologists' boxes; {100 * scores['box_mass_share']:.0f} % of its "
            f"mass lies in them, {scores['box_mass_ratio']:.1f} times what a uniform map would put there.")


def box_scores(heatmap: np.ndarray, boxes: tuple[Box, ...], image_shape: tuple[int, ...]
               ) -> dict[str, float | bool | None]:
    """The pointing-game hit and the map's mass share and ratio inside the boxes (empty without boxes; the
    shares None, JSON's null, for an empty map, and then no hit)."""
    if not boxes:
        return {}
    mask = box_mask(boxes, image_shape[1], image_shape[0], heatmap.shape[1], heatmap.shape[0])
    scores = localization_scores(heatmap, mask)
    if np.isnan(scores["mass_share"]):
        return {"box_hit": False, "box_mass_share": None, "box_mass_ratio": None}
    return {"box_hit": bool(scores["hit"]), "box_mass_share": scores["mass_share"],
            "box_mass_ratio": scores["mass_ratio"]}


@dataclass(frozen=True)
class MethodView:
    """One method's map in the comparison: its time, its overlay and its scores against the boxes."""

    timed: TimedMap
    overlay: np.ndarray
    box_scores: dict[str, float | bool | None]


@dataclass(frozen=True)
class Comparison:
    """Every method's map of the decided label for one image (none when the input gate refused it)."""

    analysis: Analysis
    views: dict[str, MethodView]

    def as_json(self) -> dict:
        """The analysis as JSON with each method's time and box scores."""
        methods = {method: {"ms": 1000 * view.timed.seconds, **view.box_scores} for method, view in self.views.items()}
        return {**self.analysis.as_json(), "methods": methods}


@dataclass(frozen=True)
class LabChecks:
    """The randomisation check and the deletion and insertion curves of every method, for one image."""

    label: str
    trained_overlays: dict[str, np.ndarray]
    randomised_overlays: dict[str, np.ndarray]
    randomisation: dict[str, RandomisationCheck]
    curves: dict[str, PerturbationCurves]
    randomised_layers: tuple[str, ...]

    def as_json(self) -> dict:
        """Per method: Spearman rho, whether it passed, and the areas under the deletion and insertion curves."""
        return {"explained_label": self.label, "randomised_layers": list(self.randomised_layers),
                "methods": {method: {"randomisation_rho": check.rho, "randomisation_passed": check.passed,
                                     "deletion_auc": self.curves[method].deletion_auc,
                                     "insertion_auc": self.curves[method].insertion_auc}
                            for method, check in self.randomisation.items()}}


@dataclass(frozen=True)
class Prepared:
    """A decoded image made ready for the model, with what the display needs."""

    gray: np.ndarray
    shown: np.ndarray
    model_input: np.ndarray
    boxes: tuple[Box, ...]
    loaded: LoadedModel
    field: Field

    def heatmap_shown(self, heatmap: np.ndarray) -> np.ndarray:
        """A map of the model input placed over the shown image."""
        return heatmap_on_image(heatmap, self.field, self.gray.shape, self.shown.shape)

    def box_scores(self, heatmap: np.ndarray) -> dict[str, float | bool | None]:
        """box_scores of a map of the model input, the boxes moved into the field it reads."""
        boxes = tuple(boxes_in_field(self.boxes, self.field.top, self.field.left))
        return box_scores(heatmap, boxes, (self.field.height, self.field.width))


class PneumoniaService:
    """Serves predictions and explanations for the configured model and any tagged version."""

    def __init__(self, settings: HubSettings, known_boxes: Mapping[str, tuple[Box, ...]] | None = None,
                 site_profile: SiteProfile | None = None):
        self.settings = settings
        self.known_boxes = dict(known_boxes or {})  # the radiologists' boxes of the examples, by file digest
        self._models: dict[str, LoadedModel] = {}
        self._weights: dict[Path, tuple[PneumoniaModel, Explainer]] = {}
        self._lock = threading.Lock()
        self._loading: dict[str, threading.Lock] = {}
        self._versions: list[Version] | None = None
        self.default = self.model(settings.revision)
        # A hospital's own copy decides at its site's threshold (SITE_PROFILE); checked against the model now.
        self.site_profile = site_profile
        self.default.with_profile(site_profile)

    def versions(self) -> list[Version]:
        """Version tags on the Hub, cached once fetched (empty while the Hub is off or out of reach)."""
        if self._versions is None:
            try:
                self._versions = [] if self.settings.offline else list_versions(self.settings)
            except HUB_ERRORS:
                return []  # not cached: the next call asks the Hub again
        return self._versions

    def version_tags(self) -> list[str] | None:
        """The version tags on the Hub, or None when they cannot be listed (offline or out of reach)."""
        if self.settings.offline:
            return None
        tags = [version.tag for version in self.versions()]
        return tags if self._versions is not None else None

    def served_revision(self, version: str | None) -> str:
        """The revision to load for a requested version: the configured one for no version, for the configured
        revision and for the served model's own version name; a listed tag as it is; else UnknownVersionError."""
        if not version or version in (self.settings.revision, self.default.version):
            return self.settings.revision
        tags = self.version_tags()
        if tags is None or version not in tags:
            raise UnknownVersionError(version, tags)
        return version

    def serving(self, revision: str | None = None, profile: SiteProfile | None = None) -> LoadedModel:
        """The model at `revision` deciding at `profile`'s threshold, or at the copy's own site profile when none is
        given and it was fitted for this model; ProfileMismatchError for a profile of another model."""
        loaded = self.model(revision)
        if profile is None and self.site_profile is not None:
            served = (loaded.model.config.extra.get("version"), loaded.model.weights_sha256)
            if served == (self.site_profile.model_version, self.site_profile.weights_sha256):
                profile = self.site_profile
        return loaded.with_profile(profile)

    def model(self, revision: str | None = None) -> LoadedModel:
        """The model at `revision` (default: the configured one), loaded once and cached. Another version than
        the configured one must be a listed tag, and is never replaced by the bundled model: UnknownVersionError.

        Loading one revision never blocks requests for the others: each revision has its own lock.
        """
        if revision and hasattr(self, "default"):
            revision = self.served_revision(revision)
        revision = revision or self.settings.revision
        with self._lock:
            if revision in self._models:
                return self._models[revision]
            loading = self._loading.setdefault(revision, threading.Lock())
        with loading:
            with self._lock:
                if revision in self._models:
                    return self._models[revision]
            loaded = self._load(revision)
            if revision != self.settings.revision and loaded.location.source != "hub":
                raise UnknownVersionError(revision, self.version_tags(), f" ({loaded.location.fallback_reason})")
            with self._lock:
                self._models[revision] = loaded
            return loaded

    def _load(self, revision: str) -> LoadedModel:
        location = resolve_model(self.settings, revision)
        with self._lock:
            cached = self._weights.get(location.directory)  # several revisions may fall back to one copy
        if cached is None:
            model = load_model_dir(location.directory)
            explainer = Explainer(model)
            explainer.warm_up()
            cached = (model, explainer)
            with self._lock:
                cached = self._weights.setdefault(location.directory, cached)
        model, explainer = cached
        return LoadedModel(model, explainer, location, version_of(location, self.versions()))

    def fit_profile(self, archive: LabelledArchive, site: str, target: float, revision: str | None = None,
                    submit: Submit = submit_here, progress: Progress | None = None) -> SiteProfile:
        """A site profile fitted on an opened zip's labelled X-rays (cxr_pneumonia.site_profile): ProfileError (400)
        for a bad site name, target or too few normals, ArchiveError when the zip has no labelled image."""
        site, target = check_site(site), check_target(target)
        loaded = self.model(revision)
        if not archive.images:
            raise missing_labels_error(archive)
        results = evaluate_images(loaded.model, archive.images, submit, progress)
        rows = [(result.label, result.probability, bool(result.refused)) for result in results]
        return profile_from_rows(site, ModelIdentity.of(loaded.model), target, rows)

    def analyze_file(self, path: str | Path, method: str = DEFAULT_METHOD, opacity: float = DEFAULT_OPACITY,
                     revision: str | None = None, show_boxes: bool = False, profile: SiteProfile | None = None
                     ) -> Analysis:
        """Analyse an image file; raises ImageDecodeError with a user-facing message. Known boxes are scored
        in any case, drawn when `show_boxes`; the decision is at `profile`'s threshold when one is given."""
        return self._analyze(self._prepare_file(path, revision, profile), method, opacity, show_boxes)

    def analyze_bytes(self, data: bytes, method: str = DEFAULT_METHOD, opacity: float = DEFAULT_OPACITY,
                      revision: str | None = None, show_boxes: bool = False, profile: SiteProfile | None = None
                      ) -> Analysis:
        """Analyse an image file's bytes, e.g. an HTTP request body; raises ImageDecodeError like analyze_file."""
        return self._analyze(self._prepare_bytes(data, revision, profile=profile), method, opacity, show_boxes)

    def compare_file(self, path: str | Path, opacity: float = DEFAULT_OPACITY, revision: str | None = None,
                     show_boxes: bool = False, profile: SiteProfile | None = None) -> Comparison:
        """Every method's map of the decided label for an image file, timed."""
        return self._compare(self._prepare_file(path, revision, profile), opacity, show_boxes)

    def compare_bytes(self, data: bytes, opacity: float = DEFAULT_OPACITY, revision: str | None = None,
                      show_boxes: bool = False, profile: SiteProfile | None = None) -> Comparison:
        """compare_file for an image file's bytes."""
        return self._compare(self._prepare_bytes(data, revision, profile=profile), opacity, show_boxes)

    def check_file(self, path: str | Path, opacity: float = DEFAULT_OPACITY, revision: str | None = None
                   ) -> LabChecks | None:
        """The randomisation check and the deletion and insertion curves of every method (None if the gate refuses)."""
        return self.check_prepared(self._prepare_file(path, revision), opacity)

    def check_prepared(self, prepared: Prepared, opacity: float = DEFAULT_OPACITY) -> LabChecks | None:
        """check_file for a prepared image."""
        model, explainer = prepared.loaded.model, prepared.loaded.explainer
        gate, prediction, _ = explainer.gate_predict_and_explain(prepared.model_input)
        if not gate.passed:
            return None
        label = prediction.label
        trained = {method: timed.heatmap for method, timed in explainer.compare(prepared.model_input, label).items()}
        checks = randomisation_checks(explainer, prepared.model_input, label, trained)
        shown = prepared.shown
        return LabChecks(
            label=label,
            trained_overlays={method: overlay_heatmap(shown, prepared.heatmap_shown(heatmap), opacity)
                              for method, heatmap in trained.items()},
            randomised_overlays={method: overlay_heatmap(shown, prepared.heatmap_shown(check.randomised), opacity)
                                 for method, check in checks.items()},
            randomisation=checks,
            curves=faithfulness(model, prepared.model_input, label, trained),
            randomised_layers=explainer.randomised_layers(),
        )

    def boxes_of(self, data: bytes) -> tuple[Box, ...]:
        """The radiologists' boxes if these bytes are one of the examples that has them."""
        return self.known_boxes.get(content_digest(data), ()) if self.known_boxes else ()

    def prepare_file(self, path: str | Path, revision: str | None = None, profile: SiteProfile | None = None
                     ) -> Prepared:
        """An image file decoded and made ready for the model at `revision` (deciding at `profile`'s threshold
        when given); raises ImageDecodeError."""
        return self._prepare_file(path, revision, profile)

    def prepare_again(self, prepared: Prepared, revision: str | None, profile: SiteProfile | None = None
                      ) -> Prepared:
        """The same decoded image made ready for another model version or profile (no file is read)."""
        return self._prepare(prepared.gray, prepared.boxes, revision, profile)

    def analyze_prepared(self, prepared: Prepared, method: str = DEFAULT_METHOD, opacity: float = DEFAULT_OPACITY,
                         show_boxes: bool = False) -> Analysis:
        """The gate, the prediction and the heatmap of a prepared image."""
        return self._analyze(prepared, method, opacity, show_boxes)

    def remap(self, prepared: Prepared, analysis: Analysis, method: str, opacity: float, show_boxes: bool) -> Analysis:
        """The analysis with another method's map of the same decision: the map alone is recomputed."""
        if analysis.refused:
            return analysis
        heatmap = prepared.loaded.explainer.heatmap(prepared.model_input, analysis.prediction.label, method)
        return replace(analysis, method=method, heatmap=heatmap,
                       overlay=self._overlay(prepared, heatmap, opacity, show_boxes),
                       box_scores=prepared.box_scores(heatmap))

    def reblend(self, prepared: Prepared, analysis: Analysis, opacity: float, show_boxes: bool) -> Analysis:
        """The analysis with its cached map blended again over the image: no model runs."""
        if analysis.refused:
            return analysis
        return replace(analysis, overlay=self._overlay(prepared, analysis.heatmap, opacity, show_boxes))

    def compare_prepared(self, prepared: Prepared, opacity: float = DEFAULT_OPACITY,
                         show_boxes: bool = False) -> Comparison:
        """Every method's map of the decided label for a prepared image, timed."""
        return self._compare(prepared, opacity, show_boxes)

    def _prepare_file(self, path: str | Path, revision: str | None, profile: SiteProfile | None = None) -> Prepared:
        # Only the suffix reaches the decoder (it tells DICOM): an upload's name may be a patient id.
        return self._prepare_bytes(read_file_bytes(path), revision, "upload" + Path(path).suffix.lower(), profile)

    def _prepare_bytes(self, data: bytes, revision: str | None, filename: str | None = None,
                       profile: SiteProfile | None = None) -> Prepared:
        gray = decode_image_with_timeout(data, filename, DECODE_TIMEOUT_SECONDS)
        return self._prepare(gray, self.boxes_of(data), revision, profile)

    def _prepare(self, gray: np.ndarray, boxes: tuple[Box, ...], revision: str | None,
                 profile: SiteProfile | None = None) -> Prepared:
        loaded = self.serving(revision, profile)
        model_input, field = loaded.model.prepare(gray)
        return Prepared(gray, display_image(gray), model_input, boxes, loaded, field)

    def _analyze(self, prepared: Prepared, method: str, opacity: float, show_boxes: bool) -> Analysis:
        loaded = prepared.loaded
        gate, prediction, heatmap = loaded.explainer.gate_predict_and_explain(prepared.model_input, method)
        original = to_uint8(prepared.shown)
        if not gate.passed:
            return Analysis(gate, None, original, None, None, method, loaded.info(), prepared.boxes)
        return Analysis(
            gate=gate,
            prediction=prediction,
            original=original,
            overlay=self._overlay(prepared, heatmap, opacity, show_boxes),
            heatmap=heatmap,
            method=method,
            model_info=loaded.info(),
            boxes=prepared.boxes,
            box_scores=prepared.box_scores(heatmap),
        )

    def _compare(self, prepared: Prepared, opacity: float, show_boxes: bool) -> Comparison:
        analysis = self._analyze(prepared, DEFAULT_METHOD, opacity, show_boxes)
        if analysis.refused:
            return Comparison(analysis, {})
        maps = prepared.loaded.explainer.compare(prepared.model_input, analysis.prediction.label)
        return Comparison(analysis, {
            method: MethodView(timed, self._overlay(prepared, timed.heatmap, opacity, show_boxes),
                               prepared.box_scores(timed.heatmap))
            for method, timed in maps.items()})

    @staticmethod
    def _overlay(prepared: Prepared, heatmap: np.ndarray, opacity: float, show_boxes: bool) -> np.ndarray:
        overlay = overlay_heatmap(prepared.shown, prepared.heatmap_shown(heatmap), opacity)
        if show_boxes and prepared.boxes:
            return draw_boxes(overlay, prepared.boxes, prepared.gray.shape[1], prepared.gray.shape[0])
        return overlay


def encode_jpeg(pixels: np.ndarray) -> bytes:
    """An image (uint8 gray or RGB) as the JPEG bytes the UI and the REST API send back."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()
