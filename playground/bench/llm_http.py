"""Benchmark of the `openai` provider against the loopback server (no network, no model):

    python -m playground.bench.llm_http [--sessions 20] [--turns 5] [--json PATH]

- TTFT by turn: sessions of `--turns` turns each, the connection opened by `load()` and
  reused by every turn, against sessions that open a new connection for every turn (a
  new client per turn, the way a per-turn handshake happens). Turn 1 and turn N of a
  pooled session should have the same TTFT.
- Client overhead: for every token, its arrival time in the provider (the Token's t_ms)
  minus the time the server handed its event to the socket; p50 / p99.

The server is a replay (first token after `--first-ms`, then one every `--gap-ms`) in a
child process, as a real server would be: its loop and the client's never share a
thread or the GIL. Both sides stamp with CLOCK_MONOTONIC (`time.perf_counter` on Linux),
so the child's send times and the client's arrival times compare directly.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from playground.bench.harness import argument_parser, markdown_table, percentiles, report
from playground.core.clock import now_ms
from playground.core.events import LlmConnection
from playground.core.metrics import percentile
from playground.llm.base import Message
from playground.llm.openai import OpenAILLM, OpenAILLMConfig
from playground.llm.replay import ReplayLLM, ReplayLLMConfig
from playground.servers.openai_llm import OpenAILLMServer

MODEL = "bench"


async def serve(words: int, first_ms: float, gap_ms: float) -> None:
    """The child: serves until its stdin closes, then prints what it sent (one JSON line)."""
    tokens = [(first_ms + gap_ms * i, f" word{i}") for i in range(words)]
    server = OpenAILLMServer(ReplayLLM(ReplayLLMConfig(), turns=[tokens]), model=MODEL)
    print(await server.start(), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await server.stop()
    print(json.dumps({"sent": server.sent, "connections": server.connections}), flush=True)


@contextmanager
def server_process(args: argparse.Namespace) -> Iterator[tuple[str, dict]]:
    """(base URL, what the server sent): filled in when the block ends and the child has stopped."""
    command = [sys.executable, "-m", "playground.bench.llm_http", "--serve", "--tokens", str(args.tokens),
               "--first-ms", str(args.first_ms), "--gap-ms", str(args.gap_ms)]
    child = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert child.stdin is not None and child.stdout is not None
    served: dict = {}
    try:
        base_url = child.stdout.readline().strip()
        if not base_url.startswith("http://"):
            raise RuntimeError(f"the loopback server did not start (said {base_url!r})")
        yield base_url, served
        child.stdin.close()
        served.update(json.loads(child.stdout.readline()))
    finally:
        if child.poll() is None:
            child.stdin.close()
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()


async def one_turn(llm: OpenAILLM, history: list[Message], arrivals: list[list[float]]
                   ) -> tuple[float, LlmConnection | None]:
    """Streams one reply; returns (TTFT ms, connection info); its token arrival times go to `arrivals`."""
    history.append(Message("user", f"Question {len(history)}?"))
    started = now_ms()
    tokens = [t async for t in llm.stream(history)]
    history.append(Message("assistant", "".join(t.text for t in tokens)))
    arrivals.append([t.t_ms for t in tokens])
    return tokens[0].t_ms - started, llm.info.connection


async def pooled_sessions(config: OpenAILLMConfig, sessions: int, turns: int,
                          arrivals: list[list[float]]) -> tuple[list[list[float]], int]:
    """TTFT by turn over sessions that keep one client; also how many turns reused a connection."""
    by_turn: list[list[float]] = [[] for _ in range(turns)]
    reused = 0
    for _ in range(sessions):
        llm = OpenAILLM(config)
        await llm.load()
        history = [Message("system", "You are a benchmark.")]
        try:
            for turn in range(turns):
                ttft, connection = await one_turn(llm, history, arrivals)
                by_turn[turn].append(ttft)
                reused += bool(connection and connection.reused)
        finally:
            await llm.close()
    return by_turn, reused


async def fresh_connection_turns(config: OpenAILLMConfig, count: int,
                                 arrivals: list[list[float]]) -> tuple[list[float], list[float]]:
    """TTFT and connect ms of turns that each open a new connection (a new client, no warm-up)."""
    ttfts, connects = [], []
    for _ in range(count):
        llm = OpenAILLM(config, warm_up=False)
        await llm.load()
        try:
            ttft, connection = await one_turn(llm, [Message("system", "You are a benchmark.")], arrivals)
        finally:
            await llm.close()
        ttfts.append(ttft)
        connects.append(connection.connect_ms if connection and connection.connect_ms is not None else 0.0)
    return ttfts, connects


def main(argv: list[str] | None = None) -> int:
    parser = argument_parser("llm_http", __doc__)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--turns", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=30, help="tokens per reply")
    parser.add_argument("--first-ms", type=float, default=20.0, help="server: first token after this long")
    parser.add_argument("--gap-ms", type=float, default=5.0, help="server: then one token every this long")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args(argv)
    if args.serve:
        asyncio.run(serve(args.tokens, args.first_ms, args.gap_ms))
        return 0

    arrivals: list[list[float]] = []
    with server_process(args) as (base_url, served):
        config = OpenAILLMConfig(base_url=base_url, model=MODEL, max_tokens=args.tokens)
        by_turn, reused = asyncio.run(pooled_sessions(config, args.sessions, args.turns, arrivals))
        fresh, connects = asyncio.run(fresh_connection_turns(config, args.sessions, arrivals))
    overheads = [arrived - sent for client, server in zip(arrivals, served["sent"], strict=True)
                 for arrived, sent in zip(client, server, strict=True)]
    connections = served["connections"]

    turn1, last = statistics.median(by_turn[0]), statistics.median(by_turn[-1])
    lines = ["## OpenAI-compatible provider against the loopback server", "",
             f"Loopback server: replay of {args.tokens} tokens, first after {args.first_ms:g} ms, then every "
             f"{args.gap_ms:g} ms; {args.sessions} sessions x {args.turns} turns", ""]
    rows = [[f"TTFT turn {turn} (pooled)", values] for turn, values in enumerate(by_turn, 1)]
    rows += [["TTFT, new connection/turn", fresh], ["of which connect", connects]]
    lines += markdown_table(["measure", "p50 ms", "p90 ms"], [[name, f"{statistics.median(values):.2f}",
                                                        f"{percentile(values, 90):.2f}"] for name, values in rows])
    lines += ["", f"TTFT turn {args.turns} / turn 1 (pooled, medians): {last / turn1:.3f}; "
              f"turns on a reused connection: {reused}/{args.sessions * args.turns}; "
              f"TCP connections accepted: {connections} ({args.sessions} pooled sessions + {args.sessions} fresh turns)",
              "", f"Client overhead over the server's send, {len(overheads)} tokens: p50 {percentile(overheads, 50):.3f} ms, "
              f"p99 {percentile(overheads, 99):.3f} ms, max {max(overheads):.3f} ms"]
    report("llm_http", args, lines, {
        "ttft_pooled_ms_by_turn": [percentiles(values, (50, 90)) for values in by_turn],
        "ttft_new_connection_ms": percentiles(fresh, (50, 90)), "connect_ms": percentiles(connects, (50, 90)),
        "ttft_last_over_first_turn": last / turn1, "reused_turns": reused, "turns": args.sessions * args.turns,
        "connections": connections, "client_overhead_ms": {**percentiles(overheads, (50, 99)), "max": max(overheads)}})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
