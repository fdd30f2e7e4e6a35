"""Job fixtures shared with the teacher tests."""

from tests.jobs.conftest import generated_shards, tiny_teacher  # noqa: F401
