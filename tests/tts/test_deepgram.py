"""The `deepgram` session in full engine turns against the loopback Deepgram server: the
shared contract (barge-in, server close, stall, malformed and unknown messages, wrong audio
format, 401/403, REST) plus Speak/Flush/Close and the Flush limit. Audio is checked sample
for sample."""

from __future__ import annotations

from typing import ClassVar

import pytest

from playground.servers.deepgram import DeepgramServer
from playground.tts.deepgram import DeepgramSession
from tests.tts.loopback_turns import REPLIES, SessionContract, actions, assert_reply_spoken_once, session_events

pytestmark = pytest.mark.models


class TestDeepgram(SessionContract):
    preset = "loopback-deepgram"
    session_class = DeepgramSession
    server_class = DeepgramServer
    cancel_message: ClassVar[dict] = {"type": "Clear"}

    async def test_turns_reuse_one_socket_and_send_the_documented_messages(self, server):
        session, tap = await self.run_turns(server, "Hi!", "And again?")
        assert server.handshakes == 1
        for turn in (1, 2):
            assert_reply_spoken_once(session, tap, server, turn)
            assert actions(session, turn)[0] == "reuse"
        speaks = [m for m in server.received if m["type"] == "Speak" and m["text"]]
        assert " ".join(m["text"].strip() for m in speaks) == " ".join(REPLIES)
        assert [m["type"] for m in server.received].count("Flush") == 2
        assert server.received[-1] == {"type": "Close"}

    async def test_a_refused_flush_is_reported_and_the_turn_resumes(self, server):
        server.flush_limit = 1  # Deepgram allows 20 a minute; the second turn's Flush is refused
        session, tap = await self.run_turns(server, "Hi!", "Again?")
        warnings = [e.message for e in session_events(session, 2, "warning")]
        assert any("FLUSH" in w for w in warnings)
        assert "Flush" in session_events(session, 2, "reconnect")[0].reason
        assert_reply_spoken_once(session, tap, server, 2)
