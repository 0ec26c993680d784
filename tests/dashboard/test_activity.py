"""The sources' traffic board: Redis's counts with the inbox's backlog, and a page that still
renders when Redis cannot be read."""

import socket
from datetime import timedelta

import redis

from callwatch.dashboard import activity
from callwatch.runtime import Runtime, utcnow


def test_without_redis_the_board_says_the_counts_are_unknown(runtime: Runtime) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    if runtime.redis is not None:
        runtime.redis.close()
    runtime.redis = redis.Redis(port=port, socket_connect_timeout=0.2)
    now = utcnow()

    board = activity.board(runtime, "org_1", now - timedelta(hours=24), now)

    assert (board.counted, board.of("src_a")) == (False, activity.Traffic())
