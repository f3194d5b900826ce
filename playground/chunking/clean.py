"""Cleaning chunk text for speech: markdown markers, emoji and control characters out."""

from __future__ import annotations

import re

_IMAGE = re.compile(r"!\[[^\]]*\]\([^)]*\)")
_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")
# A link cut in two by the chunker: "[label" ... "](url)" or "](url" ... ")".
_LINK_TAIL = re.compile(r"\]\([^)\s]*\)?|\[(?=[^\]]*$)")
_HEADING = re.compile(r"(?m)^\s*#{1,6}\s*")
_BULLET = re.compile(r"(?m)^\s*[-*+•]\s+")
_MARKERS = re.compile(r"\*+|`+|~~|(?<!\w)_+|_+(?!\w)")
_EMOJI = re.compile(
    "["
    "\U0001F000-\U0001FAFF"  # pictographs, emoticons, transport, symbols & pictographs ext.
    "\U0001F1E6-\U0001F1FF"  # regional indicators (flags)
    "\u2600-\u27BF"          # misc symbols, dingbats
    "\u2B00-\u2BFF"          # arrows, stars
    "\uFE00-\uFE0F"          # variation selectors
    "\u200D\u20E3"           # zero-width joiner, keycap
    "\U000E0000-\U000E007F"  # tags
    "]+"
)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_LEADING_CLOSERS = re.compile(r"^[\s)\]}»”’\"',;:.!?…—–-]+")
_SPACES = re.compile(r"\s+")
_SPEAKABLE = re.compile(r"\w")


def clean_for_speech(raw: str) -> str:
    """The text a TTS engine should say for `raw`; "" when nothing in it is speakable."""
    text = _IMAGE.sub("", raw)
    text = _LINK.sub(r"\1", text)
    text = _LINK_TAIL.sub("", text)
    text = _HEADING.sub("", text)
    text = _BULLET.sub("", text)
    text = _MARKERS.sub("", text)
    text = _EMOJI.sub("", text)
    text = _CONTROL.sub(" ", text)
    # Closing punctuation left at the start (a quote or "?!" that arrived after the
    # cut) means nothing on its own.
    text = _LEADING_CLOSERS.sub("", text)
    text = _SPACES.sub(" ", text).strip()
    return text if _SPEAKABLE.search(text) else ""
