"""`playground serve-tts PROVIDER`: a loopback TTS server (the provider's protocol, Piper's voice).

    playground serve-tts elevenlabs                  # on 127.0.0.1:8765 until Ctrl-C
    playground serve-tts elevenlabs --port 0         # any free port
    playground serve-tts elevenlabs --api-key-env LOOPBACK_KEY   # clients must send that key
    playground serve-tts cartesia --fault close:after=3,code=1006   # the first reply breaks
    curl -d stall:after=2,seconds=4 http://127.0.0.1:8766/loopback/faults   # a fault while it runs

Servers are found, not registered: a module in `playground.servers` exposing `TTS_SERVER`,
a `LoopbackTTSServer` subclass. The module's name is the provider name (`tts.provider`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
from typing import TYPE_CHECKING, Any

from playground.commands import Command
from playground.core.plugins import find_plugins, short_name
from playground.servers.faults import Fault, FaultError, add_fault_argument

if TYPE_CHECKING:
    from playground.console import Console


def tts_servers() -> dict[str, Any]:
    """Provider name -> loopback server class, for every server module that has one."""
    return {short_name(module): server for module, server in find_plugins("TTS_SERVER", "playground.servers").items()}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("provider", metavar="PROVIDER", help=f"the protocol to serve: {', '.join(tts_servers())}")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None,
                        help="port to listen on (default: the provider's loopback port; 0 = any free port)")
    parser.add_argument("--api-key-env", metavar="VAR", default=None,
                        help="require clients to send the key held in this environment variable "
                             "(default: any key or none is accepted)")
    add_fault_argument(parser)


async def serve(server: Any, host: str, port: int, console: Console) -> None:
    url = await server.start(host, port)
    console.print(f"{server.name} loopback server on {url} (Ctrl-C stops it)")
    console.print(f"  use it with: --set tts.provider={server.name} --set tts.base_url={url}")
    if server.faults.armed:
        console.note(f"  faults armed: {', '.join(f.kind for f in server.faults.armed)}")
    try:
        await asyncio.Event().wait()
    finally:
        await server.stop()


def run(args: argparse.Namespace, console: Console) -> int:
    servers = tts_servers()
    if args.provider not in servers:
        console.note(f"error: no loopback TTS server for {args.provider!r} (available: {', '.join(servers)})")
        return 2
    api_key = None
    if args.api_key_env:
        api_key = os.environ.get(args.api_key_env)
        if not api_key:
            console.note(f"error: --api-key-env {args.api_key_env}: that environment variable is not set")
            return 2
    server_class = servers[args.provider]
    port = server_class.default_port if args.port is None else args.port
    server = server_class(api_key=api_key)
    try:
        server.inject(*(Fault.parse(spec) for spec in args.fault))
    except FaultError as exc:
        console.note(f"error: --fault: {exc}")
        return 2
    console.note(f"loading the loopback voice for {args.provider} …")
    try:
        asyncio.run(serve(server, args.host, port, console))
    except OSError as exc:  # most often: the port is taken
        console.note(f"error: cannot listen on {args.host}:{port}: {exc.strerror or exc} "
                     "(choose another with --port, or --port 0 for any free one)")
        return 1
    except KeyboardInterrupt:
        console.note("stopped")
    return 0


COMMAND = Command(name="serve-tts", help="serve a cloud TTS protocol on 127.0.0.1, spoken by the local voice",
                  add_arguments=add_arguments, run=run)
