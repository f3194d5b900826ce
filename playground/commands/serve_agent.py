"""`playground serve-agent`: the playground's pipeline as a phone agent, behind a carrier's media stream.

    playground serve-agent                                   # ws://127.0.0.1:8780/, Twilio Media Streams
    playground serve-agent --dialect telnyx --port 0         # Telnyx media streaming, any free port
    playground serve-agent --set llm.provider=replay --set llm.trace=seed-turn4 --trace calls/
    playground call ws://127.0.0.1:8780/ --script phone-call --agent-traces calls/

Every WebSocket is a call with a session of its own (any preset: LLM, chunker, persistent TTS),
and with --trace DIR its trace is DIR/<call id>.jsonl. Until Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
from pathlib import Path
from typing import TYPE_CHECKING

from playground.commands import Command, until_stopped
from playground.core.presets import load_preset
from playground.phone.dialects import DIALECTS, dialect

if TYPE_CHECKING:
    from playground.console import Console

DEFAULT_PORT = 8780


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="local", help="preset name or .toml path (default: local)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a preset field, e.g. --set llm.provider=replay (repeatable)")
    parser.add_argument("--trace", metavar="DIR", help="write each call's JSON Lines trace to DIR/<call id>.jsonl")
    parser.add_argument("--dialect", choices=sorted(DIALECTS), default="twilio",
                        help="the carrier's media-stream protocol (default: twilio)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help=f"port (default: {DEFAULT_PORT}; 0 picks a free one)")


def run(args: argparse.Namespace, console: Console) -> int:
    preset = load_preset(args.preset, args.overrides)
    return asyncio.run(_serve(args, preset, console))


async def _serve(args: argparse.Namespace, preset, console: Console) -> int:
    from playground.phone.agent import AgentServer

    server = AgentServer(preset, dialect(args.dialect), Path(args.trace) if args.trace else None, log=console.note)
    console.note(f"… loading speech recognition (shared by every call) and the first call's session "
                 f"(preset {preset.name})")
    try:
        await server.prepare()
    except Exception as exc:  # noqa: BLE001 - a session that cannot open answers no call: say why, once
        await server.stop()
        console.note(f"error: serve-agent: a session of preset {preset.name} could not open: {exc}")
        return 1
    try:
        url = await server.listen(args.host, args.port)
    except OSError as exc:
        await server.stop()
        console.note(f"error: serve-agent: cannot listen on {args.host}:{args.port} ({exc.strerror or exc}); "
                     "try another --port (0 picks a free one)")
        return 1
    console.print(f"serve-agent on {url} ({args.dialect} media streams, preset {preset.name})")
    console.print(f"call it: playground call {url} --dialect {args.dialect} --say 'Hi, who is this?'"
                  + (f" --agent-traces {args.trace}" if args.trace else ""))
    console.note("Ctrl-C stops the server")
    try:
        await until_stopped()
    finally:
        await server.stop()
        gc.unfreeze()  # sessions freeze the heap they find (Session.open): let it all go now
        gc.collect()
    console.note("server stopped")
    return 0


COMMAND = Command(name="serve-agent", help="answer phone calls (Twilio or Telnyx media streams) with the "
                                           "playground's pipeline, a session and a trace per call",
                  add_arguments=add_arguments, run=run)
