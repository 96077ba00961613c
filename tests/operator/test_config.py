"""Settings from env, overridden by flags; URL redaction; merge-patch helpers; lease takeover rule."""
from __future__ import annotations

import pytest

from receiptsync_common import contract as c
from receiptsync_operator import config, leader
from receiptsync_operator.context import redact
from receiptsync_operator.status import apply, merge


def test_defaults():
    s = config.load({}, [])
    assert s.max_workers == 4 and s.heartbeat_timeout == 30 and s.namespace == ""
    assert s.worker_image == f"{c.WORKER_IMAGE}:{c.IMAGE_TAG}" and s.metrics_port == 8080
    assert s.identity  # hostname-pid


def test_env_and_flags():
    env = {c.OPERATOR_ENV_MAX_WORKERS: "2", c.OPERATOR_ENV_HEARTBEAT_TIMEOUT: "3",
           c.OPERATOR_ENV_WORKER_COMMAND: '["python", "-m", "x"]', c.OPERATOR_ENV_NAMESPACE: "team-a",
           c.OPERATOR_ENV_REDIS_URL: "redis://h:1/0", c.OPERATOR_ENV_POD_NAMESPACE: "ops",
           c.OPERATOR_ENV_POD_NAME: "op-0"}
    s = config.load(env, ["--max-workers", "5"])
    assert s.max_workers == 5 and s.heartbeat_timeout == 3.0 and s.worker_command == ("python", "-m", "x")
    assert s.namespace == "team-a" and s.lease_namespace == "ops" and s.identity == "op-0"
    assert s.effective_worker_redis_url == "redis://h:1/0"


def test_bad_values():
    with pytest.raises(ValueError):
        config.load({c.OPERATOR_ENV_MAX_WORKERS: "0"}, [])
    with pytest.raises(ValueError):
        config.load({c.OPERATOR_ENV_WORKER_COMMAND: '"python"'}, [])


def test_redaction():
    assert config.redact_url("redis://:pw@h:1/0") == "redis://:***@h:1/0"
    assert config.redact_url("postgresql://u:pw@db/x") == "postgresql://u:***@db/x"
    assert config.redact_url("redis://h:1/0") == "redis://h:1/0"
    assert "pw" not in redact('env[1].value: Invalid value: "postgresql://user:pw@db:5432/x"')


def test_merge_and_apply():
    base = {"a": 1, "p": {"x": 1, "y": 2}}
    patch = merge({"p": {"x": 5}}, {"p": {"y": None}, "b": 2})
    assert patch == {"p": {"x": 5, "y": None}, "b": 2}
    assert apply(base, patch) == {"a": 1, "p": {"x": 5}, "b": 2}
    assert apply(base, {"a": None}) == {"p": {"x": 1, "y": 2}}


def test_lease_rules_use_our_clock_only():
    held = {"holderIdentity": "a", "leaseDurationSeconds": 15, "renewTime": "2025-01-01T11:59:59.000000Z"}
    assert leader.lease_free(held, me="a", unchanged_for=0)
    assert not leader.lease_free(held, me="b", unchanged_for=5)
    assert leader.lease_free(held, me="b", unchanged_for=15)
    # The holder's renewTime is another node's clock: an old one never lets us take over early.
    stale = {**held, "renewTime": "2000-01-01T00:00:00.000000Z"}
    assert not leader.lease_free(stale, me="b", unchanged_for=14.9)
    assert leader.lease_free({**held, "holderIdentity": ""}, me="b", unchanged_for=0)


def test_worker_template_is_parsed_and_checked_at_start():
    template = '{"spec": {"nodeSelector": {"disk": "ssd"}}, "metadata": {"labels": {"team": "a"}}}'
    s = config.load({c.OPERATOR_ENV_WORKER_TEMPLATE_JSON: template}, [])
    assert s.worker_template == {"spec": {"nodeSelector": {"disk": "ssd"}}, "metadata": {"labels": {"team": "a"}}}
    assert config.load({}, []).worker_template is None
    for bad, says in (("{not json", "not valid JSON"), ("[1]", "JSON object"), ('{"kind": "Pod"}', "kind"),
                      ('{"spec": {"containers": [{"name": "sidecar"}]}}', "sidecar"),
                      ('{"metadata": {"labels": {"a": 1}}}', "metadata.labels")):
        with pytest.raises(config.ConfigError) as info:
            config.load({c.OPERATOR_ENV_WORKER_TEMPLATE_JSON: bad}, [])
        assert c.OPERATOR_ENV_WORKER_TEMPLATE_JSON in str(info.value) and says in str(info.value)


def test_invalid_template_stops_the_operator_with_a_clear_message(monkeypatch, capsys):
    from receiptsync_operator import main

    monkeypatch.setenv(c.OPERATOR_ENV_WORKER_TEMPLATE_JSON, "{oops")
    with pytest.raises(SystemExit) as info:
        main.main([])
    assert info.value.code == 2
    assert "cannot start" in capsys.readouterr().err


def test_retry_settings():
    s = config.load({c.OPERATOR_ENV_RETRY_BASE: "0.5", c.OPERATOR_ENV_RETRY_CAP: "2",
                     c.OPERATOR_ENV_WORKER_START_TIMEOUT: "30", c.OPERATOR_ENV_DEAD_LETTER_AFTER: "3"}, [])
    assert (s.retry_base, s.retry_cap, s.worker_start_timeout, s.dead_letter_after) == (0.5, 2.0, 30.0, 3)
    with pytest.raises(config.ConfigError):
        config.load({c.OPERATOR_ENV_RETRY_BASE: "10", c.OPERATOR_ENV_RETRY_CAP: "1"}, [])
    with pytest.raises(config.ConfigError, match=c.OPERATOR_ENV_MAX_WORKERS):
        config.load({c.OPERATOR_ENV_MAX_WORKERS: "four"}, [])
