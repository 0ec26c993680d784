"""A simulated voice-AI platform: realistic calls, their webhooks, and the platform's detail API."""

from callwatch.simulator.calls import SIM_RECORDING_BASE, SimCall, cost_of, make_call, recording_url
from callwatch.simulator.generic import events_for, signed_request
from callwatch.simulator.runner import Progress, run_simulation
from callwatch.simulator.servers import BackgroundServer, DetailServer

__all__ = [
    "SIM_RECORDING_BASE",
    "BackgroundServer",
    "DetailServer",
    "Progress",
    "SimCall",
    "cost_of",
    "events_for",
    "make_call",
    "recording_url",
    "run_simulation",
    "signed_request",
]
