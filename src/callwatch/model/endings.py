"""How calls end, in platform-independent terms: unanswered statuses, who hung up."""

from callwatch.model.events import CallStatus
from callwatch.model.records import EndReason

# The end reason of a call that ended without an answer, by its status.
UNANSWERED: dict[CallStatus, EndReason] = {
    CallStatus.no_answer: "no_answer",
    CallStatus.busy: "busy",
    CallStatus.failed: "error",
    CallStatus.canceled: "other",
}
# The customer is the caller of an inbound call and the callee of an outbound one.
_CUSTOMER_SIDE = {"inbound": "caller", "outbound": "callee"}


def hung_up_by(side: str, direction: str | None) -> EndReason | None:
    """`caller` or `callee` hung up: the user or the agent, once the direction is known."""
    customer = _CUSTOMER_SIDE.get(direction or "")
    if side not in ("caller", "callee") or customer is None:
        return None
    return "user_hangup" if side == customer else "agent_hangup"
