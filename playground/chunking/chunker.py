"""The incremental chunker: one engine, strategies are parameter sets over it.

    chunker = Chunker(ChunkerConfig(strategy="adaptive"))
    chunker.push(" Hello", t_ms)   # -> chunks this fragment completed
    chunker.poll(t_ms)             # -> chunks a deadline cut (adaptive)
    chunker.flush(t_ms)            # -> the rest, at the end of the reply
    chunker.next_deadline()        # when poll() could cut next, or None

Each pushed character is looked at once, with a bounded amount of state about the
current word and at most one boundary candidate waiting for its next character, so
the cost per token does not grow with the reply (no re-scanning of the buffer).

Boundaries are confirmed with no lookahead when they are unambiguous: `?` and `!`
cut the moment they arrive, `;` and dashes too. A `.` is confirmed by the character
after it (whitespace, a closing quote), which is usually in the same token (`."`,
`. `) or the next: the SmolLM2 tokenizer streams "example.com" as "example" "."
"com", so a `.` that ends a fragment cannot be told from the end of a sentence.
Other ambiguous ones (`...`, `,` or `:` after a digit, `No.`) wait the same way,
so numbers, abbreviations, initials, URLs, e-mail addresses, domains and list
markers are never cut.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from playground.chunking.clean import clean_for_speech
from playground.core.presets import ChunkerConfig

REASONS = ("strong", "weak", "deadline", "max_chars", "flush", "words", "fragment")

ABBREVIATIONS = frozenset(
    "dr mr mrs ms st etc vs inc ltd jr sr prof mt ft approx dept est fig gen gov "
    "lt col sgt capt rev hon corp co no".split()
)
CLOSERS = frozenset("\"”’)]»")
OPENERS = frozenset("([«“")
TERMINALS = frozenset("?!")
NEWLINES = frozenset("\n\u2028\u2029")
WEAK_NOW = frozenset(";—")
# Characters that change chunker state; runs of anything else are taken in one step.
_SPECIAL = frozenset(".,;:!?…—–\"“”’()[]«»")
_WORD_PREFIX = 64  # enough of a word to recognise abbreviations, URLs and e-mail


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


@dataclass(slots=True)
class _Candidate:
    """A boundary waiting for the next character(s) to be confirmed or dropped."""

    kind: str  # dot | term | ellipsis | number_abbrev | digit_weak | colon
    cut: int  # absolute position the chunk would end at (exclusive)
    eager: bool  # confirm at the end of the fragment if nothing else arrived
    # A sentence end that only waits for its next character ("day." / "Why?" before a
    # closing quote): a deadline may take it. Others ("$1,000." "example.") it may not.
    plain: bool = False


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
        self._last_word_end: int | None = None
        self._last_weak_end: int | None = None
        self._pending_words = 0
        self._line_words = 0  # words completed on the current line (list markers open a line)
        self._word = ""  # prefix of the current word
        self._word_len = 0
        self._word_last = ""  # the current word's last character
        self._visible_end = 0  # position after the last non-space character
        self._in_quote = False
        self._bracket_depth = 0
        self._candidate: _Candidate | None = None

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
        if self._candidate is not None and self._candidate.eager:
            self._confirm()
        self._check_deadline()
        return self._out

    def poll(self, t_ms: float) -> list[Chunk]:
        """Lets a deadline cut the pending text (adaptive); returns the chunks cut."""
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
        if not self._adaptive or self._content_start is None or self._deadline_cut() is None:
            return None
        return self._content_t + self.config.deadline_ms

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
                self._add_to_word(c)
                i += 1
                continue
            # A run of ordinary characters (letters, digits, ...) changes only the word.
            j = i + 1
            while j < n and not fragment[j].isspace() and fragment[j] not in _SPECIAL:
                j += 1
            self._add_to_word(fragment[i:j])
            self._visible_end = base + j
            i = j

    def _add_to_word(self, text: str) -> None:
        if self._word_len < _WORD_PREFIX:
            self._word += text[: _WORD_PREFIX - self._word_len]
        self._word_len += len(text)
        self._word_last = text[-1]

    def _track_quotes(self, c: str) -> None:
        if c == '"':
            self._in_quote = not self._in_quote
        elif c == "“":
            self._in_quote = True
        elif c == "”":
            self._in_quote = False
        elif c in OPENERS:
            self._bracket_depth += 1
        elif c in CLOSERS and c != "’":
            self._bracket_depth = max(0, self._bracket_depth - 1)

    def _on_space(self, c: str, pos: int) -> None:
        if self._word_len:
            self._word = ""
            self._word_len = 0
            self._word_last = ""
            self._pending_words += 1
            self._line_words += 1
            previous_word_end = self._last_word_end
            self._last_word_end = pos
            if self._words and self._pending_words >= self._words:
                self._cut(pos, "words")
            elif self._adaptive and self._content_start is not None:
                if pos - self._content_start > self.config.max_chars:
                    cut = previous_word_end if previous_word_end and previous_word_end > self._content_start else pos
                    self._cut(cut, "max_chars")
        if c in NEWLINES:
            self._line_words = 0
            self._in_quote = False
            if self._boundaries and self._content_start is not None and self._content_start < pos:
                self._cut(self._visible_end, "strong")  # "text \n": the space goes with the newline

    def _on_punctuation(self, c: str, pos: int) -> None:
        """Handles a special character; `self._word` is still the word before it."""
        self._track_quotes(c)
        if not self._boundaries:
            return
        word = self._word
        inside_quote = self._in_quote or self._bracket_depth > 0
        url_like = "@" in word or "/" in word or word.lower().startswith("www.")
        after_digit = self._word_last.isdigit()
        if c == ".":
            stem = word.lstrip("\"“‘'([«")
            if self._word_last and self._word_last in ".…":
                self._candidate = _Candidate("ellipsis", pos + 1, eager=False)
            elif "." in stem and not url_like and not after_digit:
                if all(len(part) <= 2 for part in stem.split(".")):
                    return  # U.S. a.m. e.g. i.e. Ph.D.: dotted abbreviations
                self._candidate = _Candidate("dot", pos + 1, eager=False)  # a domain: example.com.
            elif url_like or after_digit:
                if after_digit and self._line_words == 0 and stem.isdigit() and len(stem) <= 3:
                    return  # a list marker ("1. ") opening a line
                self._candidate = _Candidate("dot", pos + 1, eager=False)
            else:
                lower = stem.lower()
                if lower == "no":
                    self._candidate = _Candidate("number_abbrev", pos + 1, eager=False)
                elif lower in ABBREVIATIONS:
                    return
                elif len(lower) == 1 and lower.isalpha() and lower != "i":
                    return  # an initial: "J. R. R. Tolkien"
                elif any(ch.isalpha() for ch in lower):
                    # Not eager: LLM tokenizers split "example.com" as "example" "." "com",
                    # so a "." ending a fragment is only known to end a sentence from the
                    # next character (usually the same or the next token).
                    self._candidate = _Candidate("dot", pos + 1, eager=False, plain=True)
        elif c in TERMINALS:
            if url_like:
                self._candidate = _Candidate("dot", pos + 1, eager=False)
            else:
                self._candidate = _Candidate("term", pos + 1, eager=not inside_quote, plain=True)
        elif c == "…":
            self._candidate = _Candidate("ellipsis", pos + 1, eager=False)
        elif c == ",":
            if after_digit or url_like:
                self._candidate = _Candidate("digit_weak", pos + 1, eager=False)
            else:
                self._weak_boundary(pos + 1)
        elif c == "–":
            if after_digit:
                self._candidate = _Candidate("digit_weak", pos + 1, eager=False)
            else:
                self._weak_boundary(pos + 1)
        elif c in WEAK_NOW:
            self._weak_boundary(pos + 1)
        elif c == ":":
            self._candidate = _Candidate("colon", pos + 1, eager=False)

    def _resolve(self, c: str, pos: int) -> bool:
        """Decides the waiting candidate with the next character; True if `c` was absorbed."""
        cand = self._candidate
        assert cand is not None
        kind = cand.kind
        if kind in ("dot", "term"):
            # After a sentence end, ’ closes a quote (it is no apostrophe there).
            if c in CLOSERS or (kind == "term" and (c in TERMINALS or c in ".…")):
                self._absorb(c, pos)
                if c == '"':
                    self._in_quote = False  # a straight quote after a sentence end closes one
                cand.cut = pos + 1
                # Stay open while a quote or bracket is: '(She said "Done.")' keeps its ")".
                cand.eager = not (self._in_quote or self._bracket_depth > 0)
                return True
            if c.isspace() or kind == "term":
                self._confirm()
            else:
                self._candidate = None  # "example.com", "3.5", "..." go on
            return False
        if kind == "ellipsis":
            if c == "." or c == "…" or c in CLOSERS:
                self._absorb(c, pos)
                cand.cut = pos + 1
                return True
            if c == "\n" or c.isupper() or c.isdigit() or c in OPENERS or c == '"':
                self._confirm()
            elif not c.isspace():
                self._candidate = None  # "Well... maybe": the sentence goes on
            return False
        if kind == "number_abbrev":
            if c in CLOSERS and c != "’":  # "(No.)" answered no: the bracket ends it
                cand.kind = "dot"
                return self._resolve(c, pos)
            if c.isdigit():
                self._candidate = None  # "No. 5"
            elif c == "\n" or not c.isspace():
                self._confirm()
            return False
        if kind == "digit_weak":
            self._candidate = None
            if not c.isdigit():
                self._weak_boundary(cand.cut)
            return False
        # colon: "Note: ..." is a boundary, "12:30" and "https://" are not
        self._candidate = None
        if c.isspace():
            self._weak_boundary(cand.cut)
        return False

    def _absorb(self, c: str, pos: int) -> None:
        """A character taken into a candidate still belongs to the current word."""
        if self._content_start is None:
            self._set_content_start(pos)
        self._visible_end = pos + 1
        self._track_quotes(c)
        self._add_to_word(c)

    def _confirm(self) -> None:
        cand = self._candidate
        self._candidate = None
        if cand is None:
            return
        if cand.kind in ("digit_weak", "colon"):
            self._weak_boundary(cand.cut)
        else:
            self._cut(cand.cut, "strong")

    def _weak_boundary(self, cut: int) -> None:
        if not self._weak or self._content_start is None:
            return
        self._last_weak_end = cut
        minimum = self.config.first_min_chars if self._adaptive and self._index == 0 else self.config.min_chars
        if cut - self._content_start >= minimum:
            self._cut(cut, "weak")

    # -- deadlines ----------------------------------------------------------------------

    def _deadline_cut(self) -> tuple[int, str] | None:
        """Where a deadline would cut now: a waiting boundary, the last weak one, or the last word end."""
        start = self._content_start
        if start is None:
            return None
        if self._candidate is not None and self._candidate.plain and self._candidate.cut > start:
            return self._candidate.cut, "strong"
        if self._last_weak_end is not None and self._last_weak_end > start:
            return self._last_weak_end, "deadline"
        if self._last_word_end is not None and self._last_word_end > start:
            return self._last_word_end, "deadline"
        return None

    def _check_deadline(self) -> None:
        if not self._adaptive or self._content_start is None:
            return
        # The same sum as next_deadline(): `now - start < deadline` can round the other way.
        if self._now < self._content_t + self.config.deadline_ms:
            return
        where = self._deadline_cut()
        if where is not None:
            self._candidate = None
            self._cut(*where)

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
            self._cut(visible_end, reason)

    def _cut(self, cut: int, reason: str) -> None:
        start = self._start
        if cut <= start or self._content_start is None or cut <= self._content_start:
            return
        text = "".join(self._parts)
        raw, rest = text[: cut - start], text[cut - start :]
        first = self._arrival_index(start)
        last = self._arrival_index(cut - 1)
        self._out.append(
            Chunk(
                index=self._index,
                raw=raw,
                text=clean_for_speech(raw),
                reason=reason,
                start_ms=self._content_t,
                end_ms=self._now,
                token_start=self._arrival_token[first],
                token_end=self._arrival_token[last],
            )
        )
        self._index += 1
        # The rest becomes the new pending text.
        self._parts = [rest] if rest else []
        self._start = cut
        keep = self._arrival_index(cut) if rest else len(self._arrival_pos)
        del self._arrival_pos[:keep], self._arrival_t[:keep], self._arrival_token[:keep]
        if rest:
            self._arrival_pos[0] = cut  # the fragment that straddles the cut now starts at it
        self._content_start = None
        self._pending_words = 0  # only `words` counts them, and it cuts where no word follows yet
        if self._last_weak_end is not None and self._last_weak_end <= cut:
            self._last_weak_end = None
        if self._last_word_end is not None and self._last_word_end <= cut:
            self._last_word_end = None
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
        self._last_word_end = None
        self._last_weak_end = None
        self._pending_words = 0
        self._word = ""
        self._word_len = 0
        self._word_last = ""
