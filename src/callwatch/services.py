"""What the web process holds for its lifetime: runtime, intake, producer."""

from dataclasses import dataclass

from callwatch.intake import Intake
from callwatch.queue import Producer
from callwatch.runtime import Runtime


@dataclass
class Services:
    runtime: Runtime
    admin_token: str
    intake: Intake
    producer: Producer
