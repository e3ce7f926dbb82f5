"""Signal names that mean one thing everywhere: in the config's signal rules, in the core, and
in the ``signal`` field and header of alerts. (A feature's signal is ``feature:<name>``; a fault
rate's ``quality:<fault>:<feature>``; a class's probability ``probability:<class>``.)"""

from __future__ import annotations

__all__ = ["CLASS_MIX", "CONFIDENCE", "EMBEDDING", "ESTIMATED_ERROR", "ESTIMATE_GAP", "JOINT",
           "PERFORMANCE_SIGNAL", "PREDICTION", "PROBABILITY_PREFIX"]

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
