import psycopg
import redis


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
