"""ntorque: a self-hosted, durable web-hook task queue in one Tornado process."""

__version__ = "0.1.0"
