"""One Redis ACL user per worker attempt (issue 14), as pure rule builders plus three async calls.

The user may read its attempt's payload, replace and expire its own heartbeat hash, XADD to the
heartbeat stream (write-only: it cannot read anyone's heartbeats), and - once the worker has named its
mailbox in a signed heartbeat - run the quota script on that mailbox's bucket. Nothing else: no other
attempt's keys, no KEYS/SCAN, FLUSHALL, CONFIG, ACL, MONITOR, pub/sub. ACL key patterns hold in every
database of the server, so one Redis serves one ReceiptSync installation.
"""
from __future__ import annotations

import hashlib
import re

from receiptsync_common import contract

USER_PREFIX = "rsw-"
# Each command reaches only the key it is for (Redis 7 ACL selectors: a command runs when the root
# rules or one selector allow the command together with all its keys):
#   root       GET of the payload; MULTI/EXEC/DISCARD, PING, SELECT (the URL's database), TIME and
#              SCRIPT LOAD, which name no key;
#   heartbeat  DEL + HSET + EXPIRE of its own heartbeat hash;
#   stream     XADD to the heartbeat stream, write-only (no XREAD/XRANGE, no DEL/EXPIRE of it);
#   quota      once its mailbox is known: EVALSHA/EVAL of the quota script on that bucket, whose own
#              calls (HMGET, HSET, PEXPIRE) are checked against this user too.
ROOT_COMMANDS = ("get", "multi", "exec", "discard", "ping", "select", "time", "script|load")
HEARTBEAT_COMMANDS = ("del", "hset", "expire")
STREAM_COMMANDS = ("xadd",)
QUOTA_COMMANDS = ("evalsha", "eval", "hmget", "hset", "pexpire")
_GLOB_SPECIAL = re.compile(r"([\\*?\[\]])")


def user_name(job_id: str) -> str:
    return USER_PREFIX + hashlib.sha256(job_id.encode("utf-8")).hexdigest()[:32]


def escape_glob(text: str) -> str:
    """A key pattern matching exactly ``text`` (mail addresses may hold ``*`` or ``?``)."""
    return _GLOB_SPECIAL.sub(r"\\\1", text)


def mailbox_allowed(mailbox: str) -> bool:
    """A mailbox a worker may name for its quota bucket: an address, nothing odd."""
    return 3 <= len(mailbox) <= 320 and "@" in mailbox and mailbox == mailbox.strip() \
        and mailbox == mailbox.lower() and not any(ch.isspace() or ord(ch) < 32 for ch in mailbox)


def _selector(pattern: str, commands: tuple[str, ...]) -> str:
    return "(" + " ".join([pattern, *("+" + command for command in commands)]) + ")"


def user_rules(job_id: str, password: str, mailbox: str | None = None) -> list[str]:
    """ACL SETUSER arguments that (re)define the attempt's user from scratch. The password is given
    hashed (``#<sha256>``), so its clear text never reaches the server."""
    rules = ["reset", "on", "#" + hashlib.sha256(password.encode("utf-8")).hexdigest(), "resetchannels",
             "%R~" + escape_glob(contract.job_key(job_id)), *("+" + command for command in ROOT_COMMANDS),
             _selector("~" + escape_glob(contract.heartbeat_key(job_id)), HEARTBEAT_COMMANDS),
             _selector("%W~" + escape_glob(contract.EVENTS_STREAM), STREAM_COMMANDS)]
    if mailbox:
        rules.append(quota_rule(mailbox))
    return rules


def quota_rule(mailbox: str) -> str:
    return _selector("~" + escape_glob(contract.quota_key(mailbox)), QUOTA_COMMANDS)


def worker_url(base: str, user: str, password: str) -> str:
    """``base`` (how workers reach Redis: scheme, host, port, database) with the attempt's user."""
    scheme, rest = base.split("://", 1)
    host = rest.rsplit("@", 1)[-1]
    return f"{scheme}://{user}:{password}@{host}"


async def define(client, job_id: str, password: str, mailbox: str | None = None) -> None:
    await client.execute_command("ACL", "SETUSER", user_name(job_id), *user_rules(job_id, password, mailbox))


async def allow_mailbox(client, job_id: str, mailbox: str) -> None:
    await client.execute_command("ACL", "SETUSER", user_name(job_id), quota_rule(mailbox))


async def remove(client, user: str) -> None:
    """Deleting the user also closes its connections."""
    await client.execute_command("ACL", "DELUSER", user)


async def server_id(client) -> str:
    """Changes when the server restarts (and forgets every ACL user)."""
    info = await client.info("server")
    return str(info.get("run_id") or "")
