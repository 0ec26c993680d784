"""The dashboard's routes: sign-in and out, the pages, their static assets.

Every page goes through `_page` (a signed-in viewer, else a redirect to /login) and every form
through `_form` as well (its CSRF token must match the session's, else 403).
"""

from collections.abc import Awaitable, Callable
from urllib.parse import parse_qsl

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from callwatch.dashboard import alerts, calls, overview, sources, subscriptions
from callwatch.dashboard.render import STATIC, page, secured
from callwatch.errors import Unauthorized
from callwatch.validation import read_body
from callwatch.web import sessions
from callwatch.web.sessions import CSRF_FIELD, SignInRequired, Viewer

Page = Callable[[Request, Viewer], Response]
Form = Callable[[Request, Viewer, FormData], Response]


def _to_login(request: Request) -> Response:
    response: Response = RedirectResponse("/login", status_code=303)
    if request.headers.get("hx-request"):  # htmx would swap the login page into a table
        response = Response(status_code=204, headers={"hx-redirect": "/login"})
    sessions.end(response)
    return secured(response)


def _forbidden(request: Request) -> Response:
    return page(request, "message.html", {"message": "the form was stale: reload the page"}, 403)


async def _read_form(request: Request) -> FormData:
    body = await read_body(request)
    fields: list[tuple[str, str | UploadFile]] = list(
        parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
    )
    return FormData(fields)


def _page(handler: Page) -> Callable[[Request], Awaitable[Response]]:
    def run(request: Request) -> Response:
        try:
            viewer = sessions.viewer(request)
        except SignInRequired:
            return _to_login(request)
        return handler(request, viewer)

    async def endpoint(request: Request) -> Response:
        return await run_in_threadpool(run, request)

    return endpoint


def _form(handler: Form) -> Callable[[Request], Awaitable[Response]]:
    def run(request: Request, form: FormData) -> Response:
        try:
            viewer = sessions.viewer(request)
        except SignInRequired:
            return _to_login(request)
        if not sessions.csrf_matches(viewer, str(form.get(CSRF_FIELD, ""))):
            return _forbidden(request)
        return handler(request, viewer, form)

    async def endpoint(request: Request) -> Response:
        form = await _read_form(request)
        return await run_in_threadpool(run, request, form)

    return endpoint


def login_form(request: Request) -> Response:
    try:
        sessions.viewer(request)
        return secured(RedirectResponse("/", status_code=303))
    except SignInRequired:
        pass
    return _login_page(request, None, 200)


def _login_page(request: Request, error: str | None, status_code: int) -> Response:
    token = sessions.new_token()
    response = page(request, "login.html", {"error": error, "csrf": token}, status_code)
    sessions.keep_login_token(request, response, token)
    return response


def log_in(request: Request, form: FormData) -> Response:
    if not sessions.login_token_matches(request, str(form.get(CSRF_FIELD, ""))):
        return _forbidden(request)
    try:
        viewer = sessions.sign_in(request, str(form.get("api_key", "")))
    except Unauthorized as exc:
        return _login_page(request, exc.detail, 401)
    response = RedirectResponse("/", status_code=303)
    sessions.keep(request, response, viewer)
    return secured(response)


async def log_in_endpoint(request: Request) -> Response:
    form = await _read_form(request)
    return await run_in_threadpool(log_in, request, form)


def log_out(request: Request, viewer: Viewer, form: FormData) -> Response:
    sessions.sign_out(request, viewer)
    return _to_login(request)


def log_out_page(request: Request, viewer: Viewer) -> Response:
    return page(request, "logout.html", {"viewer": viewer})


ROUTES: list[BaseRoute] = [
    Route("/", _page(overview.overview), methods=["GET"]),
    Route("/login", login_form, methods=["GET"]),
    Route("/login", log_in_endpoint, methods=["POST"]),
    Route("/logout", _page(log_out_page), methods=["GET"]),
    Route("/logout", _form(log_out), methods=["POST"]),
    Route("/calls", _page(calls.call_log), methods=["GET"]),
    Route("/calls/rows", _page(calls.call_rows), methods=["GET"]),
    Route("/calls/export", _page(calls.export_calls), methods=["GET"]),
    Route("/calls/{call_id}", _page(calls.call_page), methods=["GET"]),
    Route("/calls/{call_id}/json", _page(calls.call_json), methods=["GET"]),
    Route("/calls/{call_id}/replay", _form(calls.replay_call), methods=["POST"]),
    Route("/calls/{call_id}/delete", _page(calls.confirm_delete), methods=["GET"]),
    Route("/calls/{call_id}/delete", _form(calls.delete_call), methods=["POST"]),
    Route("/alerts", _page(alerts.alerts), methods=["GET"]),
    Route("/alerts/rules", _form(alerts.create_rule), methods=["POST"]),
    Route("/alerts/rules/{rule_id}/enabled", _form(alerts.toggle_rule), methods=["POST"]),
    Route("/alerts/rules/{rule_id}/delete", _form(alerts.delete_rule), methods=["POST"]),
    Route("/sources", _page(sources.sources), methods=["GET"]),
    Route("/sources", _form(sources.create_source), methods=["POST"]),
    Route("/sources/{source_id}/rotate-token", _form(sources.rotate_token), methods=["POST"]),
    Route("/sources/{source_id}/rotate-secret", _form(sources.rotate_secret), methods=["POST"]),
    Route("/sources/{source_id}/enabled", _form(sources.set_enabled), methods=["POST"]),
    Route("/sources/{source_id}/delete", _page(sources.confirm_delete), methods=["GET"]),
    Route("/sources/{source_id}/delete", _form(sources.delete), methods=["POST"]),
    Route("/subscriptions", _page(subscriptions.subscriptions_page), methods=["GET"]),
    Route("/subscriptions", _form(subscriptions.create), methods=["POST"]),
    Route("/subscriptions/{subscription_id}", _page(subscriptions.subscription_page)),
    Route(
        "/subscriptions/{subscription_id}/resend",
        _form(subscriptions.resend_since),
        methods=["POST"],
    ),
    Route("/subscriptions/{subscription_id}/rotate", _form(subscriptions.rotate), methods=["POST"]),
    Route("/subscriptions/{subscription_id}/edit", _form(subscriptions.edit), methods=["POST"]),
    Route(
        "/subscriptions/{subscription_id}/enabled",
        _form(subscriptions.set_enabled),
        methods=["POST"],
    ),
    Route(
        "/subscriptions/{subscription_id}/delete",
        _page(subscriptions.confirm_delete),
        methods=["GET"],
    ),
    Route("/subscriptions/{subscription_id}/delete", _form(subscriptions.delete), methods=["POST"]),
    Route(
        "/subscriptions/{subscription_id}/deliveries/{delivery_id}/retry",
        _form(subscriptions.retry),
        methods=["POST"],
    ),
    Mount("/static", StaticFiles(directory=STATIC), name="static"),
]
