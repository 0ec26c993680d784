"""The registry of platform adapters, one module each."""

from callwatch.providers.atoms import AtomsProvider
from callwatch.providers.base import Provider
from callwatch.providers.bolna import BolnaProvider
from callwatch.providers.burki import BurkiProvider
from callwatch.providers.fixa import FixaProvider
from callwatch.providers.generic import GenericProvider
from callwatch.providers.origins import OriginsProvider
from callwatch.providers.retell import RetellProvider
from callwatch.providers.telnyx import TelnyxProvider
from callwatch.providers.twilio import TwilioProvider
from callwatch.providers.vapi import VapiProvider

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
