"""The registry of platform adapters, one module each."""

from collections.abc import Callable

from callwatch.model.events import CallFields
from callwatch.model.records import CallDetails
from callwatch.providers.atoms import AtomsProvider
from callwatch.providers.base import WEBHOOK_SECRET, Provider, SourceConfig
from callwatch.providers.bolna.provider import BolnaProvider
from callwatch.providers.burki import BurkiProvider
from callwatch.providers.fixa import FixaProvider
from callwatch.providers.generic import GenericProvider
from callwatch.providers.origins.provider import OriginsProvider
from callwatch.providers.retell.provider import RetellProvider
from callwatch.providers.telnyx.details import with_direction
from callwatch.providers.telnyx.provider import TelnyxProvider
from callwatch.providers.twilio.provider import TwilioProvider, recording_headers
from callwatch.providers.vapi.provider import VapiProvider

_REGISTRY: dict[str, Provider] = {
    "atoms": AtomsProvider(),
    "burki": BurkiProvider(),
    "fixa": FixaProvider(),
    "generic": GenericProvider(),
    "origins": OriginsProvider(),
    "twilio": TwilioProvider(),
    "telnyx": TelnyxProvider(),
    "vapi": VapiProvider(),
    "retell": RetellProvider(),
    "bolna": BolnaProvider(),
}


def get(name: str) -> Provider:
    return _REGISTRY[name]


def names() -> list[str]:
    return sorted(_REGISTRY)


# Fetched details that are only complete with what the call's events say (who hung up a Telnyx
# leg needs its direction, from call.initiated). Applied whenever a record is built, with all the
# events in by then, not at the fetch: the record must not depend on which events were applied
# when the details were fetched.
_SETTLE: dict[str, Callable[[CallDetails, CallFields], CallDetails]] = {
    "telnyx": lambda details, fields: with_direction(details, fields.direction),
}


def settled(name: str, details: CallDetails, fields: CallFields) -> CallDetails:
    settle = _SETTLE.get(name)
    return settle(details, fields) if settle else details


# The platforms whose recordings need the source's credentials (the others' URLs are public or
# pre-signed): the headers a download of that URL sends, None where it sends none.
_RECORDING_AUTH: dict[str, Callable[[SourceConfig, str], dict[str, str] | None]] = {
    "twilio": recording_headers,
}


def recording_headers_for(source: SourceConfig, url: str) -> dict[str, str] | None:
    """What a download of this recording URL must send (its secret), or None: it needs none."""
    auth = _RECORDING_AUTH.get(source.provider)
    return auth(source, url) if auth else None


# The platforms' old names for `webhook_secret`, still accepted on input (docs/platforms/).
_SECRET_ALIASES: dict[str, str] = {"atoms": "signing_secret", "vapi": "secret"}


def canonical_credentials(name: str, credentials: dict[str, str]) -> dict[str, str]:
    """The credentials with an old name of the webhook secret renamed `webhook_secret` (a value
    given under `webhook_secret` itself wins)."""
    alias = _SECRET_ALIASES.get(name)
    if alias is None or alias not in credentials:
        return dict(credentials)
    out = {key: value for key, value in credentials.items() if key != alias}
    out.setdefault(WEBHOOK_SECRET, credentials[alias])
    return out
