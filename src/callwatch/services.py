"""What the web process holds for its lifetime: runtime, intake process, producer."""

from dataclasses import dataclass

from callwatch.intake_client import IntakeClient
from callwatch.queue import Producer
from callwatch.runtime import Runtime


@dataclass
class Services:
    runtime: Runtime
    admin_token: str
    intake: IntakeClient
    producer: Producer
