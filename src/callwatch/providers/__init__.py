"""The registry of platform adapters, one module each."""

from callwatch.providers.atoms import AtomsProvider
from callwatch.providers.base import Provider
from callwatch.providers.burki import BurkiProvider
from callwatch.providers.fixa import FixaProvider
from callwatch.providers.generic import GenericProvider
from callwatch.providers.origins import OriginsProvider

_REGISTRY: dict[str, Provider] = {
    "atoms": AtomsProvider(),
    "burki": BurkiProvider(),
    "fixa": FixaProvider(),
    "generic": GenericProvider(),
    "origins": OriginsProvider(),
}


def get(name: str) -> Provider:
    return _REGISTRY[name]


def names() -> list[str]:
    return sorted(_REGISTRY)
