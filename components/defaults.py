"""Default settings of every stage: the reference workload (../shared/WORKLOAD.md).

Pipeline parameter defaults, the local runner's defaults and the benchmark all read these,
so a figure measured with the defaults means the reference workload everywhere.
"""

from __future__ import annotations

# ExampleGen: TFX CsvExampleGen's hash split, 3 buckets: 0-1 train, 2 eval.
SPLIT_BUCKETS = "train:2,eval:1"

# ExampleGen: the CSV files' text encoding (a UTF-8 byte-order mark is skipped).
ENCODING = "utf-8"

# Validate: what fails the run. "unsafe" = anomalies that make training unsafe
# (missing label, missing or mistyped feature); "any" = every anomaly; "none" = report only.
FAIL_ON = "unsafe"
SKEW_THRESHOLD = 0.1  # L-infinity distance for categorical features
DRIFT_THRESHOLD = 0.1  # Jensen-Shannon divergence for numeric, L-infinity for categorical

# Transform: Beam pipeline options for TFT / TFMA (DirectRunner in process by default).
BEAM_ARGS = "--runner=DirectRunner --direct_num_workers=1"

# Tune (keras-tuner): RandomSearch, 4 trials of 300 steps, batch 32, objective val_loss.
TUNER = "random"
TUNER_TRIALS = 4
TUNER_STEPS = 300
BATCH_SIZE = 32

# Train: 1,000 steps at batch size 32 with the best hyperparameters.
TRAIN_STEPS = 1000
EVAL_STEPS = 100
# Train: which model the default module fits (lib/model_families.py). "auto": its network, gradient-
# boosted trees and a linear model, the best on the validation slice kept.
MODEL_FAMILY = "auto"

# Schema: what the label is. "auto": text or small non-negative integers are classes (lib/label.py).
TASK = "auto"

# Evaluate: blessing when the candidate's error (MAE; for classification 1 - accuracy) is at least
# NAIVE_MARGIN below a naive predictor's on the eval split (the training median; the majority
# class) and, with a baseline, at most 5 % worse than it. Absolute gates are off by default: a
# number like "MAE <= 8,000" means something only in one dataset's units. MAE_UPPER_BOUND is the
# reference workload's absolute gate (mae_threshold=8000 sets it).
NAIVE_MARGIN = 0.1
MAE_THRESHOLD = -1.0  # off
MIN_ACCURACY = -1.0  # off
MAE_UPPER_BOUND = 8000.0
MAX_RELATIVE_DEGRADATION = 0.05
# Minimum evidence to bless (0 = no minimum); below either the candidate is NOT_BLESSED.
# 30 eval examples: MAE is a mean over them, and 30 is the usual floor for a mean to be roughly
# normal. A floor against verdicts on a handful of rows, not a guarantee: the default model's
# |error| on the real data is heavy-tailed (coefficient of variation 2.4 over its 450 eval rows),
# so 30 examples still leave a standard error of ~43 % of the MAE (11 % at 450).
# 100 training rows: below it the smallest model of the search space (one layer of 16 units on
# 14 one-hot/z-scored inputs: ~260 weights) has several weights per row, TFT's vocabularies may
# miss a category (4 regions; smokers are ~20 %), and an epoch is under three batches of 32.
# Under the 2:1 split the two floors meet at ~150 rows (100 train, ~50 eval); the reference
# workload (1,338 rows: ~890 train, ~450 eval) is far above both.
MIN_EVAL_EXAMPLES = 30
MIN_TRAIN_ROWS = 100
# How evaluate computes TFMA's result: "auto" = the native engine when Beam runs locally, TFMA's
# Beam pipeline on any other runner; "tfma" or "native" to force one (lib/evaluate/engines.py).
EVALUATE_ENGINE = "auto"
