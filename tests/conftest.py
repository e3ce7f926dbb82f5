"""Suite-wide test ordering."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # The slow chaos tests stop and restart the shared Kafka and Redis: run them last, so that a
    # failure there cannot take the services away from every other test.
    items.sort(key=lambda item: item.get_closest_marker("slow") is not None)
