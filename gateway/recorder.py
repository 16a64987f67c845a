"""Every completion into the record, and the signed feedback token that each response carries.

The writer takes rows without blocking (a deque append); it writes them in batches on its own thread.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from feedback.interaction import Interaction
from feedback.tokens import FeedbackTokens
from feedback.writer import InteractionWriter, WriterStats
from gateway.openai.serving import Exchange

FEEDBACK_TOKEN_HEADER = "x-loraflow-feedback-token"
# Fields the record keeps elsewhere, or that describe the transport rather than the generation.
_NOT_PARAMS = {"model", "messages", "prompt", "stream", "stream_options", "request_id", "user", "metadata"}


class Recorder:
    def __init__(self, writer: InteractionWriter, tokens: FeedbackTokens) -> None:
        self.writer = writer
        self.tokens = tokens

    def admit(self) -> None:
        """Raises RecordBackpressure (503) when a completion served now could not be recorded."""
        self.writer.admit()

    def observe(self, exchange: Exchange) -> None:
        if exchange.caller.record:
            self.writer.submit(to_interaction(exchange))

    def headers(self, exchange: Exchange) -> dict[str, str]:
        if not exchange.caller.record:
            return {}  # nothing recorded, nothing to rate
        return {FEEDBACK_TOKEN_HEADER: self.tokens.issue(exchange.caller.tenant_id, exchange.completion_id)}


def to_interaction(exchange: Exchange) -> Interaction:
    body: dict[str, Any] = exchange.upstream_body
    request = {"messages": body["messages"]} if exchange.endpoint == "chat" else {"prompt": body.get("prompt")}
    started = datetime.fromtimestamp(exchange.started_at, UTC)
    return Interaction(
        id=exchange.completion_id,
        tenant_id=exchange.caller.tenant_id,
        key_id=exchange.caller.key_id,
        model_requested=exchange.requested_model,
        adapter_version=exchange.target.version.public_name if exchange.target.version else None,
        alias=exchange.target.alias,
        endpoint=exchange.endpoint,
        request=request,
        params={key: value for key, value in body.items() if key not in _NOT_PARAMS},
        response_text=exchange.response_text,
        finish_reason=exchange.finish_reason,
        usage=exchange.usage,
        latency_ms=exchange.latency_s * 1000,
        ttft_ms=None if exchange.ttft_s is None else exchange.ttft_s * 1000,
        end_user=body.get("user"),
        metadata=body.get("metadata") or {},
        retrieved=exchange.retrieved,
        stream=exchange.stream,
        outcome=exchange.outcome,
        error=exchange.error,
        created_at=started,
        completed_at=started + timedelta(seconds=exchange.latency_s),
    )


def writer_metrics(stats: WriterStats) -> list[Metric]:
    """The writer's counters for Prometheus: is the record keeping up, and is anything spilled?"""
    totals = CounterMetricFamily("loraflow_record_rows", "Interaction rows by what happened to them.", labels=["state"])
    for state in ("accepted", "written", "spilled", "replayed", "rejected"):
        totals.add_metric([state], getattr(stats, state))
    queued = GaugeMetricFamily("loraflow_record_queued_rows", "Rows in memory, neither written nor spilled.")
    queued.add_metric([], stats.queued)
    spilling = GaugeMetricFamily("loraflow_record_spilling", "1 while the database is bypassed (rows go to disk).")
    spilling.add_metric([], float(stats.spilling))
    refused = CounterMetricFamily("loraflow_record_backpressure", "Completions refused because the record was full.")
    refused.add_metric([], stats.backpressure)
    return [totals, queued, spilling, refused]
