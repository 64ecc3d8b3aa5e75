"""Project-wide constants: labels, input size, default model repo and input limits."""

from pathlib import Path

LABELS: tuple[str, str] = ("NORMAL", "PNEUMONIA")
POSITIVE_LABEL = "PNEUMONIA"
# The third answer of models with an uncertain band: a clinician must read the X-ray.
UNCERTAIN = "UNCERTAIN"
# The prevalence the page and the API assume unless told (models from v3.0.0 are calibrated for it).
DEFAULT_PREVALENCE = 0.5

DEFAULT_IMAGE_SIZE = 128
MAX_IMAGE_SIZE = 224

# The canonical input (cxr_pneumonia.preprocessing). The exposed field is decided on a copy this size; a line is a
# flat border when its spread is under this share of the central field's; a side loses nothing under the minimum
# share and at most the maximum.
FIELD_WORKING_SIZE = 128
FIELD_FLATNESS = 0.06
FIELD_MAX_CROP = 0.4
FIELD_MIN_CROP = 0.03
# Energy bands: the working size (the RSNA copies' own), the bands' Gaussian sigmas in its pixels, and the limits of
# the gain a band may get in one pass.
BAND_WORKING_SIZE = 256
BAND_SIGMAS = (1, 2, 4, 8, 16)
BAND_GAIN_LIMITS = (0.5, 2.0)
# Passes of split and scaling: overlapping bands leak a gain into their neighbours, so one pass undoes about 90 %.
BAND_PASSES = 5

REPO_ROOT = Path(__file__).resolve().parent.parent
BUNDLED_MODEL_DIR = REPO_ROOT / "model"
# The shared data sets beside the repository; example paths in the manifest are relative to it.
DATA_ROOT = REPO_ROOT.parent / "shared" / "data"
DEFAULT_DATA_DIR = DATA_ROOT / "chest_xray"
EXAMPLES_MANIFEST = REPO_ROOT / "examples" / "manifest.csv"

DEFAULT_REPO_ID = "cxr-demo/pediatric-pneumonia-cnn"
DEFAULT_REVISION = "main"

MODEL_FILENAME = "model.keras"
CONFIG_FILENAME = "config.json"
METRICS_FILENAME = "metrics.json"
CARD_FILENAME = "README.md"

# Upload limits: a decompression bomb or a huge file is refused before it is decoded.
MAX_FILE_BYTES = 50 * 1024 * 1024
MAX_PIXELS = 80_000_000
# Files counted as images by name: the suffixes the app reads, and none (DICOM files often have none).
IMAGE_FILE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".bmp", ".gif", ".dcm", ".dicom",
                                 ""})
MIN_SIDE_PIXELS = 64
# Larger images are reduced while decoding (JPEG) or right after, before anything else is made of them.
MAX_DECODED_SIDE = 2048
# Decoding a single upload may take at most this long; a small thread pool runs the decodes.
DECODE_TIMEOUT_SECONDS = 10.0
DECODE_WORKERS = 2
# An HTTP request body may hold the largest allowed image as base64 in JSON (4 bytes per 3), plus parameters.
MAX_REQUEST_BYTES = MAX_FILE_BYTES * 4 // 3 + 64 * 1024

DEFAULT_OPACITY = 0.4  # of the heatmap over the image
JPEG_QUALITY = 90  # of the images the app sends back
# Seconds an uploaded file and the images made from it stay on disk after the answer (the page's default).
RESULT_RETENTION_SECONDS = 30.0

# A labelled zip to evaluate the model on ("Your data" tab, POST /v1/evaluate): a bomb or a flood of files is
# refused (413) from the entries' declared sizes, and again from the bytes actually inflated.
MAX_ZIP_IMAGES = 2_000
MAX_ZIP_ENTRY_BYTES = MAX_FILE_BYTES
MAX_ZIP_TOTAL_BYTES = 500_000_000  # uncompressed, all entries read; also the limit of the zip itself
EVALUATION_BATCH_SIZE = 32

# A site profile (cxr_pneumonia.site_profile): the fewest normal X-rays it is fitted on and the number recommended,
# the pneumonias needed to report a sensitivity and the sensitivity under which the profile warns, the target
# specificities allowed and the default one.
MIN_PROFILE_NORMALS = 30
RECOMMENDED_PROFILE_NORMALS = 100
MIN_PROFILE_PNEUMONIAS = 10
PROFILE_SENSITIVITY_WARNING = 0.90
PROFILE_TARGET_RANGE = (0.5, 0.99)
DEFAULT_TARGET_SPECIFICITY = 0.90  # images read and analysed per turn on a model thread
