"""The names every part of evaluate shares: the stage, TFMA's model names, the metric keys.

``CANDIDATE`` and ``BASELINE`` are the ModelSpec names both engines give TFMA, and so the model
names in its result files (TFMA keys a lone model as "", which ``read_metrics`` reads back as
the candidate). ``COUNT``, ``MSE`` and ``MAE`` are TFMA's metric key names.
"""

from __future__ import annotations

from components import names

STAGE = names.STAGE_EVALUATE
CANDIDATE = "candidate"
BASELINE = "baseline"
MAE = "mean_absolute_error"
MSE = "mean_squared_error"
COUNT = "example_count"
# Classification (tfma_engine.CLASSIFICATION_METRICS, PER_CLASS_METRICS): the names reported.
ACCURACY = "accuracy"
LOG_LOSS = "log_loss"
AUC = "auc"
PRECISION = "precision"
RECALL = "recall"
CONFUSION_MATRIX = "confusion_matrix"  # a plot: the K x K matrix of the likeliest class
ROC = "roc"  # a plot per class: the confusion matrices at 1,000 thresholds
