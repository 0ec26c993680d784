"""Routes made from the endpoints modules' operations: each method reaches its own handler."""

from starlette.testclient import TestClient

from callwatch.app import ROUTES
from callwatch.web.operations import DocumentedRoute, operations


def test_a_path_answers_405_naming_every_method_it_serves(client: TestClient) -> None:
    response = client.delete("/api/subscriptions")

    assert (response.status_code, set(response.headers["allow"].split(", "))) == (
        405,
        {"GET", "HEAD", "POST"},
    )


def test_each_method_of_a_path_reaches_its_own_handler(client: TestClient) -> None:
    listed = client.get("/api/subscriptions", headers={"authorization": "Bearer nope"})
    created = client.post("/api/subscriptions", headers={"authorization": "Bearer nope"}, json={})

    assert (listed.status_code, created.status_code) == (401, 401)


def test_every_path_is_one_route() -> None:
    paths = [route.path for route in ROUTES if isinstance(route, DocumentedRoute)]

    assert len(paths) == len(set(paths))
    assert len(operations(ROUTES)) > len(paths)  # some paths serve several methods
