"""Thin adapters that drive the core: the Kafka (Faust) worker and the file replay."""
