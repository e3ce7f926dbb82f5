"""The parts of ``benchmarks/throughput.py`` (run that script; this package has no entry point).

Reading order: ``payload`` (the events), ``kafka`` and ``commits`` (how progress is observed:
committed offsets), the measured rows (``raw_consumer``, ``faust_process`` for the no-op agent
and the worker, ``core_cpu``; ``redis_cost`` for what a worker run cost Redis), ``report``, and
``single_run``, which runs them in order. Scale-out mode: ``scaleout`` (one measured round of K
workers), ``scaleout_report`` and ``scaleout_run``. ``common`` holds paths, targets, the stop flag
and the consoles; ``procstat`` reads CPU seconds from /proc; ``progress`` draws the bars.
"""
