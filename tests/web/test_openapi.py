"""The generated OpenAPI document: complete, served with an offline page, and fuzzed."""

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from starlette.routing import Route
from starlette.testclient import TestClient

from callwatch.app import ROUTES, create_app
from callwatch.dashboard.pages import ROUTES as PAGES
from callwatch.runtime import Runtime
from callwatch.settings import Settings
from callwatch.simulator import BackgroundServer
from callwatch.web import openapi
from callwatch.web.operations import operations
from tests.factories import Tenant, add_call, tenant


def test_every_route_is_documented(client: TestClient) -> None:
    document = client.get("/openapi.json").json()

    documented = {
        (path, method.upper()) for path, methods in document["paths"].items() for method in methods
    }
    served = {
        (route.path, method)
        for route in ROUTES
        # The document, its page and the dashboard's pages are not operations of the API.
        if isinstance(route, Route)
        and route.path not in ("/openapi.json", "/docs")
        and route not in PAGES
        for method in route.methods or ()
        if method != "HEAD"
    }
    assert documented == served


def test_the_docs_page_is_self_contained(client: TestClient) -> None:
    page = client.get("/docs")

    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert "/api/calls/{call_id}/events" in page.text
    assert "://" not in page.text  # nothing to fetch from elsewhere


@pytest.fixture
def served(settings: Settings, runtime: Runtime) -> Iterator[tuple[str, Tenant]]:
    """The app over real HTTP, with an org that has a call."""
    app = create_app(settings)
    with TestClient(app) as client, BackgroundServer(app) as server:  # the client runs lifespan
        owner = tenant(client, "fuzz")
        add_call(runtime, owner, "c1")
        yield server.url, owner


schema = schemathesis.openapi.from_dict(openapi.document("test", operations(ROUTES)))


@schema.parametrize()
@settings(
    max_examples=40,
    derandomize=True,  # the same cases on every CI run
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_no_5xx_and_every_response_matches_the_document(
    case: Any, served: tuple[str, Tenant]
) -> None:
    url, owner = served
    case.call_and_validate(
        base_url=url,
        headers=owner.headers,
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
    )
