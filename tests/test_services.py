import os
import signal

import psycopg
import redis

from receiptsync_sandbox import services


def test_throwaway_redis_answers_on_its_own_port(redis_server):
    assert redis_server.port != 6379
    client = redis.Redis.from_url(redis_server.url)
    client.set("k", "v")
    assert client.get("k") == b"v"


def test_fresh_database_is_empty_and_writable(fresh_database):
    assert ":5432/" not in fresh_database
    with psycopg.connect(fresh_database) as conn:
        conn.execute("CREATE TABLE t (x int)")
        conn.execute("INSERT INTO t VALUES (1)")
        assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 1


def test_restarting_after_kills_always_records_the_live_server(tmp_path):
    """A SIGKILLed redis leaves its pidfile; a restart must report the new server's pid (the sandbox's
    `down` stops what that pid names), never the dead one, and never a half-written file."""
    server = services.start_redis(tmp_path / "redis")
    try:
        for _ in range(8):
            os.kill(server.pid, signal.SIGKILL)
            services.wait_for_exit(server.pid)
            restarted = services.start_redis(tmp_path / "redis", port=server.port)
            assert restarted.pid != server.pid
            os.kill(restarted.pid, 0)  # alive
            server = restarted
    finally:
        server.stop()

