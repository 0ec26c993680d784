"""The registry of platform adapters, one module each."""

from callwatch.providers.atoms import AtomsProvider
from callwatch.providers.base import Provider
from callwatch.providers.generic import GenericProvider

_REGISTRY: dict[str, Provider] = {
    "atoms": AtomsProvider(),
    "generic": GenericProvider(),
}


def get(name: str) -> Provider:
    return _REGISTRY[name]


def names() -> list[str]:
    return sorted(_REGISTRY)
