"""The one exception tree of callwatch; the web edge maps it to problem+json once.

CallwatchError
├── RequestError                 the caller sent something wrong (4xx, permanent)
│   ├── NotFound                 404: unknown id, token, or another org's object
│   ├── Gone                     410: a disabled source's webhook token
│   ├── Unauthorized             401: missing/bad API key, signature, timestamp or IP
│   ├── PayloadTooLarge          413
│   ├── MalformedBody            400: body is not parseable at all
│   ├── InvalidInput             422: parseable but a field is wrong (names the field)
│   ├── Conflict                 409: e.g. a duplicate name
│   └── TooManyRequests          429: over a source's rate limit; carries retry_after (s)
├── ProcessingError              failures while processing accepted work
│   ├── Retryable                try again later (provider 5xx/429/timeout, database down)
│   │   ├── ProviderUnavailable  the platform API failed transiently; may carry retry_after
│   │   ├── StoreUnavailable     the database is unreachable (503 at the web edge)
│   │   └── RecordingStoreUnavailable  the recording store (files, S3) failed to read or write
│   └── Permanent                retrying cannot help (provider 4xx, bad credentials)
│       ├── ProviderRejected
│       │   └── UnusableResponse a platform's answer that cannot be read: a redirect, not
│       │                        JSON, not UTF-8, nested too deep, too large (never its content)
│       └── TargetRefused        the SSRF guard refused the URL's address (targets.py)
└── ReplayError                  `callwatch replay` cannot go on (database or Redis unreachable)
"""


class CallwatchError(Exception):
    """Base of every error callwatch raises on purpose."""


class RequestError(CallwatchError):
    status_code = 400
    title = "Bad request"

    def __init__(self, detail: str, *, field: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field


class NotFound(RequestError):
    status_code = 404
    title = "Not found"


class Gone(RequestError):
    status_code = 410
    title = "Gone"


class Unauthorized(RequestError):
    status_code = 401
    title = "Unauthorized"


class PayloadTooLarge(RequestError):
    status_code = 413
    title = "Payload too large"


class MalformedBody(RequestError):
    status_code = 400
    title = "Malformed body"


class InvalidInput(RequestError):
    status_code = 422
    title = "Invalid input"


class Conflict(RequestError):
    status_code = 409
    title = "Conflict"


class TooManyRequests(RequestError):
    status_code = 429
    title = "Too many requests"

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class ProcessingError(CallwatchError):
    """Work that was accepted could not be finished (yet)."""


class Retryable(ProcessingError):
    def __init__(self, detail: str, *, retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retry_after = retry_after


class ProviderUnavailable(Retryable):
    pass


class StoreUnavailable(Retryable):
    pass


class RecordingStoreUnavailable(Retryable):
    pass


class Permanent(ProcessingError):
    pass


class ProviderRejected(Permanent):
    pass


class UnusableResponse(ProviderRejected):
    pass


class TargetRefused(Permanent):
    """The URL's host is, or resolves to, an address callwatch may not connect to."""


class ReplayError(CallwatchError):
    """Why calls cannot be replayed, in one line that says what to do."""


def internal_error(exc: Exception) -> str:
    """What a bug says where users read it (`last_error`): its class only, since its message may
    quote what a platform or an org sent; the traceback goes to the log."""
    return f"internal error ({type(exc).__name__}): see the worker's log"
