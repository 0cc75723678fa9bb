"""Fixtures of the producer's pages."""

from tests.producer.channel_world import channel, staff_client  # noqa: F401
