"""The loopback OpenAI-compatible server on a real socket, read with plain httpx: the SSE
stream exactly as OpenAI documents it, errors, auth, keep-alive, usage, and its faults."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from playground.llm.replay import ReplayLLM, ReplayLLMConfig
from playground.servers.faults import Fault
from playground.servers.openai_llm import OpenAILLMServer

WORDS = ["Sure", ",", " I", " can", " help", " with", " that", "."]
MODEL = "replay"


def SERVER() -> OpenAILLMServer:
    """The module's server, made by the conftest's `server` fixture (which takes a class or a factory)."""
    backend = ReplayLLM(ReplayLLMConfig(), turns=[[(10.0 + 5.0 * i, w) for i, w in enumerate(WORDS)]])
    return OpenAILLMServer(backend, model=MODEL)


def chat(**extra):
    return {"model": MODEL, "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
            "stream": True, **extra}


async def raw_stream(client: httpx.AsyncClient, url: str, body: dict) -> tuple[httpx.Response, str]:
    async with client.stream("POST", f"{url}/chat/completions", json=body) as response:
        text = (await response.aread()).decode()
    return response, text


def data_events(text: str) -> list[str]:
    return [block[len("data: "):] for block in text.split("\n\n") if block.startswith("data: ")]


async def test_the_stream_follows_the_documented_shape(server):
    async with asyncio.timeout(10), httpx.AsyncClient() as client:
        response, text = await raw_stream(client, server.base_url, chat(stream_options={"include_usage": True}))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert text.endswith("data: [DONE]\n\n")
    events = data_events(text)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"} and len({c["id"] for c in chunks}) == 1
    assert all(c["model"] == MODEL for c in chunks)
    # role first, then the content deltas, then the finish_reason chunk, then usage with choices: []
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert [c["choices"][0]["delta"]["content"] for c in chunks[1:-2]] == WORDS
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-2])
    assert chunks[-2]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
    assert chunks[-1]["choices"] == []
    usage = chunks[-1]["usage"]
    assert usage["completion_tokens"] == len(WORDS) and usage["prompt_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["prompt_tokens_details"] == {"cached_tokens": 0}
    # with include_usage every other chunk carries usage: null
    assert all(c["usage"] is None for c in chunks[:-1])


async def test_without_include_usage_there_is_no_usage(server):
    async with asyncio.timeout(10), httpx.AsyncClient() as client:
        _, text = await raw_stream(client, server.base_url, chat())
    chunks = [json.loads(e) for e in data_events(text)[:-1]]
    assert all("usage" not in c and c["choices"] for c in chunks)


async def test_cached_tokens_count_the_prefix_shared_with_the_previous_request(server):
    first = chat(stream_options={"include_usage": True})
    second = dict(first, messages=[*first["messages"], {"role": "assistant", "content": "Hello!"},
                                   {"role": "user", "content": "And then?"}])
    async with asyncio.timeout(10), httpx.AsyncClient() as client:
        usages = []
        for body in (first, second):
            _, text = await raw_stream(client, server.base_url, body)
            usages.append(json.loads(data_events(text)[-2])["usage"])
    assert usages[0]["prompt_tokens_details"]["cached_tokens"] == 0
    assert usages[1]["prompt_tokens_details"]["cached_tokens"] == usages[0]["prompt_tokens"]
    assert usages[1]["prompt_tokens"] > usages[0]["prompt_tokens"]


async def test_max_tokens_cuts_the_reply_with_finish_reason_length(server):
    async with asyncio.timeout(10), httpx.AsyncClient() as client:
        _, text = await raw_stream(client, server.base_url, chat(max_tokens=3, stream_options={"include_usage": True}))
    chunks = [json.loads(e) for e in data_events(text)[:-1]]
    assert [c["choices"][0]["delta"].get("content") for c in chunks[1:4]] == WORDS[:3]
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"
    assert chunks[-1]["usage"]["completion_tokens"] == 3


async def test_a_request_without_stream_gets_one_completion(server):
    async with asyncio.timeout(10), httpx.AsyncClient() as client:
        response = await client.post(f"{server.base_url}/chat/completions", json=chat(stream=False))
    body = response.json()
    assert response.status_code == 200 and body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "".join(WORDS)}
    assert body["choices"][0]["finish_reason"] == "stop" and body["usage"]["completion_tokens"] == len(WORDS)


async def test_models_errors_and_keep_alive(server):
    async with asyncio.timeout(10), httpx.AsyncClient() as client:
        models = await client.get(f"{server.base_url}/models")
        unknown_model = await client.post(f"{server.base_url}/chat/completions", json=chat(model="gpt-nope"))
        unknown_path = await client.post(f"{server.base_url}/completions", json=chat())
        bad_json = await client.post(f"{server.base_url}/chat/completions", content=b"{not json")
        bad_limit = await client.post(f"{server.base_url}/chat/completions", json=chat(max_tokens="many"))
        no_stream_options = await client.post(f"{server.base_url}/chat/completions",
                                              json=chat(stream=False, stream_options={"include_usage": True}))
        ok, _ = await raw_stream(client, server.base_url, chat())
    assert models.json()["data"][0]["id"] == MODEL and models.json()["object"] == "list"
    assert unknown_model.status_code == 404 and unknown_model.json()["error"]["code"] == "model_not_found"
    assert "gpt-nope" in unknown_model.json()["error"]["message"]
    assert unknown_path.status_code == 404 and "Invalid URL" in unknown_path.json()["error"]["message"]
    assert bad_json.status_code == 400 and bad_limit.status_code == 400 and no_stream_options.status_code == 400
    assert ok.status_code == 200
    # Every request above went over one keep-alive connection, errors included.
    assert server.connections == 1


async def test_an_api_key_is_required_when_the_server_has_one(server):
    server.api_key = "sk-loopback"
    async with asyncio.timeout(10), httpx.AsyncClient() as client:
        missing = await client.get(f"{server.base_url}/models")
        wrong = await client.get(f"{server.base_url}/models", headers={"Authorization": "Bearer sk-other"})
        right = await client.get(f"{server.base_url}/models", headers={"Authorization": "Bearer sk-loopback"})
    assert missing.status_code == 401 and "didn't provide an API key" in missing.json()["error"]["message"]
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"
    assert right.status_code == 200


async def test_injected_statuses_fire_once(server):
    server.inject(Fault("reject", status=429, retry_after=7))
    async with asyncio.timeout(10), httpx.AsyncClient() as client:
        limited = await client.post(f"{server.base_url}/chat/completions", json=chat())
        again, _ = await raw_stream(client, server.base_url, chat())
    assert limited.status_code == 429 and limited.headers["retry-after"] == "7"
    assert limited.json()["error"]["code"] == "rate_limit_exceeded"
    assert again.status_code == 200


async def test_style_variations_are_legal_sse(server):
    server.style.ping = True
    server.style.null_content = True
    server.style.empty_choices = True
    server.style.reasoning = ["Let me think. ", "Short answer."]
    async with asyncio.timeout(10), httpx.AsyncClient() as client:
        _, text = await raw_stream(client, server.base_url, chat())
    assert text.count(": ping\n\n") == len(data_events(text))
    chunks = [json.loads(e) for e in data_events(text)[:-1]]
    deltas = [c["choices"][0]["delta"] if c["choices"] else None for c in chunks]
    assert deltas[1] == {"content": None}
    assert [d.get("reasoning_content") for d in deltas[2:4]] == ["Let me think. ", "Short answer."]
    assert deltas[5] is None  # the choices: [] chunk right after the first token
    assert "".join(d.get("content") or "" for d in deltas if d) == "".join(WORDS)


async def test_a_cut_leaves_half_an_event_and_a_broken_chunked_body(server):
    server.inject(Fault("close", after=2))
    received = b""
    async with asyncio.timeout(10), httpx.AsyncClient() as client:
        with pytest.raises(httpx.RemoteProtocolError):
            async with client.stream("POST", f"{server.base_url}/chat/completions", json=chat()) as response:
                async for piece in response.aiter_bytes():
                    received += piece
    whole, partial = received.decode().rsplit("\n\n", 1)
    assert partial.startswith("data: {") and len(partial) > 20
    assert [json.loads(e)["choices"][0]["delta"].get("content") for e in data_events(whole)[1:]] == WORDS[:2]


async def test_a_client_hanging_up_stops_the_reply_at_once(start_server):
    slow = ReplayLLM(ReplayLLMConfig(), turns=[[(10.0 + 10.0 * i, f" w{i}") for i in range(200)]])
    slow_server = await start_server(OpenAILLMServer(slow, model=MODEL))
    async with asyncio.timeout(10), httpx.AsyncClient() as client:
        async with client.stream("POST", f"{slow_server.base_url}/chat/completions", json=chat()) as response:
            async for line in response.aiter_lines():
                if line.startswith("data:") and len(slow_server.sent[0]) >= 3:
                    break
        await asyncio.sleep(0.05)
        sent = len(slow_server.sent[0])
        await asyncio.sleep(0.3)  # the replay would have sent ~30 more tokens
        assert len(slow_server.sent[0]) == sent < 10


def smollm2_tokens(text: str) -> int:
    """The count of SmolLM2's own tokenizer (the GGUF's vocabulary, through llama.cpp)."""
    from playground.llm.local import find_model_file, import_llama_cpp

    vocab = import_llama_cpp().Llama(model_path=str(find_model_file()), vocab_only=True, verbose=False)
    return len(vocab.tokenize(text.encode(), add_bos=False, special=True))


async def test_prompt_tokens_are_counted_with_the_models_tokenizer(server):
    async with asyncio.timeout(10), httpx.AsyncClient() as client:
        _, text = await raw_stream(client, server.base_url, chat(stream_options={"include_usage": True}))
    prompt = "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
    assert json.loads(data_events(text)[-2])["usage"]["prompt_tokens"] == smollm2_tokens(prompt)


async def test_the_prompt_cache_is_kept_per_conversation(server):
    """A new conversation's first request has nothing cached, even when another client sent the same
    messages before; a conversation's next request has its previous prompt cached."""
    first = chat(stream_options={"include_usage": True})
    follow_up = dict(first, messages=[*first["messages"], {"role": "assistant", "content": "Hello!"},
                                      {"role": "user", "content": "And then?"}])
    async with asyncio.timeout(10), httpx.AsyncClient() as one, httpx.AsyncClient() as other:
        usages = []
        for client, body in ((one, first), (other, first), (other, follow_up)):
            _, text = await raw_stream(client, server.base_url, body)
            usages.append(json.loads(data_events(text)[-2])["usage"])
    assert [u["prompt_tokens_details"]["cached_tokens"] for u in usages[:2]] == [0, 0]
    assert usages[2]["prompt_tokens_details"]["cached_tokens"] == usages[1]["prompt_tokens"]


async def test_unknown_paths_and_methods_get_openais_error_shape(server):
    async with asyncio.timeout(10), httpx.AsyncClient() as client:
        missing = await client.get(f"{server.url}/v2/nothing")
        wrong_method = await client.get(f"{server.base_url}/chat/completions")
    for response, status in ((missing, 404), (wrong_method, 405)):
        assert response.status_code == status
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    assert missing.json()["error"]["message"] == "Invalid URL (GET /v2/nothing)"


async def test_faults_are_armed_over_http_while_the_server_runs(server):
    async with asyncio.timeout(10), httpx.AsyncClient() as client:
        armed = await client.post(f"{server.url}/loopback/faults", content="reject:status=503,retry_after=2")
        refused = await client.post(f"{server.base_url}/chat/completions", json=chat())
        bad = await client.post(f"{server.url}/loopback/faults", json={"kind": "wrong_format"})
        again, _ = await raw_stream(client, server.base_url, chat())
    assert armed.status_code == 200 and armed.json()["armed"][0]["kind"] == "reject"
    assert refused.status_code == 503 and refused.headers["retry-after"] == "2"
    assert bad.status_code == 400 and "injects only" in bad.json()["error"]
    assert again.status_code == 200


async def test_a_burst_holds_tokens_and_sends_them_at_once(start_server):
    paced = ReplayLLM(ReplayLLMConfig(), turns=[[(10.0 + 30.0 * i, w) for i, w in enumerate(WORDS)]])
    server = await start_server(OpenAILLMServer(paced, model=MODEL))
    server.inject(Fault("burst", after=1, count=4))
    async with asyncio.timeout(10), httpx.AsyncClient() as client:
        _, text = await raw_stream(client, server.base_url, chat())
    sent = server.sent[0]
    assert len(sent) == len(WORDS) and len(set(sent[1:5])) == 1  # tokens 1-4 in one write
    assert sent[1] - sent[0] >= 60  # held until token 4 came, 4 x 30 ms after token 0
    chunks = [json.loads(e) for e in data_events(text)[1:-2]]
    assert [c["choices"][0]["delta"]["content"] for c in chunks] == WORDS


def test_serve_llm_arms_the_faults_it_is_given():
    import os
    import subprocess
    import sys
    from pathlib import Path

    import playground

    trace = Path(playground.__file__).parent / "data" / "traces" / "seed-turn4.jsonl"
    command = [sys.executable, "-m", "playground.cli", "serve-llm", "--port", "0", "--replay", str(trace)]
    process = subprocess.Popen([*command, "--fault", "reject:status=429,retry_after=3"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        line = process.stdout.readline()
        base_url, model = line.split(" at ")[1].split(" ")[0], line.split(" at ")[0].split("serving ")[1]
        body = {"model": model, "messages": [{"role": "user", "content": "Hi"}]}
        refused = httpx.post(f"{base_url}/chat/completions", json=body, timeout=10)
        served = httpx.post(f"{base_url}/chat/completions", json=body, timeout=30)
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert refused.status_code == 429 and refused.headers["retry-after"] == "3"
    assert served.status_code == 200
    wrong = subprocess.run([*command, "--fault", "wrong_format"], check=False, capture_output=True, text=True,
                           timeout=60)
    assert wrong.returncode != 0 and "wrong_format" in wrong.stderr and "injects only" in wrong.stderr
