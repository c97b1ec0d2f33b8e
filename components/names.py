"""The one source of truth for names: features, label, splits, files, artifacts, storage layout.

Every stage, the pipeline, the local runner and the tests take names from here, so a
renamed file or feature changes in exactly one place. Standard library only: this module
is imported when the pipeline is compiled.
"""

from __future__ import annotations

# --- The reference workload (../shared/WORKLOAD.md): medical insurance costs. -------------
# Defaults of the run parameters and the insurance module's columns only: stages take the label
# from the ``label`` parameter, never from here.
LABEL = "charges"
NUMERIC_FEATURES = ("age", "bmi", "children")
CATEGORICAL_FEATURES = ("sex", "smoker", "region")
FEATURES = ("age", "sex", "bmi", "children", "smoker", "region")
COLUMNS = (*FEATURES, LABEL)
SLICE_FEATURE = "smoker"
MODEL_NAME = "insurance"

# --- Splits (TFX layout: Split-<name>/ under an examples directory). ------------------------
TRAIN = "train"
EVAL = "eval"
SPLITS = (TRAIN, EVAL)


def split_dir(split: str) -> str:
    """Directory name of one split, as TFX writes it."""
    return f"Split-{split}"


# --- File names inside artifacts (the ones TFX tooling reads). -----------------------------
EXAMPLES_FILE_PREFIX = "data_tfrecord"  # ExampleGen: data_tfrecord-00000-of-00001.gz
STATS_FILE = "FeatureStats.pb"
SCHEMA_FILE = "schema.pbtxt"
ANOMALIES_FILE = "SchemaDiff.pb"  # TFX ExampleValidator's name for the anomalies proto
ANOMALIES_TEXT_FILE = "anomalies.pbtxt"
REPORT_MD_FILE = "report.md"
REPORT_HTML_FILE = "report.html"  # a stage's HTML report on the volume
MANIFEST_FILE = "kubetfx_artifact.json"  # pointer + metadata written into every bulk artifact

# --- Storage root: the PersistentVolume's layout (a folder locally). -----------------------
DEFAULT_MOUNT_PATH = "/mnt/kubetfx"
DEFAULT_PVC_NAME = "kubetfx-pvc"
DATA_DIR = "data"  # input CSVs and user modules live here
DEFAULT_DATA_FILE = "data/insurance.csv"
ARTIFACTS_DIR = "artifacts"  # bulk artifacts: artifacts/<run id>/<stage>/
SERVING_DIR = "serving"  # TF Serving root: serving/<model name>/<version>/
REGISTRY_DIR = "registry"  # model registry index
METADATA_DIR = "metadata"  # SQLite ML Metadata store for local runs
METADATA_DB = "metadata/mlmd.sqlite"
KFP_LOCAL_DIR = "kfp_local"  # local runner's KFP artifact files (pipeline_root)

# --- Metadata keys that stages put on KFP artifacts and read from their inputs. -----------
META_STORAGE_PATH = "storage_path"  # absolute path of the bulk data on the volume
META_ROWS = "rows"
META_COLUMNS = "columns"
META_SPLITS = "splits"
META_FINGERPRINT = "fingerprint"
META_MODEL_PATH = "model_path"  # the exact SavedModel directory (candidate and baseline alike)
META_NON_FINITE = "non_finite"  # example_gen -> statistics -> validate: inf/nan/beyond-float32 cells

# --- Stage names: task names in the pipeline, directory names on the volume. ---------------
STAGE_EXAMPLE_GEN = "example_gen"
STAGE_STATISTICS = "statistics"
STAGE_SCHEMA = "schema"
STAGE_VALIDATE = "validate"
STAGE_TRANSFORM = "transform"
STAGE_TUNE = "tune"
STAGE_TRAIN = "train"
STAGE_RESOLVE = "resolve_baseline"
STAGE_EVALUATE = "evaluate"
STAGE_PUSH = "push"
STAGES = (  # pipeline order
    STAGE_EXAMPLE_GEN,
    STAGE_STATISTICS,
    STAGE_SCHEMA,
    STAGE_VALIDATE,
    STAGE_TRANSFORM,
    STAGE_TUNE,
    STAGE_TRAIN,
    STAGE_RESOLVE,
    STAGE_EVALUATE,
    STAGE_PUSH,
)
# Tasks that are not one of the ten stages. ``finalize``: the exit handler (runs after the ten,
# however they ended). ``tune_trials``/``tune_best``: tune split into parallel trial groups and
# their fan-in (``compile.py --tune-parallelism N``, N > 1); tune_best writes tune's output.
STAGE_FINALIZE = "finalize"
STAGE_TUNE_TRIALS = "tune_trials"
STAGE_TUNE_BEST = "tune_best"
TASK_STAGES = (*STAGES, STAGE_TUNE_TRIALS, STAGE_TUNE_BEST, STAGE_FINALIZE)  # every component
RUN_STATUS_DIR = "run_status"  # run_status/<run id>/<task>.json: started/succeeded/failed
RUN_LOG = "registry/runs.jsonl"  # one line per finished run: its outcome (finalize)


def stage_of(task: str) -> str:
    """A stage's one name (``example_gen``) from a KFP task name (``example-gen``) or either form."""
    return task.replace("-", "_")


# --- Model stages (TFX layouts). ------------------------------------------------------------
TRANSFORM_GRAPH_DIR = "transform_graph"  # TFTransformOutput opens this (transform_fn/, transformed_metadata/)
TRANSFORMED_EXAMPLES_DIR = "transformed_examples"  # Split-<split>/ under it
TRANSFORMED_FILE_PREFIX = "transformed_examples"
MODEL_SERVING_DIR = "Format-Serving"  # the SavedModel inside a train output, as TFX Trainer lays it out
TENSORBOARD_DIR = "logs"
HYPERPARAMETERS_FILE = "best_hyperparameters.txt"  # JSON, TFX Tuner's file name
SERVING_SIGNATURE = "serving_default"  # serialized raw tf.Example (no label) -> predictions
TRANSFORM_SIGNATURE = "transform_features"  # serialized raw tf.Example -> transformed features
EXAMPLES_INPUT_KEY = "examples"
PREDICTIONS_KEY = "predictions"  # regression: the value [batch, 1]; classification: the class name
SCORES_KEY = "scores"  # classification: the probability of each class [batch, K]
CLASSES_KEY = "classes"  # classification: the class names [batch, K] (TF Serving's classify outputs)
# The module a run uses when it names none: derived from the schema, for any table.
DEFAULT_MODULE = "components.modules.tabular"
INSURANCE_MODULE = "components.modules.insurance"  # the worked example of a hand-written module
LABEL_INFO_FILE = "kubetfx_label.json"  # the label contract (lib/label.py) beside a graph or model
SERVING_INPUTS_FILE = "kubetfx_inputs.json"  # the raw features a served model parses (assets.extra/)

# --- Gate stages. -------------------------------------------------------------------------
EVAL_RESULT_DIR = "eval_result"  # tfma.load_eval_result / load_validation_result read it
BLESSING_FILE = "blessing.json"
BLESSED = "BLESSED"
NOT_BLESSED = "NOT_BLESSED"
REGISTRY_INDEX = "registry/index.json"
NO_BASELINE = "no baseline"

# A stage's line that the local console shows even when it hides the stage's other output.
PROGRESS_PREFIX = "» "

# --- Metadata keys shared by several stages and the run summary. ---------------------------
META_FEATURES = "features"  # number of features (statistics, schema)
META_VERDICT = "verdict"  # validate's verdict; evaluate's blessing verdict
META_ANOMALIES = "anomalies"  # number of anomalies (validate)

# --- TFDV schema environments (the label is absent from SERVING). --------------------------
ENV_TRAINING = "TRAINING"
ENV_SERVING = "SERVING"

# --- Pod labels every pipeline task carries (NetworkPolicies and dashboards select on them). -
POD_LABEL_PART_OF = "app.kubernetes.io/part-of"
POD_LABEL_APP = "kubetfx"
POD_LABEL_STAGE = "kubetfx.io/stage"
