"""The incremental chunker: one engine, strategies are parameter sets over it.

    chunker = Chunker(ChunkerConfig(strategy="adaptive"))
    chunker.push(" Hello", t_ms)   # -> chunks this fragment completed
    chunker.poll(t_ms)             # -> chunks a deadline or an underrun cut (adaptive)
    chunker.flush(t_ms)            # -> the rest, at the end of the reply
    chunker.next_deadline()        # when poll() could cut next, or None
    chunker.set_lead(lead_ms, t_ms)  # the engine's playback lead (adaptive, chunks after the first)

Each pushed character is looked at once, with a bounded amount of state about the
current word and at most one boundary candidate waiting for its next character, so
the cost per token does not grow with the reply (no re-scanning of the buffer).

Boundaries are confirmed with no lookahead when they are unambiguous: `?` and `!`
cut the moment they arrive, `;` and em dashes too, and a `.` after a word that cannot
start a domain, a file name or an e-mail address ("you.", "that's.", "today."). Any
other `.` is confirmed by the character after it (whitespace, a closing quote), which
is usually in the same token (`."`, `. `) or the next: the SmolLM2 tokenizer streams
"example.com" as "example" "." "com". Other ambiguous ones (`...`, `,` or `:` after a
digit, an en dash, "Nov.", a `!` inside quotes) wait the same way, and after an
abbreviation before a capital the next word decides ("5 p.m. Then" ends, "p.m. Eastern"
and "Park Ave. South" go on). So numbers, ranges, abbreviations, initials, list markers
("Check two things: 1. ..."), URLs, e-mail addresses and domains are never cut, and a
quoted "Stop!" is a sentence end only when what follows the closing quote starts a new
sentence.

`adaptive` also cuts where there is no boundary, at the best place it has (the last
weak boundary, else a word end before a new phrase, else a word end after a content
word), never right after a word the next one belongs to (`_binds`: a number, "per", an
article, an abbreviation, an initial, a list marker ...), inside quotes or inline code, or
between a code and a number ("Suite | 200"), and never leaving a chunk under
`first_min_words` words (the first) or MIN_WORDS (the others) except at the end of the reply:
- the first chunk at `deadline_ms` after its first character;
- later chunks, when the engine gives no lead, at `later_deadline_ms` (reason `deadline`);
- later chunks, when the engine gives its lead (`set_lead`), only when playback would
  otherwise run dry (reason `underrun`); while the lead is comfortable they wait for
  the next boundary.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from typing import get_args

from playground.chunking.clean import clean_for_speech
from playground.chunking.words import (
    ABBREVIATIONS,
    ALWAYS_BINDING,
    CAPITALIZED_CONTINUATION,
    CONNECTORS,
    CONTINUATIONS,
    DATE_ABBREVIATIONS,
    DATE_WORDS,
    FORWARD_BINDING,
    LEADING_DOTTED,
    LIST_LEADS,
    NUMBERED_LABELS,
    PHRASE_STARTERS,
    QUANTITY_MODIFIERS,
    ROMAN_NUMERALS,
    SENTENCE_FINAL,
    SENTENCE_OPENERS,
    STREET_TYPES,
    TITLES,
    UNITS,
)
from playground.core.events import ChunkReason
from playground.core.presets import ChunkerConfig

REASONS: tuple[str, ...] = get_args(ChunkReason)  # declared with the trace's `chunk` event

# A chunk after the first has at least this many words (adaptive), except the reply's last:
# a one-word chunk is synthesized on its own and sounds clipped.
MIN_WORDS = 2
# Speaking rate used to count text the chunker emitted after the engine's last lead: ~15
# characters a second, a common TTS speed.
SPEECH_MS_PER_CHAR = 65.0

CLOSERS = frozenset("\"”’)]»")
_CLOSER_CHARS = "".join(CLOSERS)
# Markdown emphasis and code markers close like a bracket after a sentence end: "**Done!** Your".
MARKDOWN_CLOSERS = frozenset("*_`")
_TRAILING = _CLOSER_CHARS + "".join(MARKDOWN_CLOSERS)
OPENERS = frozenset("([«“")
TERMINALS = frozenset("?!")
NEWLINES = frozenset("\n\u2028\u2029")
WEAK_NOW = frozenset(";—")
URL_SCHEMES = frozenset("http https ftp mailto tel file".split())
# How far down `_best_cut`'s list a cut may look: up to a phrase break, a content word's end, any word end.
PHRASE_BREAK, CONTENT_WORD_END, ANY_WORD_END = 3, 4, 6
FIRST_CHUNK_PATIENCE = ((0.5, PHRASE_BREAK), (0.75, CONTENT_WORD_END), (1.0, ANY_WORD_END))
FIRST_PERSON = frozenset("i i'm i'll i've i'd i’m i’ll i’ve i’d".split())
# After a closing quote or bracket, these say the sentence goes on: `"Friday!" and ...`.
GOES_ON = frozenset(",;:—–-…")
CURRENCY = frozenset("$€£¥")
# Characters that change chunker state; runs of anything else are taken in one step.
_SPECIAL = frozenset(".,;:!?…—–\"“”’()[]«»'`")
_WORD_PREFIX = 64  # enough of a word to recognise abbreviations, URLs and e-mail
_EDGES = "\"“”‘’'()[]«».,;:!?…—–-*_`"
# A list marker in brackets: "a)", "(c)", "2)", "(iv)".
_BRACKET_MARKER = re.compile(r"\(?(?:[a-z]|\d{1,2}|[ivx]{1,4})\)")
# A code, an acronym or a name with an inner capital: letters, digits and hyphens only ("RX-5400", "NWBK", "iOS").
_CODE = re.compile(r"[A-Za-z0-9-]+")
_DASHES = re.compile("[–—]")
_RANGE_END = re.compile(r"(?:[–—]|(?<=[\d.])-)\d[\d:.,]*$")  # "a.m.–9", "Mon–6", "a.m.-9", not "us-east-1"


@dataclass(slots=True)
class Chunk:
    index: int  # 0, 1, 2 ... within the reply
    raw: str  # the LLM's text; the raws of a reply's chunks add up to the reply (right-stripped)
    text: str  # what TTS gets: cleaned of markdown and emoji; "" when nothing is speakable
    reason: str  # one of REASONS
    start_ms: float  # arrival of the fragment that brought the chunk's first visible character
    end_ms: float  # when it was emitted
    token_start: int  # first fragment (0-based push count) contributing to it
    token_end: int  # last fragment contributing to it


@dataclass(slots=True, frozen=True)
class _Place:
    """A position a chunk may end at, with the words before it: `done` completed ones, plus
    `partial` (0 or 1) for a word still open there ("Hello," before its space arrived)."""

    pos: int
    done: int
    partial: int = 0


@dataclass(slots=True)
class _Candidate:
    """A boundary waiting for the next character(s) to be confirmed or dropped."""

    # dot | word_dot | number_dot | term | closed | ellipsis | ellipsis_word | abbrev_word
    # | digit_weak | date_comma | colon | dash
    kind: str
    cut: int  # absolute position the chunk would end at (exclusive)
    eager: bool  # confirm at the end of the fragment if nothing else arrived
    done: int  # words completed before it
    partial: int  # 1 when the word it ends had a letter or digit
    # A colon after a word ("check:") waiting for its space: a deadline may cut there.
    weak_place: bool = False
    inside: bool = False  # it came inside quotes or brackets


def _core(word: str) -> str:
    """The word lowercased without its punctuation; of a range or a dashed pair, the last part ("Mon–Fri": "fri")."""
    return _DASHES.split(word.strip(_EDGES))[-1].strip(_EDGES).lower()


def _is_number(word: str) -> bool:
    """A number, a time or a range: it starts with a digit ("$84.37", "6pm") or ends in a range ("a.m.–9")."""
    first = next((ch for ch in word if ch.isalnum()), "")
    return first.isdigit() or _RANGE_END.search(word.rstrip(_EDGES)) is not None


def _is_code(word: str, core: str) -> bool:
    """A code, an acronym or a name with an inner capital ("SAVE10", "GB29", "NWBK", "iOS"), not a unit ("MB")."""
    bare = word.strip(_EDGES)
    return (_CODE.fullmatch(bare) is not None and core not in UNITS
            and any(ch.isdigit() or ch.isupper() for ch in bare[1:]))


def _binds(word: str, core: str) -> bool:
    """A word the next one belongs to, so no cut at a non-boundary comes right after it: a
    number ("6 | p.m.", "3 | kg"), a word ending in an unconfirmed `.` (an abbreviation, an
    initial, a list marker, "Well..."), a bracketed list marker ("a) | keep"), a title, a date
    word ("Monday", "Mon"), an article or "per"."""
    # `(even the extras!),` `"beep!"`: a quoted or bracketed "!" whose sentence went on
    body = word.rstrip(",;:")
    quoted_end = body.rstrip(_CLOSER_CHARS) != body and body.rstrip(_CLOSER_CHARS)[-1:] in "!?"
    return (_is_number(word) or word.rstrip(_TRAILING).endswith((".", "…")) or quoted_end or core in TITLES
            or core in DATE_WORDS or core in DATE_ABBREVIATIONS or core in ALWAYS_BINDING
            or _BRACKET_MARKER.fullmatch(word.lower()) is not None)


class Chunker:
    def __init__(self, config: ChunkerConfig | None = None) -> None:
        self.config = config = config or ChunkerConfig()
        strategy = config.strategy
        self._boundaries = strategy in ("sentence", "clause", "adaptive")
        self._weak = strategy in ("clause", "adaptive")
        self._adaptive = strategy == "adaptive"
        self._words = config.words if strategy == "words" else 0
        self._passthrough = strategy == "passthrough"
        self._index = 0
        self._pushes = 0
        self._now = 0.0
        self._out: list[Chunk] = []
        # Pending text: parts joined only when a chunk is cut. Positions are absolute
        # character offsets in the reply, so cutting never re-bases stored positions.
        self._parts: list[str] = []
        self._start = 0  # position of the pending text's first character
        self._end = 0  # position after the last character seen
        self._arrival_pos: list[int] = []  # where each fragment in the pending text starts
        self._arrival_t: list[float] = []
        self._arrival_token: list[int] = []
        self._content_start: int | None = None  # first non-space character of the pending text
        self._content_t = 0.0
        # Word counts: words completed in the reply so far, and those that end at or before the
        # pending text's start (the difference is the pending text's words).
        self._word_count = 0
        self._start_words = 0
        # Places a cut that is not at a boundary may take (adaptive), best last.
        self._last_word_end: _Place | None = None  # after any word that does not bind the next
        self._last_content_end: _Place | None = None  # ... and is no function word ("a", "the", "to")
        self._last_phrase_end: _Place | None = None  # ... right before a word a phrase starts with
        self._last_loose_phrase_end: _Place | None = None  # before such a word, after a function word ("is | on")
        self._last_weak_end: _Place | None = None
        self._previous_end: _Place | None = None  # the last word end, when it was one a cut may take
        # After a code or the name of a numbered thing, a place a cut may take once the next word is known
        # to be no number or code: "SAVE10 | at", but not "GB29 | NWBK | 6016", "Suite | 200", "iOS | 17.4".
        self._code_end: _Place | None = None
        self._previous_content = False  # ... after a content word
        self._pending_words = 0
        self._line_words = 0  # words completed on the current line
        self._list_position = True  # a number + "." here is a list marker (a line start, after ":" ...)
        self._word = ""  # prefix of the current word
        self._word_len = 0
        self._word_last = ""  # the current word's last character
        self._word_alnum = 0  # 1 when the current word has a letter or digit
        self._word_start = 0  # position of the current word's first character
        self._visible_end = 0  # position after the last non-space character
        self._in_quote = False
        self._bracket_depth = 0
        self._in_single = False  # after a ' that opened a word: 'Forgot password?' (closed by a word ending in ')
        self._in_code = False  # between backticks: `Settings > Privacy` is one unit
        self._previous_number = False  # the last word had a digit: the next one binds too ("3 business | days")
        self._previous_bound = False  # the last word bound the next: a connector after it binds ("Mr. and | Mrs.")
        self._previous_named = False  # the last word was capitalized or a number: "Main" of "Main St."
        self._after_terminal = False  # the last word ended in . ! ? or …: the next may start a sentence
        self._next_marker = ""  # the list marker that would follow the last one ("2" after "1.", "ii" after "i.")
        self._candidate: _Candidate | None = None
        self._previous_fragment_len = 0
        self._no_weak_at = -1  # a comma right after a quoted "Stop!" that goes on
        self._sentence_ended = False  # a sentence end was confirmed since the last word ended
        self._previous_core = ""  # the last complete word, lowercased, without punctuation
        # The engine's playback lead (see set_lead) and the speech the chunker emitted since.
        self._lead_ms: float | None = None
        self._lead_t = 0.0
        self._emitted_since_lead_ms = 0.0

    # -- public API ---------------------------------------------------------------------

    def push(self, fragment: str, t_ms: float) -> list[Chunk]:
        """Feeds one LLM fragment that arrived at `t_ms`; returns the chunks it completed."""
        self._now = t_ms
        self._out = []
        token = self._pushes
        self._pushes += 1
        if not fragment:
            return []
        base = self._end
        self._parts.append(fragment)
        self._arrival_pos.append(base)
        self._arrival_t.append(t_ms)
        self._arrival_token.append(token)
        self._end = base + len(fragment)
        if self._passthrough:
            self._scan_spaces_only(fragment, base)
            self._cut_content("fragment")
            return self._out
        self._scan(fragment, base)
        # One character per fragment is no tokenizer's stream: a fragment end then tells nothing
        # ("Well" "." "." "." is "Well..."), so a `.` after a word waits for its next character.
        character_stream = fragment == "." and self._previous_fragment_len == 1
        self._previous_fragment_len = len(fragment)
        cand = self._candidate
        if cand is not None and cand.eager and not character_stream:
            self._confirm()
        self._check_deadline()
        return self._out

    def poll(self, t_ms: float) -> list[Chunk]:
        """Lets a deadline or an underrun cut the pending text (adaptive); returns the chunks cut."""
        self._now = t_ms
        self._out = []
        self._check_deadline()
        return self._out

    def flush(self, t_ms: float) -> list[Chunk]:
        """End of the reply: the pending text as a last chunk (reason `flush`)."""
        self._now = t_ms
        self._out = []
        self._candidate = None
        self._cut_content("flush")
        self._reset_pending_state()
        return self._out

    def next_deadline(self) -> float | None:
        """The t_ms at which `poll` would cut, or None when no deadline is running or no cut is possible yet."""
        return min((due for due, _, places in self._dues() if self._best_cut(places) is not None), default=None)

    def set_lead(self, lead_ms: float | None, t_ms: float) -> None:
        """The engine's playback lead at `t_ms` (adaptive; used for the chunks after the first).

        `lead_ms` is how much of this reply's audio is queued ahead of the play position, minus the
        TTS's time to first audio for a new chunk: how long the chunker can still wait before text it
        sends now would reach the speaker too late. The chunker assumes playback goes on, so the lead
        shrinks 1 ms per ms, and it counts text it emits after this call at SPEECH_MS_PER_CHAR (that
        text's audio is not queued yet). While the lead stays above `underrun_lead_ms`, chunks are cut
        only at boundaries (and `max_chars`); when it would fall below, `poll` (at `next_deadline()`)
        cuts at the best place there is, with reason `underrun`. Call it whenever the lead changes
        (audio queued, playback started); None means unknown: later chunks then use `later_deadline_ms`.
        """
        self._lead_ms = lead_ms
        self._lead_t = t_ms
        self._emitted_since_lead_ms = 0.0

    @property
    def pending_text(self) -> str:
        return "".join(self._parts)

    # -- scanning -----------------------------------------------------------------------

    def _scan_spaces_only(self, fragment: str, base: int) -> None:
        if self._content_start is None:
            offset = len(fragment) - len(fragment.lstrip())
            if offset < len(fragment):
                self._set_content_start(base + offset)

    def _scan(self, fragment: str, base: int) -> None:
        i = 0
        n = len(fragment)
        while i < n:
            c = fragment[i]
            pos = base + i
            if self._candidate is not None and self._resolve(c, pos):
                i += 1  # the character extended the candidate; it needs no handling of its own
                continue
            if c.isspace():
                self._on_space(c, pos)
                i += 1
                continue
            if self._content_start is None:
                self._set_content_start(pos)
            self._visible_end = pos + 1
            if c in _SPECIAL:
                self._on_punctuation(c, pos)
                self._add_to_word(c, pos)
                i += 1
                continue
            # A run of ordinary characters (letters, digits, ...) changes only the word.
            j = i + 1
            while j < n and not fragment[j].isspace() and fragment[j] not in _SPECIAL:
                j += 1
            self._add_to_word(fragment[i:j], pos)
            self._visible_end = base + j
            i = j

    def _add_to_word(self, text: str, pos: int) -> None:
        if not self._word_len:
            self._word_start = pos
        if self._word_len < _WORD_PREFIX:
            self._word += text[: _WORD_PREFIX - self._word_len]
        self._word_len += len(text)
        self._word_last = text[-1]
        if not self._word_alnum and any(ch.isalnum() for ch in text):
            self._word_alnum = 1

    def _track_quotes(self, c: str) -> None:
        if c == '"':
            # After a digit with no quote open, an inch mark: "5'10\"? If so" (a quote closes: 'press "1"').
            if self._in_quote or not self._word_last.isdigit():
                self._in_quote = not self._in_quote
        elif c == "“":
            self._in_quote = True
        elif c == "”":
            self._in_quote = False
        elif c in OPENERS:
            self._bracket_depth += 1
        elif c in CLOSERS and c != "’":
            self._bracket_depth = max(0, self._bracket_depth - 1)
        elif c == "'" and not self._word_len:
            self._in_single = True
        elif c == "`":
            self._in_code = not self._in_code

    def _enclosed(self) -> bool:
        """Inside quotes or brackets: a `!`, `?` or `.` here ends a sentence only if what follows the closer says so."""
        return self._in_quote or self._bracket_depth > 0 or self._in_single

    def _on_space(self, c: str, pos: int) -> None:
        if self._word_len:
            self._end_word(pos)
        if c in NEWLINES:
            self._line_words = 0
            self._list_position = True
            self._in_quote = self._in_single = self._in_code = False
            if self._boundaries and self._content_start is not None and self._content_start < pos:
                # "text \n": the space goes with the newline
                if self._enough_words(_Place(self._visible_end, self._word_count)):
                    self._cut(_Place(self._visible_end, self._word_count), "strong")

    def _end_word(self, pos: int) -> None:
        """A word ended at `pos` (whitespace came): count it and note the places around it."""
        word = self._word
        alnum = self._word_alnum
        self._word = ""
        self._word_len = 0
        self._word_last = ""
        self._word_alnum = 0
        self._pending_words += 1
        self._line_words += 1
        if alnum:
            self._word_count += 1
            if pos <= self._start:  # it ended a chunk already cut ("day." + " ")
                self._start_words += 1
        if self._words and self._pending_words >= self._words:
            self._cut(_Place(pos, self._word_count), "words")
            return
        core = _core(word)
        self._previous_core = core
        if word.endswith("'"):
            self._in_single = False
        # A number binds the next word ("6 | p.m."), a quantity modifier after it the one after ("3 business |
        # days"); a connector after any binding word binds ("5 to | 7", "Mr. and | Mrs.").
        after_number = self._previous_number and core in QUANTITY_MODIFIERS
        bound = bool(alnum) and (_binds(word, core) or after_number or (core in CONNECTORS and self._previous_bound))
        if alnum:
            self._previous_number = _is_number(word)
            self._previous_bound = bound
            # A name in mid-sentence or a number ("on Main St.", "5th St."); not a title, an abbreviation, a
            # date or a sentence's first word ("Visit St. Mary's", "Rev. Dr.", "On Sunday St. Luke's").
            first = next(ch for ch in word if ch.isalnum())
            sentence_start = self._after_terminal or self._line_words == 1
            self._previous_named = first.isdigit() or (
                first.isupper() and not sentence_start and not word.rstrip(_TRAILING).endswith(".")
                and core not in DATE_WORDS and core not in TITLES)
        tail = word.rstrip(_CLOSER_CHARS)[-1:]
        self._after_terminal = tail in ".!?…"
        self._list_position = tail in ":,;—–" or core in LIST_LEADS or self._sentence_ended
        self._sentence_ended = False
        if not self._adaptive:
            return
        code_end, self._code_end = self._code_end, None
        if code_end is not None and alnum and not _is_number(word) and not _is_code(word, core):
            self._last_word_end = self._last_content_end = self._previous_end = code_end
            self._previous_content = True
        if core in PHRASE_STARTERS and self._previous_end is not None:
            if self._previous_content:
                self._last_phrase_end = self._previous_end
            else:
                self._last_loose_phrase_end = self._previous_end
        place = _Place(pos, self._word_count)
        # Inside a quotation or brackets, and after one whose sentence may go on (`"Friday!" and`),
        # a word binds the next.
        enclosed = self._in_quote or self._bracket_depth > 0 or self._in_code
        closed = enclosed or (self._candidate is not None and self._candidate.kind == "closed")
        previous_cuttable = self._last_word_end
        self._previous_end = None
        if alnum and not closed and not bound and (_is_code(word, core) or core in NUMBERED_LABELS
                                                    or self._previous_named):
            self._code_end = place  # "Android | 14", "Suite | 200": known to be a place once the next word is
        elif alnum and not closed and not bound:
            self._last_word_end = self._previous_end = place
            self._previous_content = core not in FORWARD_BINDING
            if self._previous_content:
                self._last_content_end = place
        if self._content_start is not None and pos - self._content_start > self.config.max_chars:
            # The last word end that keeps the chunk within max_chars, else this one.
            fits = previous_cuttable is not None and previous_cuttable.pos > self._content_start
            self._cut(previous_cuttable if fits else place, "max_chars")

    def _on_punctuation(self, c: str, pos: int) -> None:
        """Handles a special character; `self._word` is still the word before it."""
        self._track_quotes(c)
        if not self._boundaries:
            return
        word = self._word
        inside_quote = self._enclosed()
        url_like = "@" in word or "/" in word or word.lower().startswith("www.")
        after_digit = self._word_last.isdigit()
        if c == ".":
            # Of "Tues.–Sat" or "day—that", the last part is the word: a range or a pair is no domain.
            stem = _DASHES.split(word.lstrip("\"“‘'([«*_`"))[-1]
            if self._word_last and self._word_last in ".…":
                self._candidate = self._new("ellipsis", pos, eager=False)
            elif "." in stem and not url_like and not after_digit:
                if all(len(part) <= 2 for part in stem.split(".")):
                    # Dotted abbreviations: "e.g." leads on; after "a.m.", "U.S.", "Ph.D." what follows
                    # decides ("5 p.m. Then" ends, "p.m. Eastern" and "U.S. and" go on).
                    if stem.lower() not in LEADING_DOTTED:
                        self._candidate = self._new("word_dot", pos, eager=False)
                    return
                self._candidate = self._new("dot", pos, eager=False)  # a domain: example.com.
            elif url_like or after_digit:
                marker_position = self._list_position or stem != word  # "(1."
                longest = 3 if self._line_words == 0 else 2
                if after_digit and stem.isdigit() and len(stem) <= longest and (
                        marker_position or stem == self._next_marker):
                    # a list marker: "1. " opening a line, after ":" "," "and" or a sentence end, or the
                    # number after the last marker anywhere ("1. Tuesday at 8 a.m. 2. Wednesday")
                    self._next_marker = str(int(stem) + 1)
                    return
                if url_like and word.rsplit("/", 1)[-1].lower() in ABBREVIATIONS:
                    self._candidate = self._new("word_dot", pos, eager=False)  # "$65/mo. and": a unit
                    return
                # "3." waits past the space: "Either 1. we" goes on, "I have 3. You" ends.
                self._candidate = self._new("number_dot" if after_digit and not url_like else "dot", pos, eager=False)
            else:
                lower = stem.lower()
                if lower in TITLES and not (lower in STREET_TYPES and self._previous_named):
                    return  # "Dr. Lee", "St. Louis"; after a name "Main St." is a street
                if lower in ROMAN_NUMERALS and (self._list_position or lower == self._next_marker):
                    index = ROMAN_NUMERALS.index(lower) + 1
                    self._next_marker = ROMAN_NUMERALS[index] if index < len(ROMAN_NUMERALS) else ""
                    return  # a list marker: "this: i. Reinstall the driver. ii. Roll back"
                if len(lower) == 1 and lower.isalpha() and lower != "i":
                    return  # an initial: "J. R. R. Tolkien"
                if any(ch.isalpha() for ch in lower):
                    # LLM tokenizers split "example.com" as "example" "." "com", so a "." ending a
                    # fragment is known to end a sentence only from what follows, unless the word
                    # cannot start a domain, a file name or an e-mail address (and is no abbreviation).
                    eager = not inside_quote and lower not in ABBREVIATIONS and self._ends_sentence(stem)
                    self._candidate = self._new("word_dot", pos, eager=eager)
        elif c in TERMINALS:
            if url_like:
                self._candidate = self._new("dot", pos, eager=False)
            elif self._word_len:
                self._candidate = self._new("term", pos, eager=not inside_quote)
            # else a "!" or "?" after a space is a symbol named ("a symbol like !, # or @"), no sentence end
        elif c == "…":
            self._candidate = self._new("ellipsis", pos, eager=False)
        elif c == ",":
            if after_digit and (self._previous_core in DATE_WORDS or self._previous_core in DATE_ABBREVIATIONS):
                self._candidate = self._new("date_comma", pos, eager=False)  # "Oct. 1, 2027"
            elif after_digit or url_like:
                self._candidate = self._new("digit_weak", pos, eager=False)
            else:
                self._weak_boundary(pos + 1)
        elif c == "–" and not self._word_len:
            # A spaced dash: after a number, a time or a date "8 a.m. – 5 p.m.", "Monday – Friday" is a range;
            # after any other word "Sure – I can" is a pause.
            if not self._previous_bound:
                self._weak_boundary(pos + 1)
        elif c == "–" or (c == "—" and after_digit):
            # "Mon–Fri", "9–5", "a.m.–9 p.m." are ranges, "afternoon– I" a pause: what follows decides
            self._candidate = self._new("dash", pos, eager=False)
        elif c in WEAK_NOW:
            self._weak_boundary(pos + 1)
        elif c == ":":
            # After a word ("check:") a deadline may cut there; not in "12:30" or "https://".
            weak_place = not after_digit and not url_like and word.lower() not in URL_SCHEMES and not inside_quote
            self._candidate = self._new("colon", pos, eager=False, weak_place=weak_place)

    def _new(self, kind: str, pos: int, eager: bool, weak_place: bool = False) -> _Candidate:
        inside = self._enclosed()
        return _Candidate(kind, pos + 1, eager, self._word_count, self._word_alnum, weak_place, inside)

    @staticmethod
    def _ends_sentence(stem: str) -> bool:
        """A `.` after this word can only end a sentence: no domain, file name or address starts so."""
        if stem[-1:] in CLOSERS:
            return True  # "(mostly)."
        lower = stem.lower()
        return "'" in lower or "’" in lower or not lower.isascii() or lower in SENTENCE_FINAL

    def _resolve(self, c: str, pos: int) -> bool:
        """Decides the waiting candidate with the next character; True if `c` was absorbed."""
        cand = self._candidate
        assert cand is not None
        kind = cand.kind
        if kind in ("dot", "term", "closed", "number_dot"):
            # After a sentence end, ’ closes a quote (it is no apostrophe there).
            adjacent = pos == cand.cut
            if adjacent and (self._closes(c) or (kind == "term" and (c in TERMINALS or c in ".…"))):
                self._absorb(c, pos)
                if c == '"' and kind != "closed":
                    self._in_quote = False  # a straight quote after a sentence end closes one
                if c == "'":
                    self._in_single = False
                cand.cut = pos + 1
                still_inside = self._enclosed()
                if cand.inside and not still_inside:
                    # The quote or bracket closed: what follows it tells whether the sentence ends.
                    cand.kind, cand.eager = "closed", False
                else:
                    # Stay open while a quote or bracket is: '(She said "Done.")' keeps its ")".
                    cand.eager = not still_inside and cand.kind != "closed"
                return True
            if kind == "number_dot" and adjacent and not c.isspace():
                self._candidate = None  # "3.5", "3..."
                return False
            if kind == "term" and adjacent and c.isalnum():
                self._candidate = None  # "Tiger!Lamp-42": inside a word
                return False
            if kind == "term" and adjacent and c in ",;:":
                self._candidate = None  # "Yahoo!, Inc.", "BeanThere2024!, all one word": the sentence goes on
                self._no_weak_at = pos + 1
                return False
            if kind == "closed" or kind == "number_dot":
                if c.isspace():
                    if c in NEWLINES:
                        self._confirm()
                    return False  # the next visible character decides
                if c.islower() or c.isdigit() or c in GOES_ON:
                    # `"Friday!" and after that`, "Either 1. we": the sentence goes on, and a comma
                    # right after the closer (`"beep!", press`) is no place to cut either.
                    self._candidate = None
                    if kind == "closed":
                        self._no_weak_at = pos + 1
                else:
                    self._confirm()
                return False
            if c.isspace() or kind == "term":
                self._confirm()
            else:
                self._candidate = None  # "example.com", "3.5", "..." go on
            return False
        if kind == "ellipsis_word":
            if c.isalnum() or c in "'’":
                return False
            # "So... I looked into it": "I" starts no sentence by being capitalized
            if _core(self._word) in FIRST_PERSON:
                self._candidate = None
            else:
                self._confirm()
            return False
        if kind == "ellipsis":
            if pos == cand.cut and (c == "." or c == "…" or c in CLOSERS):
                self._absorb(c, pos)
                cand.cut = pos + 1
                return True
            if c == "I":
                cand.kind = "ellipsis_word"
            elif c == "\n" or c.isupper() or c.isdigit() or c in OPENERS or c == '"':
                self._confirm()
            elif not c.isspace():
                self._candidate = None  # "Well... maybe": the sentence goes on
            return False
        if kind == "word_dot":
            if pos == cand.cut:  # right after the "."
                if self._closes(c):
                    core = _core(self._word)
                    if not (core in ABBREVIATIONS or "." in core) or cand.inside:
                        cand.kind = "dot"  # 'day."', "(No.)": closers join it as after any sentence end
                        return self._resolve(c, pos)
                    # "2:00 p.m.** with": the marker stays with the abbreviation; what follows still decides
                    self._absorb(c, pos)
                    if c in "\"'":
                        self._in_quote = self._in_single = False
                    cand.cut = pos + 1
                    return True
                if not c.isspace():
                    self._candidate = None  # "example.com", "Ph.D", "Well...": the word goes on
                    return False
            if c.isspace():
                if c in NEWLINES:
                    self._confirm()
                return False  # the next visible character decides
            abbreviation = self._previous_core
            # "approx.", "p.m.", "U.S.", "Main St."
            known = abbreviation in ABBREVIATIONS or "." in abbreviation or abbreviation in STREET_TYPES
            if c.islower() or c in GOES_ON or (known and (c.isdigit() or c in CURRENCY)):
                # "approx. two", "incl. tax", "Inc., which": an abbreviation, known or not (no sentence
                # starts in lowercase); "Nov. 3", "Rm. 204", "approx. $5": a known one ("modem. 2. Wait"
                # is a sentence end and a list marker).
                self._candidate = None
            elif c.isupper() and (abbreviation in DATE_ABBREVIATIONS or "." in abbreviation
                                  or abbreviation in CAPITALIZED_CONTINUATION):
                cand.kind = "abbrev_word"  # "5 p.m. Then" ends, "p.m. Eastern" goes on: the next word decides
            else:
                self._confirm()
            return False
        if kind == "abbrev_word":
            if c.isalnum():
                return False  # the word goes on (a stream of single characters)
            # The word after the abbreviation is complete (this character ends it).
            if self._goes_on_after_abbreviation(self._word.strip(_EDGES), c):
                self._candidate = None
            else:
                self._confirm()
            return False
        if kind == "dash":
            if pos == cand.cut and not c.isspace():
                self._candidate = None  # "Mon–Fri", "9—5", "a.m.–9 p.m.": a range or a compound
                return False
            if c.isspace() and c not in NEWLINES:
                return False  # the next visible character decides
            self._candidate = None
            if not (c.isdigit() or c in CURRENCY):
                self._weak_boundary(cand.cut)  # "Sure – I can help"; "9 a.m. – 5 p.m." is a range
            return False
        if kind == "digit_weak":
            self._candidate = None
            if not c.isdigit():
                self._weak_boundary(cand.cut)
            return False
        if kind == "date_comma":
            if c.isspace() and c not in NEWLINES:
                return False  # the year, if one comes, decides
            self._candidate = None
            if not c.isdigit():
                self._weak_boundary(cand.cut)
            return False
        # colon: "Note: ..." is a boundary, "12:30" and "https://" are not
        self._candidate = None
        if c.isspace():
            self._weak_boundary(cand.cut)
        return False

    def _closes(self, c: str) -> bool:
        """A character that stays with the sentence end before it: a closing quote or bracket, a markdown
        marker ("**Done!**"), or a ' closing a single-quoted label ('Forgot password?')."""
        return c in CLOSERS or c in MARKDOWN_CLOSERS or (c == "'" and self._in_single)

    def _goes_on_after_abbreviation(self, word: str, after: str) -> bool:
        """Whether the capitalized `word` (followed by `after`) continues the phrase of the abbreviation
        before it (self._previous_core): "Fri. Jan. 5", "p.m. Eastern", "Park Ave. South", "Jr. Blvd.",
        "est. Tuesday", "U.S. Postal", or starts a sentence: "5 p.m. Then", "Orchard Ave. Our", "on Fri. Then"."""
        abbreviation, core = self._previous_core, word.lower()
        if abbreviation in DATE_ABBREVIATIONS:
            return core in DATE_WORDS or core in DATE_ABBREVIATIONS
        if core in SENTENCE_OPENERS or core.split("'")[0].split("’")[0] in SENTENCE_OPENERS:
            return False
        if (core in DATE_WORDS or core in DATE_ABBREVIATIONS or core in CONTINUATIONS or after == "."
                or (len(word) > 1 and word.isupper())):
            return True
        return "." in abbreviation  # after "U.S." or "p.m." a name goes on; after "Ave." a sentence starts

    def _absorb(self, c: str, pos: int) -> None:
        """A character taken into a candidate still belongs to the current word."""
        if self._content_start is None:
            self._set_content_start(pos)
        self._visible_end = pos + 1
        self._track_quotes(c)
        self._add_to_word(c, pos)

    def _confirm(self) -> None:
        cand = self._candidate
        self._candidate = None
        if cand is None:
            return
        place = _Place(cand.cut, cand.done, cand.partial)
        if cand.kind in ("digit_weak", "colon", "date_comma", "dash"):
            self._weak_boundary(cand.cut, place)
            return
        self._sentence_ended = True
        self._in_single = False
        if not self._word_len:  # confirmed by the next sentence's first character ("modem. 2."):
            self._list_position = True  # its word has ended already
        if self._enough_words(place):
            self._cut(place, "strong")

    def _weak_boundary(self, cut: int, place: _Place | None = None) -> None:
        if not self._weak or self._content_start is None or cut == self._no_weak_at:
            return
        place = place or _Place(cut, self._word_count, self._word_alnum)
        if self._adaptive and (self._in_quote or self._bracket_depth > 0):
            return  # "(yes, even the extras!)": a quotation or an aside is not cut in
        self._last_weak_end = place
        minimum = self.config.first_min_chars if self._adaptive and self._index == 0 else self.config.min_chars
        if cut - self._content_start >= minimum and self._enough_words(place):
            self._cut(place, "weak")

    # -- cuts at no boundary (adaptive) ---------------------------------------------------

    def _words_before(self, place: _Place) -> int:
        return place.done + place.partial - self._start_words

    def _enough_words(self, place: _Place) -> bool:
        """Adaptive keeps chunks of at least first_min_words (the first) or MIN_WORDS words."""
        if not self._adaptive:
            return True
        need = self.config.first_min_words if self._index == 0 else MIN_WORDS
        return self._words_before(place) >= need

    def _best_cut(self, places: int = ANY_WORD_END) -> _Place | None:
        """Where a cut at no boundary would go now, best first: the last weak boundary, the last word
        end before a new phrase, after a content word, before a new phrase after a function word
        ("is | on"), after any word that does not bind the next (`places` says how far down that
        list to look); None if none leaves enough words. A `.` or
        `?` still waiting for its next character is no such place: the next token may make it
        "example.com", or a quoted "Stop!" that goes on."""
        start = self._content_start
        if start is None:
            return None
        cand = self._candidate
        colon = _Place(cand.cut, cand.done, cand.partial) if cand is not None and cand.weak_place else None
        ranked = (colon, self._last_weak_end, self._last_phrase_end, self._last_content_end,
                  self._last_loose_phrase_end, self._last_word_end)
        for place in ranked[:places]:
            if place is not None and place.pos > start and self._enough_words(place):
                return place
        return None

    def _dues(self) -> tuple[tuple[float, str, int], ...]:
        """When the pending text is cut even without a boundary: (t_ms, reason, places `_best_cut` may
        take then). The first chunk takes a phrase break from half its deadline on, a content word's
        end from three quarters, any word end at the deadline: the longer the caller has waited in
        silence, the less a good place is worth waiting for."""
        if not self._adaptive or self._content_start is None:
            return ()
        if self._index == 0:
            start, deadline = self._content_t, self.config.deadline_ms
            return tuple((start + deadline * share, "deadline", places) for share, places in FIRST_CHUNK_PATIENCE)
        if self._lead_ms is None:
            return ((self._content_t + self.config.later_deadline_ms, "deadline", ANY_WORD_END),)
        runs_dry = self._lead_t + self._lead_ms + self._emitted_since_lead_ms
        return ((runs_dry - self.config.underrun_lead_ms, "underrun", ANY_WORD_END),)

    def _check_deadline(self) -> None:
        # The same sums as next_deadline(): `now - start < deadline` can round the other way.
        for due, reason, places in self._dues():
            if self._now >= due and (place := self._best_cut(places)) is not None:
                self._cut(place, reason)
                return

    # -- cutting ------------------------------------------------------------------------

    def _set_content_start(self, pos: int) -> None:
        self._content_start = pos
        self._content_t = self._arrival_t[bisect.bisect_right(self._arrival_pos, pos) - 1]

    def _arrival_index(self, pos: int) -> int:
        return bisect.bisect_right(self._arrival_pos, pos) - 1

    def _cut_content(self, reason: str) -> None:
        """Cuts everything pending up to its last visible character."""
        if self._content_start is None:
            return
        text = "".join(self._parts)
        visible_end = self._start + len(text.rstrip())
        if visible_end > self._start:
            self._cut(_Place(visible_end, self._word_count), reason)

    def _cut(self, place: _Place, reason: str) -> None:
        start = self._start
        cut = place.pos
        if cut <= start or self._content_start is None or cut <= self._content_start:
            return
        text = "".join(self._parts)
        raw, rest = text[: cut - start], text[cut - start :]
        first = self._arrival_index(start)
        last = self._arrival_index(cut - 1)
        spoken = clean_for_speech(raw)
        self._out.append(
            Chunk(
                index=self._index,
                raw=raw,
                text=spoken,
                reason=reason,
                start_ms=self._content_t,
                end_ms=self._now,
                token_start=self._arrival_token[first],
                token_end=self._arrival_token[last],
            )
        )
        self._index += 1
        if self._lead_ms is not None:
            self._emitted_since_lead_ms += len(spoken) * SPEECH_MS_PER_CHAR
        # The rest becomes the new pending text.
        self._parts = [rest] if rest else []
        self._start = cut
        # The word open at `place` is the chunk's last if it has ended by now ("line." confirmed by
        # the next sentence's capital); else it goes on past the cut ("day—that's") and counts when it ends.
        ended = not self._word_len or self._word_start >= cut
        self._start_words = place.done + (place.partial if ended else 0)
        keep = self._arrival_index(cut) if rest else len(self._arrival_pos)
        del self._arrival_pos[:keep], self._arrival_t[:keep], self._arrival_token[:keep]
        if rest:
            self._arrival_pos[0] = cut  # the fragment that straddles the cut now starts at it
        self._content_start = None
        self._pending_words = 0  # only `words` counts them, and it cuts where no word follows yet
        for name in ("_last_weak_end", "_last_word_end", "_last_content_end", "_last_phrase_end",
                     "_last_loose_phrase_end", "_previous_end", "_code_end"):
            kept = getattr(self, name)
            if kept is not None and kept.pos <= cut:
                setattr(self, name, None)
        stripped = len(rest) - len(rest.lstrip())
        if stripped < len(rest):
            self._set_content_start(cut + stripped)
        if self._candidate is not None and self._candidate.cut <= cut:
            self._candidate = None

    def _reset_pending_state(self) -> None:
        self._parts = []
        self._start = self._end
        self._arrival_pos.clear()
        self._arrival_t.clear()
        self._arrival_token.clear()
        self._content_start = None
        self._last_word_end = self._last_content_end = self._last_phrase_end = self._last_loose_phrase_end = None
        self._last_weak_end = self._previous_end = self._code_end = None
        self._pending_words = 0
        self._word = ""
        self._word_len = 0
        self._word_last = ""
        self._word_alnum = 0
        self._start_words = self._word_count
