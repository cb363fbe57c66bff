"""Shared pytest configuration. Fixture modules register themselves in ``pytest_plugins``."""

pytest_plugins: list[str] = ["tests.fixtures_distribution", "tests.fixtures_docker", "tests.winfs"]
