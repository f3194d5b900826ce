"""OpenTelemetry: the session as spans `session` > `turn` > `speech` / `stt` / `chat {model}` /
`chunker` / `tts` / `playback`, the last three with one child span per chunk, built with the
official SDK.

The LLM span follows the GenAI semantic conventions: named `chat {model}`, with
gen_ai.operation.name, gen_ai.provider.name, request model and parameters, usage, finish
reasons and time to first chunk. Message text is not exported (the conventions make
content opt-in). The trace's other events and the seed's markers are span events, each on
the span of its lane whose time range holds it, else on the turn (a viewer misdraws an
event outside its span: the turn's `tts.session reuse` comes long before its first TTS
request); errors set the ERROR status on that span and on the turn.

Timestamps: the trace's milliseconds on the session clock plus the header's `started_at`
(wall clock, whole seconds), in nanoseconds since the epoch.

Two outputs, written as the spans are built, a batch at a time: an OTLP/JSON file (the
protobuf JSON mapping of ExportTraceServiceRequest, with trace and span ids as hex as
OTLP/JSON requires), and OTLP/HTTP (protobuf) to a collector with the SDK's exporter.
"""

from __future__ import annotations

import base64
import datetime
import importlib
import json
import logging
import random
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager, nullcontext
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import urlsplit

from playground import __version__
from playground.core.events import TRACE_VERSION
from playground.core.progress import Progress
from playground.core.tracefile import encode_json
from playground.export.atomic import atomic_open
from playground.export.layout import CHUNKER, LLM, PLAYBACK, STT, TTS, Mark, SessionPlan, Span, TurnLayout

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.sdk.trace.id_generator import IdGenerator

# Where finished spans go, a batch at a time: the OTLP/JSON file, a collector.
SpanSink = Callable[[Sequence["ReadableSpan"]], None]

SERVICE_NAME = "playground"
BATCH_SPANS = 512  # spans per OTLP/HTTP request, the SDK batch processor's default
COLLECTOR_TIMEOUT_S = 10.0
# gen_ai.provider.name well-known values, by the host an OpenAI-compatible base_url points at.
_PROVIDER_BY_HOST = {"api.openai.com": "openai", "api.x.ai": "x_ai", "api.groq.com": "groq",
                     "api.deepseek.com": "deepseek", "api.mistral.ai": "mistral_ai", "api.anthropic.com": "anthropic",
                     "api.perplexity.ai": "perplexity"}
# Lanes drawn as a group span under the turn with one child span per chunk: lane -> span names.
_GROUPS = {CHUNKER: "chunker", TTS: "tts", PLAYBACK: "playback"}
_CHILD_NAMES = {CHUNKER: "chunk", TTS: "tts.chunk", PLAYBACK: "play.chunk"}


def _require_sdk() -> None:
    for module in ("opentelemetry.sdk.trace", "opentelemetry.exporter.otlp.proto.http"):
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise RuntimeError(f"OpenTelemetry export needs opentelemetry-sdk and opentelemetry-exporter-otlp-proto-http "
                               f"({exc}); reinstall the playground: pip install -e .") from None


def epoch_ns(header: dict[str, Any]) -> int:
    """The session's start in nanoseconds since the epoch, from the header's `started_at`."""
    started = header.get("started_at")
    if not started:
        raise ValueError("the trace's session header has no started_at: OpenTelemetry needs wall-clock times")
    try:
        when = datetime.datetime.fromisoformat(str(started))
    except ValueError:
        raise ValueError(f"the trace's session header has started_at {started!r}, not an ISO 8601 time") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return int(when.timestamp()) * 1_000_000_000 + when.microsecond * 1000


_PRIMITIVES = (str, bool, int, float)


def _primitive_list(value: Any) -> bool:
    return isinstance(value, list) and len({type(v) for v in value}) == 1 and isinstance(value[0], _PRIMITIVES)


def _attributes(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Trace data as OpenTelemetry attributes: nested dicts flattened with dots, None dropped,
    lists of one primitive type kept, anything else as JSON text."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if value is None or value == []:
            continue
        if isinstance(value, dict):
            out.update(_attributes(value, name + "."))
        elif isinstance(value, _PRIMITIVES) or _primitive_list(value):
            out[name] = value
        else:
            out[name] = json.dumps(value, ensure_ascii=False)
    return out


def provider_name(provider: str, base_url: str) -> str:
    """gen_ai.provider.name: the well-known value for a known API host, else the playground's provider."""
    return _PROVIDER_BY_HOST.get(urlsplit(base_url).hostname or "", provider)


def _llm_attributes(span: Span, llm_config: dict[str, Any], first_chunk_ms: float | None) -> dict[str, Any]:
    """The LLM span's attributes, as the GenAI semantic conventions name them (gen_ai.provider.name;
    not gen_ai.system, which it replaces)."""
    args = span.args
    provider = str(args.get("provider") or llm_config.get("provider", "?"))
    attrs: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": provider_name(provider, str(llm_config.get("base_url", ""))),
        "gen_ai.request.model": str(args.get("model") or llm_config.get("model", "?")),
    }
    for key, attr in (("temperature", "gen_ai.request.temperature"), ("max_tokens", "gen_ai.request.max_tokens")):
        if isinstance(llm_config.get(key), (int, float)):
            attrs[attr] = llm_config[key]
    usage = args.get("usage") or {}
    input_tokens = usage.get("prompt_tokens", usage.get("input_tokens"))
    output_tokens = usage.get("completion_tokens", usage.get("output_tokens"))
    if output_tokens is None and provider == "local":
        output_tokens = args.get("tokens")  # llama.cpp streams exactly one token per piece
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens")
    for attr, value in (("gen_ai.usage.input_tokens", input_tokens), ("gen_ai.usage.output_tokens", output_tokens),
                        ("gen_ai.usage.cache_read.input_tokens", cached)):
        if isinstance(value, int):
            attrs[attr] = value
    if args.get("finish_reason"):
        attrs["gen_ai.response.finish_reasons"] = [str(args["finish_reason"])]
    if first_chunk_ms is not None:  # seconds from the request, as the convention has it
        attrs["gen_ai.response.time_to_first_chunk"] = round(first_chunk_ms / 1000.0, 6)
    attrs.update(_attributes({k: v for k, v in args.items() if k not in ("provider", "model", "usage")},
                             "playground.llm."))
    return attrs


def _seeded_ids(seed: str) -> IdGenerator:
    """Trace and span ids drawn from a generator seeded by the session: exporting the same
    trace twice gives the same ids, so a collector sees one trace, not two copies."""
    from opentelemetry.sdk.trace.id_generator import IdGenerator

    rng = random.Random(seed)

    class SeededIds(IdGenerator):
        def generate_span_id(self) -> int:
            return rng.getrandbits(64) or 1

        def generate_trace_id(self) -> int:
            return rng.getrandbits(128) or 1

    return SeededIds()


class _Holder:
    """A span that takes the marks of its lane falling within its time range."""

    def __init__(self, lane: str, span: Any, start_ms: float, end_ms: float) -> None:
        self.lane, self.span, self.start_ms, self.end_ms = lane, span, start_ms, end_ms

    def holds(self, mark: Mark) -> bool:
        return mark.lane == self.lane and self.start_ms <= mark.t_ms <= self.end_ms


class _SpanWriter:
    """Creates the SDK spans of one session with the trace's own timestamps, a turn at a time,
    and hands them to the sinks in batches of BATCH_SPANS as they finish."""

    def __init__(self, plan: SessionPlan, sinks: Sequence[SpanSink]) -> None:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
            InMemorySpanExporter,
        )

        header = plan.header
        self.trace_api = trace
        self.base_ns = epoch_ns(header)
        self.plan = plan
        self.sinks = sinks
        seed = json.dumps([header.get("started_at"), header.get("preset", {}).get("name"), plan.turns, plan.end_ms])
        self.provider = TracerProvider(
            resource=Resource.create({"service.name": SERVICE_NAME,
                                      "service.version": str(header.get("playground", ""))}),
            id_generator=_seeded_ids(seed), shutdown_on_exit=False)
        self.finished = InMemorySpanExporter()
        self.provider.add_span_processor(SimpleSpanProcessor(self.finished))
        self.tracer = self.provider.get_tracer("playground.export", __version__)
        self.pending: list[ReadableSpan] = []

    def ns(self, ms: float) -> int:
        return self.base_ns + round(ms * 1_000_000)

    def start(self, name: str, parent: Any, start_ms: float, attributes: dict[str, Any], **kwargs: Any) -> Any:
        context = self.trace_api.set_span_in_context(parent) if parent is not None else None
        return self.tracer.start_span(name, context=context, start_time=self.ns(start_ms), attributes=attributes,
                                      **kwargs)

    def add_mark(self, span: Any, mark: Mark, turn_span: Any = None) -> None:
        from opentelemetry.trace import Status, StatusCode

        span.add_event(mark.name, _attributes(mark.args), timestamp=self.ns(mark.t_ms))
        if mark.name.startswith("error"):
            status = Status(StatusCode.ERROR, str(mark.args.get("message", "")))
            for target in (span, turn_span):
                if target is not None:
                    target.set_status(status)

    def hand_over(self, everything: bool = False) -> None:
        """Passes the spans finished so far to the sinks, in whole batches (`everything`: the rest too)."""
        self.pending.extend(self.finished.get_finished_spans())
        self.finished.clear()
        while len(self.pending) >= BATCH_SPANS or (everything and self.pending):
            batch, self.pending = self.pending[:BATCH_SPANS], self.pending[BATCH_SPANS:]
            for sink in self.sinks:
                sink(batch)

    def session(self, layouts: Iterable[TurnLayout | Mark]) -> None:
        header, plan = self.plan.header, self.plan
        preset = header.get("preset", {})
        providers = header.get("providers", {})
        session = self.start("session", None, 0.0, _attributes({
            "preset": preset.get("name"), "trace_version": header.get("version", TRACE_VERSION),
            "started_at": header.get("started_at"), "llm": providers.get("llm"), "tts": providers.get("tts"),
            "audio": providers.get("audio"), "turns": plan.turns}, "playground.session."))
        # The LLM settings in force for each turn: the header's preset, then any config.change before it.
        llm_config = dict(preset.get("llm", {}))
        changes = sorted(plan.config_changes, key=lambda change: change.t_ms)
        for item in layouts:
            if isinstance(item, Mark):
                self.add_mark(session, item)
                continue
            while changes and changes[0].t_ms <= item.span.start_ms:
                for key, value in changes.pop(0).changes.items():
                    if key.startswith("llm."):
                        llm_config[key.removeprefix("llm.")] = value
            self.turn(session, item, llm_config)
            self.hand_over()
        session.end(end_time=self.ns(plan.end_ms))
        self.provider.shutdown()
        self.hand_over(everything=True)

    def turn(self, session: Any, turn: TurnLayout, llm_config: dict[str, Any]) -> None:
        from opentelemetry.trace import SpanKind

        m = turn.metrics
        attributes = _attributes({"number": turn.number, "status": m.status, "strategy": m.strategy,
                                  "tts_path": m.tts_path, "tts_path_reason": m.tts_path_reason,
                                  "budget_misses": sorted(turn.misses)}, "playground.turn.")
        attributes.update(_attributes({k: v for k, v in m.to_json().items() if k not in (
            "status", "strategy", "tts_path", "tts_path_reason", "errors", "handoffs")}, "playground.metrics."))
        turn_span = self.start("turn", session, turn.span.start_ms, attributes)
        # The spans that take marks, each its lane's within its own time range; any other mark
        # goes to the turn (a span's events must lie within it for viewers to draw them).
        holders: list[_Holder] = []
        for lane, name in _GROUPS.items():
            members = [s for s in turn.children if s.lane == lane]
            if members:
                start, end = min(s.start_ms for s in members), max(s.end_ms for s in members)
                group = self.start(name, turn_span, start, {"playground.chunks": len(members)})
                for member in members:
                    child = self.start(_CHILD_NAMES[lane], group, member.start_ms,
                                       _attributes(member.args, "playground.chunk."))
                    child.end(end_time=self.ns(member.end_ms))
                holders.append(_Holder(lane, group, start, end))
        for span in turn.children:
            if span.lane == LLM:
                request_ms = span.start_ms - turn.offset_ms
                first_chunk = None if m.llm_ttft is None else m.llm_ttft - request_ms
                attrs = _llm_attributes(span, llm_config, first_chunk)
                llm = self.start(f"chat {attrs['gen_ai.request.model']}", turn_span, span.start_ms, attrs,
                                 kind=SpanKind.CLIENT)
                holders.append(_Holder(LLM, llm, span.start_ms, span.end_ms))
            elif span.lane == STT:  # the user's speech, then STT
                stt = self.start(span.name, turn_span, span.start_ms, _attributes(span.args, "playground.stt."))
                holders.append(_Holder(STT, stt, span.start_ms, span.end_ms))
        # Tokens are left out: the LLM span carries their count, 40,000 span events would drown the trace.
        for mark in turn.marks:
            if mark.name != "token":
                holder = next((h for h in holders if h.holds(mark)), None)
                self.add_mark(holder.span if holder else turn_span, mark, turn_span)
        for holder in holders:
            holder.span.end(end_time=self.ns(holder.end_ms))
        turn_span.end(end_time=self.ns(turn.span.end_ms))


def write_spans(plan: SessionPlan, layouts: Iterable[TurnLayout | Mark], sinks: Sequence[SpanSink]) -> None:
    """The session's spans, with the trace's timestamps, to each of `sinks` a batch at a time."""
    _require_sdk()
    _SpanWriter(plan, sinks).session(layouts)


def _hex_ids(request: dict[str, Any]) -> None:
    """OTLP/JSON carries trace and span ids as hex, where the protobuf JSON mapping has base64."""
    for resource_spans in request.get("resourceSpans", []):
        for scope_spans in resource_spans.get("scopeSpans", []):
            for span in scope_spans.get("spans", []):
                for holder in (span, *span.get("links", [])):
                    for key in ("traceId", "spanId", "parentSpanId"):
                        if key in holder:
                            holder[key] = base64.b64decode(holder[key]).hex()


def otlp_json(spans: Sequence[ReadableSpan]) -> dict[str, Any]:
    """The spans as an OTLP/JSON ExportTraceServiceRequest."""
    from google.protobuf.json_format import MessageToDict
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    request = MessageToDict(encode_spans(spans), use_integers_for_enums=True)
    _hex_ids(request)
    return request


_SPANS = "\0spans\0"  # where the spans go in the request written around them


class OtlpJsonFile:
    """An OTLP/JSON file, one ExportTraceServiceRequest, written a batch of spans at a time:
    every span of a session has the one resource and scope, written once around them."""

    def __init__(self, file: IO[bytes]) -> None:
        self.file = file
        self.tail: bytes | None = None  # what follows the spans, once the first batch wrote what precedes them

    def __call__(self, spans: Sequence[ReadableSpan]) -> None:
        request = otlp_json(spans)
        (resource_spans,) = request["resourceSpans"]
        (scope_spans,) = resource_spans["scopeSpans"]
        body = b",".join(encode_json(span, compact=True) for span in scope_spans["spans"])
        if self.tail is None:
            scope_spans["spans"] = _SPANS
            head, self.tail = encode_json(request, compact=True).split(encode_json(_SPANS))
            self.file.write(head + b"[" + body)
        else:
            self.file.write(b"," + body)

    def close(self) -> None:
        self.file.write(b'{"resourceSpans":[]}' if self.tail is None else b"]" + self.tail)


def traces_url(endpoint: str) -> str:
    """The OTLP/HTTP traces URL: a bare collector address gets the standard /v1/traces path."""
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"--otlp-endpoint {endpoint!r}: expected an http(s) URL such as http://127.0.0.1:4318")
    return endpoint.rstrip("/") + "/v1/traces" if parts.path in ("", "/") else endpoint


class _ExporterMessages(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())

    def reason(self) -> str:
        """The most telling of what the exporter said: an OS error (refused, unreachable), else its last
        specific message (an HTTP status), else its summary."""
        for message in self.messages:
            if found := re.search(r"\[Errno -?\d+\][^'\")]+", message):
                return found.group(0).strip()
        specific = [m for m in self.messages if "due to timeout" not in m]
        return (specific or self.messages or ["no reason given"])[-1]


@contextmanager
def _exporter_messages() -> Iterator[_ExporterMessages]:
    """The SDK's exporter reports failures only by logging: keep its messages for our error, and
    off stderr (the command prints one line of its own)."""
    handler = _ExporterMessages()
    loggers = [logging.getLogger(name) for name in ("opentelemetry.exporter.otlp.proto.http",
                                                      "opentelemetry.exporter.otlp.common")]
    saved = [(lg, lg.propagate) for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.propagate = False
    try:
        yield handler
    finally:
        for lg, propagate in saved:
            lg.removeHandler(handler)
            lg.propagate = propagate


class OtlpSender:
    """Sends spans to an OTLP/HTTP collector, a batch per request (`with OtlpSender(url) as send:
    send(spans)`). A failure is kept, and nothing more is sent: `check` raises it, an OSError
    naming the collector, once whatever else is being written from the same spans is done."""

    def __init__(self, endpoint: str, timeout_s: float = COLLECTOR_TIMEOUT_S) -> None:
        self.url = traces_url(endpoint)
        self.timeout_s = timeout_s
        self.failure: OSError | None = None
        self._stack = ExitStack()

    def __enter__(self) -> OtlpSender:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        self.messages = self._stack.enter_context(_exporter_messages())
        self.exporter = OTLPSpanExporter(endpoint=self.url, timeout=self.timeout_s)
        self._stack.callback(self.exporter.shutdown)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def __call__(self, spans: Sequence[ReadableSpan]) -> None:
        from opentelemetry.sdk.trace.export import SpanExportResult

        if self.failure is None and self.exporter.export(spans) is not SpanExportResult.SUCCESS:
            self.failure = OSError(f"OTLP collector {self.url} did not accept the spans "
                                   f"({self.messages.reason()}); is it running and reachable?")

    def check(self) -> None:
        if self.failure is not None:
            raise self.failure


def write_otel(path: Path, plan: SessionPlan, layouts: Iterable[TurnLayout | Mark], endpoint: str | None = None,
               progress: Progress | None = None) -> None:
    """The session's spans as an OTLP/JSON file at `path`, and to the collector at `endpoint` if
    given, as they are built: a long session's spans are never all in memory. The file is written
    even when the collector fails; then an OSError says so."""
    sender = OtlpSender(endpoint) if endpoint else None
    with atomic_open(path, "wb") as f, sender if sender is not None else nullcontext():
        file = OtlpJsonFile(f)
        write_spans(plan, layouts, [file, *([sender] if sender else [])])
        file.close()
    if sender is not None:
        sender.check()
        if progress is not None:
            progress(f"otel: sent to {sender.url}", 1.0)
