"""Signal names that mean one thing everywhere: in the config's signal rules, in the core, and
in the ``signal`` field and header of alerts. (A feature's signal is ``feature:<name>``; a fault
rate's ``quality:<fault>:<feature>``; a class's probability ``probability:<class>``.)"""

from __future__ import annotations

__all__ = ["BRIER_SIGNAL", "CLASS_MIX", "CONFIDENCE", "EMBEDDING", "ESTIMATED_ERROR",
           "ESTIMATE_GAP", "JOINT", "PERCENTAGE_ERROR_SIGNAL", "PERFORMANCE_SIGNAL", "PREDICTION",
           "PROBABILITY_PREFIX", "SQUARED_ERROR_SIGNAL"]

PREDICTION = "prediction"  # a model's predictions
PERFORMANCE_SIGNAL = "performance:error"  # its errors against the true outcomes (labels)
# Class probabilities (docs/probabilities.md):
PROBABILITY_PREFIX = "probability:"  # + class: that class's probability
CONFIDENCE = "confidence"  # the largest probability
CLASS_MIX = "predicted_class"  # the arg-max class, a categorical signal
ESTIMATED_ERROR = "performance:estimated_error"  # 1 - calibrated accuracy at the confidence
ESTIMATE_GAP = "estimate_gap"  # realized - estimated error of labelled events
# Joint drift (docs/joint-drift.md): the Mahalanobis distance of the numeric features together.
JOINT = "joint"
EMBEDDING = "embedding"  # the same, of the events' `embeddings` vectors
# Per-event contributions of windowed metrics, watched when a model's `metrics.watch` names
# them (docs/metrics.md):
BRIER_SIGNAL = "performance:brier"  # an event's Brier score (classifiers with probabilities)
SQUARED_ERROR_SIGNAL = "performance:squared_error"  # a regressor's squared error (RMSE**2)
PERCENTAGE_ERROR_SIGNAL = "performance:percentage_error"  # |error| / |label| (MAPE)
