"""`callwatch simulate` and `up --provider`: platforms from the simulator's registry."""

import json
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from callwatch.cli import commands
from callwatch.cli.main import main, parser
from callwatch.simulator import PLATFORMS, BackgroundServer, Platform, SimCall


@pytest.mark.parametrize("command", ["up", "simulate"])
def test_up_and_simulate_offer_every_registered_platform(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    given = ["--url", "http://127.0.0.1:9/hook"] if command == "simulate" else []
    for name in PLATFORMS:
        assert parser().parse_args([command, *given, "--provider", name]).provider == name
    with pytest.raises(SystemExit):
        parser().parse_args([command, *given, "--provider", "nope"])
    error = capsys.readouterr().err
    assert all(name in error for name in PLATFORMS)


@pytest.mark.parametrize("provider", ["generic", "atoms"])
def test_a_signed_platform_needs_the_secret(
    provider: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["simulate", "--url", "http://127.0.0.1:9/hook", "--provider", provider])

    error = capsys.readouterr().err
    assert code == 2
    assert error.count("\n") == 1
    assert f"{provider} webhooks are signed: pass --secret" in error


def unsigned_webhooks(call: SimCall, embed_detail: bool) -> list[tuple[Any, dict[str, Any]]]:
    return [(call.ended_at, {"call": call.call_id})]


def test_an_unsigned_platform_plays_without_a_secret(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(
        PLATFORMS, "unsigned", Platform(webhooks=unsigned_webhooks, secret_name=None)
    )  # type: ignore[index]
    monkeypatch.setattr(commands, "PLATFORM_NAMES", (*commands.PLATFORM_NAMES, "unsigned"))
    received: list[tuple[dict[str, Any], dict[str, str]]] = []

    async def hook(request: Request) -> JSONResponse:
        received.append((json.loads(await request.body()), dict(request.headers)))
        return JSONResponse({"status": "accepted"}, status_code=202)

    app = Starlette(routes=[Route("/hook", hook, methods=["POST"])])
    with BackgroundServer(app) as server:
        url = server.url + "/hook"
        code = main(
            ["simulate", "--url", url, "--provider", "unsigned", "--calls", "2", "--rate", "50"]
        )

    assert code == 0, capsys.readouterr().err
    assert len(received) == 2
    assert all(set(body) == {"call"} for body, _ in received)
    assert not any("signature" in name for _, headers in received for name in headers)
