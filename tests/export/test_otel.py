"""OpenTelemetry export: the OTLP/JSON file, and OTLP/HTTP to a real receiver on 127.0.0.1
that decodes each request with opentelemetry-proto."""

from __future__ import annotations

import base64
import json
import re
import socket
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self

import pytest
from google.protobuf.json_format import ParseDict
from msgspec import structs
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from playground.core import events as ev
from playground.export import otel
from playground.export.formats import ExportJob, export
from playground.export.layout import TurnLayout
from tests.events import event
from tests.export.conftest import SESSION, TWO_TURNS, VOICE, load, long_session

SPAN_KIND_CLIENT = 3
LLM_SPAN = "chat smollm2-135m-instruct"  # the GenAI conventions' span name: `{operation} {model}`
STATUS_CODE_ERROR = 2


def spans_of(request: dict) -> list[dict]:
    return [s for rs in request["resourceSpans"] for ss in rs["scopeSpans"] for s in ss["spans"]]


def attrs(span: dict) -> dict:
    def value(v):
        kind, inner = next(iter(v.items()))
        if kind == "arrayValue":
            return [value(x) for x in inner.get("values", [])]
        return int(inner) if kind == "intValue" else inner

    return {a["key"]: value(a["value"]) for a in span.get("attributes", [])}


def turn_layouts(job: ExportJob) -> list[TurnLayout]:
    return [item for item in job.layouts() if isinstance(item, TurnLayout)]


def all_spans(header, events) -> list:
    """Every span of the session, finished, as the export hands them to its sinks."""
    job = ExportJob(header, events)
    spans: list = []
    otel.write_spans(job.plan, job.layouts(), [spans.extend])
    return spans


def otlp_file(tmp_path, path_of_trace) -> dict:
    header, events = load(path_of_trace)
    path = export("otel", tmp_path / "trace.otlp.json", header, events)
    return json.loads(path.read_bytes())


def test_span_tree_attributes_and_times(tmp_path):
    request = otlp_file(tmp_path, SESSION)
    spans = spans_of(request)
    by_id = {s["spanId"]: s for s in spans}
    assert all(re.fullmatch(r"[0-9a-f]{16}", s["spanId"]) and re.fullmatch(r"[0-9a-f]{32}", s["traceId"])
               for s in spans)
    assert len({s["traceId"] for s in spans}) == 1

    def parent(span):
        return by_id[span["parentSpanId"]]["name"]

    (session,) = [s for s in spans if "parentSpanId" not in s]
    assert session["name"] == "session"
    expected_parent = {"turn": "session", LLM_SPAN: "turn", "chunker": "turn", "tts": "turn", "playback": "turn",
                       "chunk": "chunker", "tts.chunk": "tts", "play.chunk": "playback"}
    for span in spans:
        if span is not session:
            assert parent(span) == expected_parent[span["name"]], span["name"]
            up = by_id[span["parentSpanId"]]
            assert int(up["startTimeUnixNano"]) <= int(span["startTimeUnixNano"]) <= int(span["endTimeUnixNano"])
            assert int(span["endTimeUnixNano"]) <= int(up["endTimeUnixNano"])
    header, events = load(SESSION)
    counts = Counter(s["name"] for s in spans)
    assert counts["turn"] == 5 and counts[LLM_SPAN] == 5
    assert counts["chunk"] == sum(isinstance(e, ev.Chunk) for e in events)
    assert counts["tts.chunk"] == sum(isinstance(e, ev.TtsSend) for e in events)
    assert counts["play.chunk"] == sum(isinstance(e, ev.PlayStart) for e in events)

    # Wall-clock times: the header's started_at plus the session clock.
    base = otel.epoch_ns(header)
    assert int(session["startTimeUnixNano"]) == base
    layouts = turn_layouts(ExportJob(header, events))
    turns = sorted((s for s in spans if s["name"] == "turn"), key=lambda s: int(s["startTimeUnixNano"]))
    assert [int(t["startTimeUnixNano"]) for t in turns] == [base + round(t.span.start_ms * 1e6) for t in layouts]

    # The LLM span speaks the GenAI conventions.
    done = [e for e in events if isinstance(e, ev.LlmDone)]
    llms = sorted((s for s in spans if s["name"] == LLM_SPAN), key=lambda s: int(s["startTimeUnixNano"]))
    first = attrs(llms[0])
    assert llms[0]["kind"] == SPAN_KIND_CLIENT
    assert first["gen_ai.operation.name"] == "chat" and first["gen_ai.provider.name"] == "local"
    assert first["gen_ai.request.model"] == "smollm2-135m-instruct"
    assert first["gen_ai.request.max_tokens"] == header["preset"]["llm"]["max_tokens"]
    assert first["gen_ai.usage.output_tokens"] == done[0].tokens == 120
    assert first["gen_ai.response.finish_reasons"] == ["length"]
    assert first["gen_ai.response.time_to_first_chunk"] == pytest.approx(
        (layouts[0].metrics.llm_ttft - 0.1) / 1000, abs=1e-3)

    # Turn 4 was cancelled: said on the turn, with the cancel as its event.
    turn4 = turns[3]
    assert attrs(turn4)["playground.turn.status"] == "cancelled"
    assert "turn.cancelled" in {e["name"] for e in turn4.get("events", [])}
    assert attrs(turns[0])["playground.metrics.ttfs"] == pytest.approx(layouts[0].metrics.ttfs, abs=1e-3)
    tts_group = next(s for s in spans if s["name"] == "tts" and s["parentSpanId"] == turns[0]["spanId"])
    assert {"TTFT_TTS", "TTFA"} <= {e["name"] for e in tts_group["events"]}


def test_file_is_the_protobuf_json_mapping_with_hex_ids(tmp_path, monkeypatch):
    monkeypatch.setattr(otel, "BATCH_SPANS", 50)  # the file written a batch at a time, as a long session's is
    header, events = load(SESSION)
    job = ExportJob(header, events)
    spans: list = []
    with (tmp_path / "s.otlp.json").open("wb") as f:
        file = otel.OtlpJsonFile(f)
        otel.write_spans(job.plan, job.layouts(), [spans.extend, file])
        file.close()
    assert len(spans) > otel.BATCH_SPANS  # written in more than one batch
    request = json.loads((tmp_path / "s.otlp.json").read_bytes())
    # Back to the protobuf JSON mapping (base64 ids), parsed by protobuf: the same message the encoder made.
    for span in spans_of(request):
        for key in ("traceId", "spanId", "parentSpanId"):
            if key in span:
                span[key] = base64.b64encode(bytes.fromhex(span[key])).decode()
    assert ParseDict(request, ExportTraceServiceRequest()) == encode_spans(spans)


def test_cloud_llm_usage_and_provider(tmp_path):
    # The same turns as the OpenAI-compatible provider records them against xAI: usage as the
    # API reports it (prompt, completion, cached prompt tokens), and a --set changing the model.
    header, events = load(TWO_TURNS)
    header = {**header, "preset": {**header["preset"], "llm": {
        **header["preset"]["llm"], "provider": "openai", "model": "grok-4-fast-non-reasoning",
        "base_url": "https://api.x.ai/v1", "api_key_env": "XAI_API_KEY"}}}
    usage = ev.Usage(prompt_tokens=812, completion_tokens=20,
                     prompt_tokens_details=ev.PromptTokensDetails(cached_tokens=768))
    start_of_2 = next(i for i, e in enumerate(events) if e.turn == 2)
    change = event(ev.ConfigChange, 0, 5300.0, reason="--set", preset="grok", changes={"llm.temperature": 0.9})
    events = [structs.replace(e, provider="openai", model="grok-4-fast-non-reasoning") if isinstance(e, ev.LlmRequest)
              else structs.replace(e, usage=usage) if isinstance(e, ev.LlmDone) else e for e in events]
    events.insert(start_of_2, change)
    spans = spans_of(json.loads(export("otel", tmp_path / "x.json", header, events).read_bytes()))
    llms = sorted((s for s in spans if s["name"].startswith("chat ")), key=lambda s: int(s["startTimeUnixNano"]))
    assert [s["name"] for s in llms] == ["chat grok-4-fast-non-reasoning"] * 2
    first, second = (attrs(s) for s in llms)
    assert first["gen_ai.provider.name"] == "x_ai"
    assert first["gen_ai.request.model"] == "grok-4-fast-non-reasoning"
    assert (first["gen_ai.usage.input_tokens"], first["gen_ai.usage.output_tokens"],
            first["gen_ai.usage.cache_read.input_tokens"]) == (812, 20, 768)
    assert (first["gen_ai.request.temperature"], second["gen_ai.request.temperature"]) == (0.3, 0.9)


def test_errors_and_spoken_turns(tmp_path):
    header, events = load(TWO_TURNS)
    cut = next(i for i, e in enumerate(events) if e.turn == 2 and isinstance(e, ev.TtsAudio))
    failed = [*events[:cut + 1], event(ev.Error, 2, events[cut].t_ms + 5.0, where="tts", message="piper exited")]
    spans = spans_of(json.loads(export("otel", tmp_path / "e.json", header, failed).read_bytes()))
    turn2 = max((s for s in spans if s["name"] == "turn"), key=lambda s: int(s["startTimeUnixNano"]))
    assert turn2["status"] == {"code": STATUS_CODE_ERROR, "message": "piper exited"}
    tts = next(s for s in spans if s["name"] == "tts" and s["parentSpanId"] == turn2["spanId"])
    assert tts["status"]["code"] == STATUS_CODE_ERROR

    spans = spans_of(otlp_file(tmp_path, VOICE))
    turn = next(s for s in spans if s["name"] == "turn")
    speech, stt = (next(s for s in spans if s["name"] == n) for n in ("speech", "stt"))
    assert speech["parentSpanId"] == stt["parentSpanId"] == turn["spanId"]
    assert speech["endTimeUnixNano"] == stt["startTimeUnixNano"]
    assert {ev.SttFinal.type, "STT"} <= {e["name"] for e in stt["events"]}
    assert attrs(turn)["playground.metrics.user_latency"] > 0


def test_every_span_event_lies_within_its_span(tmp_path, recorded):
    # A viewer draws a span's events on the span: one outside it (the turn's `tts.session reuse`,
    # long before the first TTS request) is misdrawn or dropped. Such events go to the turn.
    spans = spans_of(otlp_file(tmp_path, recorded))
    for span in spans:
        for span_event in span.get("events", []):
            assert int(span["startTimeUnixNano"]) <= int(span_event["timeUnixNano"]) <= int(span["endTimeUnixNano"]), \
                (span["name"], span_event["name"])
    turns = [s for s in spans if s["name"] == "turn"]
    reuses = [e for t in turns for e in t.get("events", []) if e["name"] == "tts.session reuse"]
    assert len(reuses) == len(turns)  # every turn of these traces reused the session it opened


def test_llm_span_is_named_as_the_genai_conventions_say(tmp_path):
    # `{gen_ai.operation.name} {gen_ai.request.model}`, gen_ai.provider.name and not the
    # deprecated gen_ai.system it replaced.
    llms = [s for s in spans_of(otlp_file(tmp_path, TWO_TURNS)) if attrs(s).get("gen_ai.operation.name")]
    assert [s["name"] for s in llms] == ["chat smollm2-135m-instruct"] * 2
    for span in llms:
        assert attrs(span)["gen_ai.operation.name"] == "chat" and attrs(span)["gen_ai.provider.name"] == "local"
        assert "gen_ai.system" not in attrs(span)


class Collector:
    """An OTLP/HTTP receiver: decodes each POSTed ExportTraceServiceRequest with opentelemetry-proto."""

    def __init__(self, status: int = 200) -> None:
        self.requests: list[tuple[str, str, ExportTraceServiceRequest]] = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                collector.requests.append((self.path, self.headers["Content-Type"],
                                           ExportTraceServiceRequest.FromString(body)))
                reply = ExportTraceServiceResponse().SerializeToString() if status == 200 else b"rejected"
                self.send_response(status)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    def spans(self) -> list:
        return [s for _, _, r in self.requests for rs in r.resource_spans for ss in rs.scope_spans for s in ss.spans]


def test_collector_receives_the_same_spans_as_the_file(tmp_path):
    header, events = load(SESSION)
    with Collector() as collector:
        path = export("otel", tmp_path / "s.otlp.json", header, events, otlp_endpoint=collector.url)
    assert {(p, t) for p, t, _ in collector.requests} == {("/v1/traces", "application/x-protobuf")}
    received = collector.spans()
    in_file = spans_of(json.loads(path.read_bytes()))
    assert sorted((s.name, s.span_id.hex(), s.parent_span_id.hex()) for s in received) == \
        sorted((s["name"], s["spanId"], s.get("parentSpanId", "")) for s in in_file)
    by_id = {s.span_id: s for s in received}
    llm = next(s for s in received if s.name == LLM_SPAN)
    assert by_id[llm.parent_span_id].name == "turn"
    llm_attrs = {a.key: a.value for a in llm.attributes}
    assert llm_attrs["gen_ai.operation.name"].string_value == "chat"
    assert llm_attrs["gen_ai.request.model"].string_value == "smollm2-135m-instruct"
    assert llm_attrs["gen_ai.usage.output_tokens"].int_value == 120


def test_collector_gets_a_long_session_in_batches(tmp_path):
    header, events = long_session()
    spans = all_spans(header, events)
    with Collector() as collector:
        export("otel", tmp_path / "long.otlp.json", header, events, otlp_endpoint=collector.url + "/v1/traces")
    assert len(collector.requests) == -(-len(spans) // otel.BATCH_SPANS) > 1
    assert len(collector.spans()) == len(spans)
    assert sum(s.name == "turn" for s in collector.spans()) == 200


def send(endpoint: str, spans: list, timeout_s: float) -> None:
    with otel.OtlpSender(endpoint, timeout_s) as sender:
        sender(spans)
    sender.check()


def test_collector_failures_are_one_clear_error(tmp_path):
    header, events = load(TWO_TURNS)
    spans = all_spans(header, events)
    with Collector(status=400) as collector, pytest.raises(OSError, match=r"did not accept the spans.*400"):
        send(collector.url, spans, timeout_s=5)
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    with pytest.raises(OSError, match=rf"127\.0\.0\.1:{port}/v1/traces .*Connection refused"):
        send(f"http://127.0.0.1:{port}", spans, timeout_s=2)
    # The file is written all the same.
    with Collector(status=400) as collector, pytest.raises(OSError, match=r"did not accept the spans.*400"):
        export("otel", tmp_path / "t.otlp.json", header, events, otlp_endpoint=collector.url)
    assert len(spans_of(json.loads((tmp_path / "t.otlp.json").read_bytes()))) == len(spans)
    with pytest.raises(ValueError, match="expected an http"):
        otel.traces_url("127.0.0.1:4318")
