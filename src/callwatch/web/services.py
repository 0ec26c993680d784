"""What the web process holds for its lifetime: runtime, intake, producer, rate limits."""

from dataclasses import dataclass, field

from sqlalchemy import text
from starlette.requests import Request

from callwatch.intake.receiver import Intake
from callwatch.probe import Probe
from callwatch.queue import Producer
from callwatch.ratelimits import Leases
from callwatch.runtime import Runtime


@dataclass
class Services:
    runtime: Runtime
    admin_token: str
    intake: Intake
    producer: Producer
    limits: Leases
    probes: "Probes" = field(init=False)

    def __post_init__(self) -> None:
        self.probes = Probes(self)


def services_of(request: Request) -> Services:
    """The web process's services, from a request (its app's state)."""
    services: Services = request.app.state.services
    return services


class Probes:
    """The readiness probe's checks, each bounded by PROBE_TIMEOUT_S and run one at a time."""

    def __init__(self, services: Services) -> None:
        self.database = Probe(lambda: _select_1(services.runtime), PROBE_TIMEOUT_S)
        self.redis = Probe(services.producer.ping, PROBE_TIMEOUT_S)


PROBE_TIMEOUT_S = 0.5


def _select_1(runtime: Runtime) -> None:
    with runtime.engine.connect() as connection:
        connection.execute(text("SELECT 1"))
