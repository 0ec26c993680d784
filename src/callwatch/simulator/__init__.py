"""Simulated voice-AI platforms: realistic calls, their webhooks, and each platform's API."""

from callwatch.simulator.base import Platform
from callwatch.simulator.calls import SIM_RECORDING_BASE, SimCall, cost_of, make_call, recording_url
from callwatch.simulator.generic import events_for, signed_request
from callwatch.simulator.platforms import PLATFORMS
from callwatch.simulator.runner import Progress, run_simulation
from callwatch.simulator.servers import BackgroundServer, DetailServer

__all__ = [
    "PLATFORMS",
    "SIM_RECORDING_BASE",
    "BackgroundServer",
    "DetailServer",
    "Platform",
    "Progress",
    "SimCall",
    "cost_of",
    "events_for",
    "make_call",
    "recording_url",
    "run_simulation",
    "signed_request",
]
