"""Signal names that mean one thing everywhere: in the config's signal rules, in the core, and
in the ``signal`` field and header of alerts. (A feature's signal is ``feature:<name>``; a fault
rate's ``quality:<fault>:<feature>``.)"""

from __future__ import annotations

__all__ = ["PERFORMANCE_SIGNAL", "PREDICTION"]

PREDICTION = "prediction"  # a model's predictions
PERFORMANCE_SIGNAL = "performance:error"  # its errors against the true outcomes (labels)
