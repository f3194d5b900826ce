"""The `cartesia` session in full engine turns against the loopback Cartesia server: the
shared contract (barge-in, server close, stall, malformed and unknown messages, wrong audio
format, 401/403, REST) plus Cartesia's own requests. Audio is checked sample for sample."""

from __future__ import annotations

from typing import ClassVar

import pytest

from playground.servers.cartesia import CartesiaServer
from playground.tts.cartesia import CartesiaSession
from tests.tts.loopback_turns import RATE, REPLIES, SessionContract, actions, assert_reply_spoken_once, spoken_chunks

pytestmark = pytest.mark.models


class TestCartesia(SessionContract):
    preset = "loopback-cartesia"
    session_class = CartesiaSession
    server_class = CartesiaServer
    cancel_message: ClassVar[dict] = {"context_id": "turn-1", "cancel": True}

    async def test_turns_reuse_one_socket_and_send_the_documented_requests(self, server):
        session, tap = await self.run_turns(server, "Hi!", "And again?")
        assert server.handshakes == 1
        for turn in (1, 2):
            assert_reply_spoken_once(session, tap, server, turn)
            assert actions(session, turn)[0] == "reuse"
            for index, text in spoken_chunks(session, turn).items():  # timestamps attribute audio to its chunk
                assert len(tap.received(turn, index)) == len(server.speech(text.strip() + " ", RATE))
        requests = [m for m in server.received if m.get("context_id") == "turn-1"]
        assert all(m["continue"] is True and m["max_buffer_delay_ms"] == 0 for m in requests[:-1])
        assert requests[-1]["transcript"] == "" and requests[-1]["continue"] is False
        assert "".join(m["transcript"] for m in requests).strip() == REPLIES[0]
        assert {m["context_id"] for m in server.received} == {"turn-1", "turn-2"}

    async def test_passthrough_leaves_buffering_to_the_server(self, server):
        session, _ = await self.run_turns(server, "Hi!", overrides=["tts.flush_chunks=false"])
        requests = [m for m in server.received if m.get("context_id") == "turn-1"]
        assert requests and all("max_buffer_delay_ms" not in m for m in requests)
        assert actions(session, 1)[0] == "reuse"
