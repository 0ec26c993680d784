"""The simulated platforms by name: one line each."""

from collections.abc import Mapping

from callwatch.simulator import (
    atoms,
    bolna,
    burki,
    fixa,
    generic,
    origins,
    retell,
    telnyx,
    twilio,
    vapi,
)
from callwatch.simulator.base import Platform

PLATFORMS: Mapping[str, Platform] = {
    "generic": generic.PLATFORM,
    "atoms": atoms.PLATFORM,
    "burki": burki.PLATFORM,
    "origins": origins.PLATFORM,
    "fixa": fixa.PLATFORM,
    "twilio": twilio.PLATFORM,
    "telnyx": telnyx.PLATFORM,
    "vapi": vapi.PLATFORM,
    "retell": retell.PLATFORM,
    "bolna": bolna.PLATFORM,
}
