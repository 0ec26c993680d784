"""Redaction of a call's free text and of a raw webhook body (`redact_pii`, docs/data.md).

Pure, like `pii`, which finds what is replaced. The structured number fields (`from_number`,
`to_number`, `customer_number`) stay as they are: they are the call's key, and erasure finds a
person's calls by them.
"""

import json
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode

from callwatch.model import pii
from callwatch.model.records import CallFacts

Facts = TypeVar("Facts", bound=CallFacts)

FORM = "application/x-www-form-urlencoded"


def region_of(facts: CallFacts, default: str = pii.DEFAULT_REGION) -> str:
    """Where the call's people write numbers as they dial them: its own numbers' country."""
    return pii.region_of(facts.customer_number, facts.from_number, facts.to_number, default=default)


def redact_value(value: Any, region: str) -> Any:
    """A JSON value with every string in it redacted, however deep; keys and other values kept."""
    if isinstance(value, str):
        return pii.redact(value, region)
    if isinstance(value, dict):
        return {key: redact_value(item, region) for key, item in value.items()}
    if isinstance(value, list):
        return [redact_value(item, region) for item in value]
    return value


def redact_facts(facts: Facts, region: str | None = None) -> Facts:
    """The details or record with its free text redacted: transcript turns, interruption text,
    the analysis (summary, sentiment, data), evaluation results and reasons, error
    descriptions and metadata strings. Numbers, times and the call's own numbers are kept."""
    where = region or region_of(facts)

    def text(value: str | None) -> str | None:
        return None if value is None else pii.redact(value, where)

    update: dict[str, Any] = {}
    if facts.transcript:
        update["transcript"] = [
            turn.model_copy(update={"content": pii.redact(turn.content, where)})
            for turn in facts.transcript
        ]
    if facts.interruptions and facts.interruptions.items:
        items = [
            item.model_copy(update={"text": text(item.text)}) for item in facts.interruptions.items
        ]
        update["interruptions"] = facts.interruptions.model_copy(update={"items": items})
    if facts.analysis:
        analysis = facts.analysis
        update["analysis"] = analysis.model_copy(
            update={
                "summary": text(analysis.summary),
                "sentiment": text(analysis.sentiment),
                "data": redact_value(analysis.data, where),
            }
        )
    if facts.evaluations:
        update["evaluations"] = [
            evaluation.model_copy(
                update={"result": text(evaluation.result), "reason": text(evaluation.reason)}
            )
            for evaluation in facts.evaluations
        ]
    if facts.errors:
        update["errors"] = [
            error.model_copy(update={"description": text(error.description)})
            for error in facts.errors
        ]
    if facts.metadata:
        update["metadata"] = redact_value(facts.metadata, where)
    return facts.model_copy(update=update)


def redact_body(body: str, content_type: str | None, region: str) -> str:
    """A raw webhook body with its values redacted, in its own format: a JSON document's
    strings, a form's values. A body of any other kind (which no adapter takes today) is
    dropped, as what is in it is not known."""
    if (content_type or "").split(";")[0].strip().lower() == FORM:
        pairs = parse_qsl(body, keep_blank_values=True)
        return urlencode([(key, pii.redact(value, region)) for key, value in pairs])
    try:
        document = json.loads(body)
    except ValueError:
        return ""
    return json.dumps(redact_value(document, region), ensure_ascii=False, separators=(",", ":"))
