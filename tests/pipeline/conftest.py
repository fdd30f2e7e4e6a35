"""Job fixtures shared with the pipeline tests."""

from tests.jobs.conftest import generated_shards, tiny_teacher  # noqa: F401
