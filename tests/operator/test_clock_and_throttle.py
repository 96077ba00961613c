"""The scheduler's injectable clock (and its testing knob), the log throttle, and the metrics port
that is already taken."""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import socket

from receiptsync_common import contract as c
from receiptsync_operator import clock, config, main

from clocks import FakeClock
from receiptsync_operator.log_throttle import Throttle

T0 = dt.datetime(2025, 6, 15, 12, 0, tzinfo=dt.timezone.utc)


def test_fake_clock_moves_only_when_told():
    fake = FakeClock(T0)
    assert fake.now() == T0
    fake.advance(90)
    assert fake.now() == T0 + dt.timedelta(seconds=90)
    fake.set(T0)
    assert fake.now() == T0


def test_offset_file_clock_follows_the_file(tmp_path):
    path = tmp_path / "offset"
    knob = clock.OffsetFileClock(str(path), base=FakeClock(T0))
    assert knob.now() == T0  # no file: no offset
    path.write_text("3600")
    assert knob.now() == T0 + dt.timedelta(hours=1)
    path.write_text("-30.5\n")
    os.utime(path, ns=(1, 1))  # a rewrite within one mtime tick is still seen (size differs here anyway)
    assert knob.now() == T0 - dt.timedelta(seconds=30.5)
    path.write_text("not a number")
    assert knob.now() == T0 - dt.timedelta(seconds=30.5)  # unreadable: the last good offset stays
    path.unlink()
    assert knob.now() == T0


def test_the_knob_is_off_unless_configured(tmp_path):
    assert isinstance(clock.from_offset_file(""), clock.SystemClock)
    s = config.load({c.OPERATOR_ENV_TEST_CLOCK_OFFSET_FILE: str(tmp_path / "o"),
                     c.OPERATOR_ENV_WORKER_CONNECTION_SECRET: "conn",
                     c.OPERATOR_ENV_REDIS_WARNING_INTERVAL: "5"}, [])
    assert isinstance(clock.from_offset_file(s.test_clock_offset_file), clock.OffsetFileClock)
    assert s.worker_connection_secret == "conn" and s.redis_warning_interval == 5.0
    assert config.load({}, []).test_clock_offset_file == ""


def test_throttle_once_per_interval_per_key_counting_the_rest():
    now = [0.0]
    throttle = Throttle(60, monotonic=lambda: now[0])
    assert throttle.allow("a") == 0
    assert throttle.allow("a") is None and throttle.allow("a") is None
    assert throttle.allow("b") == 0  # per key
    now[0] = 61
    assert throttle.allow("a") == 2  # two held back since
    throttle.reset("a")
    assert throttle.allow("a") == 0


def test_metrics_port_in_use_logs_one_error_and_goes_on(caplog):
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with caplog.at_level(logging.ERROR, logger="receiptsync_operator"):
            runner = asyncio.run(main.serve_metrics(port))
    assert runner is None
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and str(port) in errors[0].getMessage()
