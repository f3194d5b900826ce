"""`playground serve-llm`: the OpenAI-compatible loopback LLM server, until Ctrl-C.

    playground serve-llm                          # the local model on http://127.0.0.1:8090/v1
    playground serve-llm --replay turns.jsonl     # a recorded trace's replies, at their recorded pace
    playground serve-llm --fault stall:after=0,seconds=3   # a slow first token, once
    playground run --preset loopback-llm --say "Hi"   # a session against it
"""

from __future__ import annotations

import argparse
import asyncio
import os
from typing import TYPE_CHECKING

from playground.commands import Command, until_stopped
from playground.core.presets import LLMConfig
from playground.llm.base import LLMError
from playground.servers.faults import Fault, FaultError, add_fault_argument
from playground.servers.openai_llm import DEFAULT_PORT, OpenAILLMServer, build_backend

if TYPE_CHECKING:
    from playground.console import Console


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default: {DEFAULT_PORT}; 0 picks a free one)")
    parser.add_argument("--replay", metavar="TRACE", help="serve the llm.token events of a JSONL trace instead of the local model")
    parser.add_argument("--model", help="the model id to serve (default: smollm2-135m-instruct, or replay:<file> with --replay)")
    parser.add_argument("--api-key-env", metavar="VAR",
                        help="require `Authorization: Bearer <key>`, the key read from environment variable VAR")
    add_fault_argument(parser)


def run(args: argparse.Namespace, console: Console) -> int:
    api_key = None
    if args.api_key_env:
        api_key = os.environ.get(args.api_key_env, "").strip()
        if not api_key:
            raise LLMError(f"serve-llm: --api-key-env {args.api_key_env}: that environment variable is not set; "
                           f"export {args.api_key_env}=<a key of your choice>")
    try:
        faults = [Fault.parse(spec) for spec in args.fault]
    except FaultError as exc:
        raise LLMError(f"serve-llm: --fault: {exc}") from None
    return asyncio.run(_serve(args, api_key, faults, console))


async def _serve(args: argparse.Namespace, api_key: str | None, faults: list[Fault], console: Console) -> int:
    server = OpenAILLMServer(build_backend(args.replay), model=args.model, api_key=api_key)
    try:
        server.inject(*faults)
    except FaultError as exc:
        raise LLMError(f"serve-llm: --fault: {exc}") from None
    server.on_request = lambda method, path, status: console.note(f"{method} {path} {status}")
    try:
        base_url = await server.start(args.host, args.port, progress=lambda message: console.note(f"… {message}"))
    except OSError as exc:
        await server.stop()
        raise LLMError(f"serve-llm: cannot listen on {args.host}:{args.port} ({exc.strerror}); "
                       f"try another --port") from None
    hints = []
    if server.base_url != f"http://127.0.0.1:{DEFAULT_PORT}/v1":
        hints.append(f"--set llm.base_url={base_url}")
    if server.model != LLMConfig().model:
        hints.append(f"--set llm.model={server.model}")
    if args.api_key_env:
        hints.append(f"--set llm.api_key_env={args.api_key_env}")
    console.print(f"serving {server.model} at {base_url} (OpenAI-compatible: POST /chat/completions, GET /models)")
    console.print(f"try: playground run --preset loopback-llm {' '.join(hints)}".rstrip())
    console.note("Ctrl-C stops the server")
    try:
        await until_stopped()
    finally:
        await server.stop()
    console.note("server stopped")
    return 0


COMMAND = Command(
    name="serve-llm",
    help="serve the local model (or a replayed trace) as an OpenAI-compatible API on 127.0.0.1",
    add_arguments=add_arguments,
    run=run,
)
