"""Settings, in-process: the bounds on slow clients (names, environment,
defaults of tens of seconds, refused when not positive)."""

from __future__ import annotations

import pytest

from ntorque import config
from ntorque.errors import ConfigError

BOUNDS = {
    "header_timeout_s": "NTORQUE_HEADER_TIMEOUT",
    "body_timeout_s": "NTORQUE_BODY_TIMEOUT",
    "idle_timeout_s": "NTORQUE_IDLE_TIMEOUT",
}


@pytest.mark.parametrize(("key", "name"), BOUNDS.items())
def test_slow_client_bounds_come_from_the_environment(key: str, name: str) -> None:
    assert 10 <= getattr(config.Settings(), key) <= 120  # tens of seconds, not an hour
    assert getattr(config.load(environ={name: "2.5"}), key) == 2.5


@pytest.mark.parametrize("key", BOUNDS)
@pytest.mark.parametrize("value", ["0", "-1", "nan", "soon"])
def test_slow_client_bounds_must_be_positive(key: str, value: str) -> None:
    with pytest.raises(ConfigError, match=BOUNDS[key]):
        config.load(environ={BOUNDS[key]: value})
