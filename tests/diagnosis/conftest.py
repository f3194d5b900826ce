"""The fixtures the diagnosis tests share with others: the loopback ElevenLabs server their sessions
are recorded against, and the phone caller's voice."""

from __future__ import annotations

from tests.phone.conftest import caller_voice  # noqa: F401 - fixtures, registered by being imported here
from tests.tts.conftest import server  # noqa: F401
