"""Chunker behaviour in time: the seed's Turn 4, zero lookahead, ambiguous boundaries,
deadlines, max_chars, the words and passthrough strategies, robustness and linear cost.

All times are simulated (t_ms arguments); only the last test reads a clock.
"""

from __future__ import annotations

import random
import re
import time

import pytest

from playground.bench.corpus import LONG_UNPUNCTUATED, SEED_TURN4
from playground.chunking import REASONS, Chunk, Chunker
from playground.chunking.chunker import SPEECH_MS_PER_CHAR
from playground.core.presets import ChunkerConfig

DEADLINE = ChunkerConfig().deadline_ms  # 400
MAX_CHARS = ChunkerConfig().max_chars  # 220
POLL_STEP = 10.0


def make(strategy="adaptive", **kw) -> Chunker:
    return Chunker(ChunkerConfig(strategy=strategy, **kw))


def check_invariants(chunks: list[Chunk], text: str, n_fragments: int | None = None) -> None:
    assert "".join(c.raw for c in chunks) == text.rstrip()
    assert [c.index for c in chunks] == list(range(len(chunks)))
    for i, c in enumerate(chunks):
        assert c.reason in REASONS, c
        assert c.raw.strip() and c.raw == c.raw.rstrip(), c
        assert c.text == c.text.strip(), c
        assert c.start_ms <= c.end_ms, c
        assert c.token_start <= c.token_end, c
        if n_fragments is not None:
            assert 0 <= c.token_start and c.token_end < n_fragments, c
        if i:
            assert c.token_start >= chunks[i - 1].token_start and c.token_end >= chunks[i - 1].token_end, c
            assert c.end_ms >= chunks[i - 1].end_ms, c


def feed(chunker: Chunker, fragments, times, t_flush=None, poll_step=None, poll_at_deadline=False):
    """Push fragments at their times; optionally poll every poll_step ms between tokens and/or exactly
    at next_deadline(). Returns all chunks (flush included)."""
    out: list[Chunk] = []
    prev = None
    for frag, t in zip(fragments, times):
        if prev is not None:
            polls = []
            if poll_step:
                k = 1
                while prev + k * poll_step < t:
                    polls.append(prev + k * poll_step)
                    k += 1
            for tp in polls:
                if poll_at_deadline:
                    d = chunker.next_deadline()
                    while d is not None and prev < d <= tp:
                        out += chunker.poll(d)
                        nd = chunker.next_deadline()
                        if nd == d:
                            break
                        d = nd
                out += chunker.poll(tp)
            if poll_at_deadline:
                d = chunker.next_deadline()
                while d is not None and d < t:
                    out += chunker.poll(d)
                    nd = chunker.next_deadline()
                    if nd == d:
                        break
                    d = nd
        out += chunker.push(frag, t)
        prev = t
    if t_flush is not None:
        out += chunker.flush(t_flush)
    return out


# ------------------------------------------------------------------ the seed's Turn 4

TURN4_FIRST_TOKEN = 534.0
TURN4_LAST_TOKEN = 6621.0
TURN4_LLM_TOTAL = 6793.0


def turn4_tokens() -> list[str]:
    tokens = []
    for word in re.split(r"(?=\s)", SEED_TURN4):
        if "—" in word:
            before, after = word.split("—")
            tokens += [before, "—", after]
        else:
            tokens.append(word)
    assert "".join(tokens) == SEED_TURN4
    return tokens


def even_times(n: int, first: float, last: float) -> list[float]:
    return [first + (last - first) * i / (n - 1) for i in range(n)]


def test_turn4_tokens():
    tokens = turn4_tokens()
    assert tokens[0] == "You" and "—" in tokens and tokens[-1] == " info."
    assert tokens[tokens.index("—") - 1] == " day" and tokens[tokens.index("—") + 1] == "that's"


def test_turn4_sentence_emits_only_at_the_end():
    """The seed's behaviour: with `([.!?]\\s+)` the first chunk waits for the whole run-on reply."""
    tokens = turn4_tokens()
    times = even_times(len(tokens), TURN4_FIRST_TOKEN, TURN4_LAST_TOKEN)
    chunks = feed(make("sentence"), tokens, times, t_flush=TURN4_LLM_TOTAL, poll_step=POLL_STEP)
    check_invariants(chunks, SEED_TURN4, len(tokens))
    assert [c.raw for c in chunks] == [SEED_TURN4]
    assert chunks[0].end_ms >= TURN4_LAST_TOKEN
    assert chunks[0].end_ms - chunks[0].start_ms >= 6087.0  # the seed's chunker wait


def test_turn4_sentence_final_period_waits_for_the_next_character():
    """" info." is the last token: a `.` ending a fragment could still become "info.com" (the SmolLM2
    tokenizer streams "example" "." "com"), so `sentence` cuts it when the next character or the end
    of the reply arrives: here the end-of-reply flush, as in the seed (TTFS ~ LLM_TOTAL)."""
    tokens = turn4_tokens()
    times = even_times(len(tokens), TURN4_FIRST_TOKEN, TURN4_LAST_TOKEN)
    chunks = feed(make("sentence"), tokens, times, t_flush=TURN4_LLM_TOTAL, poll_step=POLL_STEP)
    assert len(chunks) == 1 and chunks[0].end_ms == TURN4_LLM_TOTAL and chunks[0].raw == SEED_TURN4, chunks


def test_turn4_adaptive_first_chunk_has_three_words_then_few_long_chunks():
    """The seed's tokens are ~265 ms apart: at the deadline only "You" is a complete word, so the first
    chunk waits for a third complete word (the token after " out" ends it) instead of being "You"; later
    chunks wait for boundaries or the long later_deadline_ms, never making one-word chunks."""
    tokens = turn4_tokens()
    times = even_times(len(tokens), TURN4_FIRST_TOKEN, TURN4_LAST_TOKEN)
    chunks = feed(make("adaptive"), tokens, times, t_flush=TURN4_LLM_TOTAL, poll_step=POLL_STEP)
    check_invariants(chunks, SEED_TURN4, len(tokens))
    first = chunks[0]
    assert first.raw == "You filled out" and first.reason == "deadline", chunks
    assert first.end_ms == times[tokens.index(" a")], first  # the token that completed the third word
    assert len(chunks) <= 6, [c.raw for c in chunks]
    assert all(len(c.raw.split()) >= 2 for c in chunks[1:-1]), [c.raw for c in chunks]
    later = ChunkerConfig().later_deadline_ms
    for c in chunks[1:]:
        if c.reason == "deadline":
            assert c.end_ms - c.start_ms >= later, c
    assert max(c.end_ms for c in chunks) <= TURN4_LLM_TOTAL


def test_turn4_adaptive_polling_at_next_deadline_is_exact():
    """Tokens 90 ms apart: at half the deadline only two words are complete; at three quarters of it
    "You filled out" is (" a" came at 804 ms), and "out" is a content word's end: cut exactly then."""
    tokens = turn4_tokens()
    times = [TURN4_FIRST_TOKEN + 90.0 * i for i in range(len(tokens))]
    chunks = feed(make("adaptive"), tokens, times, t_flush=times[-1] + 90, poll_at_deadline=True)
    check_invariants(chunks, SEED_TURN4, len(tokens))
    assert chunks[0].end_ms == TURN4_FIRST_TOKEN + 0.75 * DEADLINE, chunks[0]
    assert chunks[0].raw == "You filled out", chunks[0]  # not after "a": a chunk does not end with a function word


def test_turn4_adaptive_fast_tokens_cut_at_a_phrase_break_then_the_weak_boundary():
    """20 ms/token: at half the deadline (734 ms) "about" has made a phrase break, a place good enough
    for a caller who has waited that long (the em dash would only come at 874 ms); the next chunk ends
    at the em dash, a weak boundary with min_chars."""
    tokens = turn4_tokens()
    times = [TURN4_FIRST_TOKEN + 20.0 * i for i in range(len(tokens))]
    chunks = feed(make("adaptive"), tokens, times, t_flush=times[-1] + 20, poll_step=POLL_STEP)
    check_invariants(chunks, SEED_TURN4, len(tokens))
    t_dash = times[tokens.index("—")]
    assert [(c.raw, c.reason) for c in chunks[:2]] == [
        ("You filled out a Facebook ad", "deadline"),
        (" about creating passive income without adding more hours to your day—", "weak")]
    assert chunks[0].end_ms == TURN4_FIRST_TOKEN + 0.5 * DEADLINE and chunks[1].end_ms == t_dash, chunks


def test_turn4_clause_cuts_at_the_em_dash():
    tokens = turn4_tokens()
    times = even_times(len(tokens), TURN4_FIRST_TOKEN, TURN4_LAST_TOKEN)
    chunks = feed(make("clause"), tokens, times, t_flush=TURN4_LLM_TOTAL, poll_step=POLL_STEP)
    assert [c.raw for c in chunks] == [SEED_TURN4.split("—")[0] + "—", "that's how we got your info."]
    assert chunks[0].end_ms == times[tokens.index("—")]


# ------------------------------------------------------------------ zero lookahead

# `?` and `!` are confirmed by the push that brings them; a `.` after a word by the push that
# brings the next character (here: in the same fragment, or the next one).
ZERO_LOOKAHEAD = [
    (["Is it ready", "?"], "Is it ready?"),
    (["That is great", "!"], "That is great!"),
    (["It was a long", " day. ", "Next"], "It was a long day."),
    (["Really?"], "Really?"),
    (["Are you there", "?", " Hello"], "Are you there?"),
    (["Is he over 5'10\"", "?", " If so"], "Is he over 5'10\"?"),  # an inch mark opens no quotation
]
NEXT_CHARACTER = [
    (["It was a long", " report.", " Next"], "It was a long report."),
    (["It was a long report", ".", "\n"], "It was a long report."),
    (["We are done with the report", ".", '"'], 'We are done with the report."'),
    (["Visit example", ".", "com for"], None),
]
# A `.` after a word no domain, file name or e-mail address starts with is confirmed on arrival.
SENTENCE_FINAL_DOT = [
    (["It was a long", " day", "."], "It was a long day."),
    (["That is what I told", " you."], "That is what I told you."),
    (["I think", " that's", "."], "I think that's."),
    (["It works (mostly)", "."], "It works (mostly)."),
    (["Nous sommes au café", "."], "Nous sommes au café."),
]


@pytest.mark.parametrize("strategy", ["sentence", "clause", "adaptive"])
@pytest.mark.parametrize("fragments, expected", NEXT_CHARACTER, ids=[str(e) for _, e in NEXT_CHARACTER])
def test_a_period_is_confirmed_by_the_next_character(strategy, fragments, expected):
    outs = pushes(make(strategy, first_min_words=1), fragments)
    assert outs[:-1] == [[]] * (len(fragments) - 1), outs
    if expected is None:  # "example.com" is a domain: no cut at its dot
        assert outs[-1] == [], outs
    else:
        assert [c.raw for c in outs[-1]] == [expected] and outs[-1][0].reason == "strong"


@pytest.mark.parametrize("strategy", ["sentence", "clause", "adaptive"])
@pytest.mark.parametrize("fragments, expected", SENTENCE_FINAL_DOT, ids=[e for _, e in SENTENCE_FINAL_DOT])
def test_a_period_after_a_sentence_final_word_is_confirmed_on_arrival(strategy, fragments, expected):
    outs = pushes(make(strategy, first_min_words=1), fragments)
    assert outs[:-1] == [[]] * (len(fragments) - 1), outs
    assert [c.raw for c in outs[-1]] == [expected] and outs[-1][0].reason == "strong", outs


@pytest.mark.parametrize("strategy", ["sentence", "clause", "adaptive"])
@pytest.mark.parametrize(
    "fragments", [["Visit example", "."], ["Mail jane", "."], ["Open report", "."], ["Go to help", "."]], ids=str
)
def test_a_period_after_another_word_waits(strategy, fragments):
    """"example" "." may be example.com: the `.` waits for its next character."""
    assert pushes(make(strategy, first_min_words=1), fragments) == [[], []]


@pytest.mark.parametrize("strategy", ["sentence", "clause", "adaptive"])
@pytest.mark.parametrize("fragments, expected", ZERO_LOOKAHEAD, ids=[str(e) for _, e in ZERO_LOOKAHEAD])
def test_zero_lookahead(strategy, fragments, expected):
    ch = make(strategy, first_min_words=1)
    got = None
    for i, frag in enumerate(fragments):
        out = ch.push(frag, 10.0 * i)
        if expected in [c.raw for c in out]:
            got = i
            break
        assert out == [], f"{frag!r} -> {out}"
    end = "".join(fragments).index(expected[-1]) + 1
    # the push that brought the boundary character returns the chunk
    expected_push = next(i for i in range(len(fragments)) if len("".join(fragments[: i + 1])) >= end)
    assert got == expected_push, f"chunk {expected!r} came from push {got}, expected push {expected_push}"
    c = [c for c in out if c.raw == expected][0]
    assert c.reason == "strong" and c.end_ms == 10.0 * expected_push


# ------------------------------------------------------------------ ambiguous boundaries wait


def pushes(ch: Chunker, fragments, step=10.0):
    return [ch.push(f, step * i) for i, f in enumerate(fragments)]


@pytest.mark.parametrize("strategy", ["sentence", "clause", "adaptive"])
def test_ambiguous_digit_period_waits_and_becomes_a_decimal(strategy):
    ch = make(strategy)
    out = pushes(ch, ["The price is 3", ".", "5 dollars today"])
    assert out == [[], [], []], out
    assert [c.raw for c in ch.flush(100.0)] == ["The price is 3.5 dollars today"]


@pytest.mark.parametrize("strategy", ["sentence", "clause", "adaptive"])
def test_ambiguous_digit_period_at_end_is_resolved_by_flush(strategy):
    ch = make(strategy)
    assert ch.push("The total is 3.", 0.0) == []
    assert [c.raw for c in ch.flush(10.0)] == ["The total is 3."]


@pytest.mark.parametrize("strategy", ["sentence", "clause", "adaptive"])
def test_digit_period_then_capital_is_a_sentence_end(strategy):
    ch = make(strategy)
    out = pushes(ch, ["I have 3.", " You have four"])
    assert out[0] == []
    assert [c.raw for c in out[1]] == ["I have 3."]
    assert [c.raw for c in ch.flush(100.0)] == [" You have four"]


@pytest.mark.parametrize(
    "fragments, expected",
    [
        (["Please ask Dr.", " Smith today."], ["Please ask Dr. Smith today."]),
        (["I met George W.", " Bush once."], ["I met George W. Bush once."]),
        (["She moved to the U.", "S.", " last year."], ["She moved to the U.S. last year."]),
        (["Order No.", " 5 has shipped."], ["Order No. 5 has shipped."]),
        (["Well...", " maybe later."], ["Well... maybe later."]),
        (["Well…", " maybe later."], ["Well… maybe later."]),
        (["I waited...", " Nobody came."], ["I waited...", " Nobody came."]),
        (["Steps:\n1.", " Open the app."], ["Steps:", "\n1. Open the app."]),
        (['She said "Go home.', '" Then she left.'], ['She said "Go home."', " Then she left."]),
        (["(See the appendix.", ") Next."], ["(See the appendix.)", " Next."]),
        (["Visit example", ".", "com today."], ["Visit example.com today."]),
        (["Mail jane", ".", "doe@example", ".", "com now."], ["Mail jane.doe@example.com now."]),
        (["Go to www", ".", "example", ".", "org now."], ["Go to www.example.org now."]),
        (["See https://example.com/a", ".", "b", "?", "x=1 now."], ["See https://example.com/a.b?x=1 now."]),
        (["Check this", ".", " ", "1", ".", " Restart it", ".", " ", "2", ".", " Wait", "."],
         ["Check this.", " 1. Restart it.", " 2. Wait."]),
        (["Check", ":", " ", "1", ".", " Restart it"], ["Check: 1. Restart it"]),
        (["Red and ", "2", ".", " Or blue"], ["Red and 2. Or blue"]),
        (["Pick red, ", "2", ".", " Or blue"], ["Pick red, 2. Or blue"]),
        (["Booked for Nov", ".", " ", "3", " at noon"], ["Booked for Nov. 3 at noon"]),
        (["It shipped on Feb", ".", " Then we"], ["It shipped on Feb.", " Then we"]),
        (["Open on Fri", ".", " Jan", ".", " 5"], ["Open on Fri. Jan. 5"]),
        (["Acme Inc", ".", " reported"], ["Acme Inc. reported"]),
        (["It is ten dollars incl", ".", " tax"], ["It is ten dollars incl. tax"]),  # an abbreviation it does not know
        (["Go to Rm", ".", " 204 now"], ["Go to Rm. 204 now"]),
        (["Restart the modem", ".", " ", "2", ".", " Wait"], ["Restart the modem.", " 2. Wait"]),
        (['Send it "before Friday', '!"', " and after"], ['Send it "before Friday!" and after']),
        (['He yelled "Stop', '!"', " Then"], ['He yelled "Stop!"', " Then"]),
        (["Bring it (even the extras", "!)", " and then"], ["Bring it (even the extras!) and then"]),
        (["(Is it", "?)", " Yes"], ["(Is it?)", " Yes"]),
        # after an abbreviation, a capital: a sentence opener ends the sentence, a continuation goes on
        (["See you at 5 p", ".", "m", ".", " Then we talk"], ["See you at 5 p.m.", " Then we talk"]),
        (["The call is at 3 p", ".", "m", ".", " Eastern time"], ["The call is at 3 p.m. Eastern time"]),
        (["It is made in the U", ".", "S", ".", " We ship"], ["It is made in the U.S.", " We ship"]),
        (["Write to U", ".", "S", ".", " Customs today"], ["Write to U.S. Customs today"]),
        (["We are at 900 Park Ave", ".", " South now"], ["We are at 900 Park Ave. South now"]),
        (["We are at 410 Orchard Ave", ".", " Our door"], ["We are at 410 Orchard Ave.", " Our door"]),
        (["It is on King Jr", ".", " Blvd", ".", " now"], ["It is on King Jr. Blvd. now"]),
        (["Delivery is est", ".", " Tuesday the 14th"], ["Delivery is est. Tuesday the 14th"]),
        (["The box is 7 lbs", ".", " We ship it"], ["The box is 7 lbs.", " We ship it"]),
        (["The shop is on Main St", ".", " Then turn left"], ["The shop is on Main St.", " Then turn left"]),
        (["Visit St", ".", " Mary's today"], ["Visit St. Mary's today"]),  # a title at a sentence start
        (["On Monday Dr", ".", " Kim is in"], ["On Monday Dr. Kim is in"]),
        (["It is on Lakeview Pkwy", ".", " Ste", ".", " 410 now"], ["It is on Lakeview Pkwy. Ste. 410 now"]),
        # list markers: the number after the last marker, roman numerals
        (["Slots: 1. Tuesday at 8 a", ".", "m", ".", " ", "2", ".", " Wednesday at noon ", "3", ".", " Friday"],
         ["Slots: 1. Tuesday at 8 a.m. 2. Wednesday at noon 3. Friday"]),
        (["Fixes:\ni", ".", " Reinstall it or ii", ".", " Roll back"],
         ["Fixes:", "\ni. Reinstall it or ii. Roll back"]),
        # a single-quoted label, a unit after a slash, markdown markers, "!," and a "!" named as a symbol
        (["Click '", "Forgot password", "?'", " on the page"], ["Click 'Forgot password?' on the page"]),
        (["Tap '", "Done", "!'", " Then close it"], ["Tap 'Done!'", " Then close it"]),
        (["The plan is $65/mo", ".", " and more"], ["The plan is $65/mo. and more"]),
        (["At 2:00 p", ".", "m", ".**", " with us"], ["At 2:00 p.m.** with us"]),
        (["**Done", "!**", " Your order"], ["**Done!**", " Your order"]),
        (["Write to Yahoo", "!,", " Inc. today"], ["Write to Yahoo!, Inc. today"]),
        (["Use a symbol like ", "!", " or # here"], ["Use a symbol like ! or # here"]),
        (["Use Tiger", "!L", "amp now"], ["Use Tiger!Lamp now"]),
        (['Please press "1"', "!", " Then wait"], ['Please press "1"!', " Then wait"]),
    ],
    ids=lambda v: repr(v)[:40] if isinstance(v, list) else None,
)
@pytest.mark.parametrize("strategy", ["sentence", "clause", "adaptive"])
def test_ambiguous_boundaries_resolve_without_a_wrong_cut(strategy, fragments, expected):
    ch = make(strategy, first_min_words=1)
    chunks = [c for out in pushes(ch, fragments) for c in out] + ch.flush(1000.0)
    assert [c.raw for c in chunks] == expected


def test_comma_after_digit_waits_for_the_next_character():
    ch = make("clause")
    out = pushes(ch, ["The whole team will meet at noon on day 1", ",", "000 times over"])
    assert out == [[], [], []]
    assert [c.raw for c in ch.flush(100.0)] == ["The whole team will meet at noon on day 1,000 times over"]
    ch = make("clause")
    out = pushes(ch, ["The whole team will meet at noon on day 12", ",", " then", " we leave"])
    assert [c.raw for c in out[0] + out[1] + out[2]] == ["The whole team will meet at noon on day 12,"]
    assert [c.raw for c in ch.flush(100.0)] == [" then we leave"]


def test_comma_after_word_is_confirmed_on_arrival():
    ch = make("clause")
    out = pushes(ch, ["I checked the calendar twice", ",", " and"])
    assert out[0] == [] and [c.raw for c in out[1]] == ["I checked the calendar twice,"], out


# ------------------------------------------------------------------ weak boundaries and their thresholds


def test_adaptive_first_chunk_uses_first_min_chars_then_min_chars():
    text = "Oh hello there, my friend, how are you doing, I was wondering"
    ch = make("adaptive")
    chunks = ch.push(text, 0.0) + ch.flush(0.0)
    # "Oh hello there," (15) >= first_min_chars (10); then " my friend," (10) < min_chars (24)
    assert [c.raw for c in chunks] == ["Oh hello there,", " my friend, how are you doing,", " I was wondering"]
    assert [c.reason for c in chunks] == ["weak", "weak", "flush"]
    ch = make("clause")  # no lower threshold for the first chunk
    chunks = ch.push(text, 0.0) + ch.flush(0.0)
    assert [c.raw for c in chunks] == ["Oh hello there, my friend,", " how are you doing, I was wondering"]


def test_adaptive_first_chunk_has_first_min_words():
    text = "Hello there, my friend. How are you?"
    chunks = (ch := make("adaptive")).push(text, 0.0) + ch.flush(0.0)
    assert [c.raw for c in chunks] == ["Hello there, my friend.", " How are you?"]  # "Hello there," has 2 words
    chunks = (ch := make("adaptive", first_min_words=2)).push(text, 0.0) + ch.flush(0.0)
    assert [c.raw for c in chunks] == ["Hello there,", " my friend.", " How are you?"]
    chunks = (ch := make("adaptive")).push("Yes.", 0.0) + ch.flush(10.0)
    assert [(c.raw, c.reason) for c in chunks] == [("Yes.", "flush")]  # a reply shorter than that


def test_adaptive_later_chunks_have_two_words():
    """ "Sure." is no chunk of its own after the first: it goes with the next sentence."""
    text = "Let me check that for you. Sure. It is booked. Okay? Bye."
    chunks = (ch := make("adaptive")).push(text, 0.0) + ch.flush(0.0)
    assert [c.raw for c in chunks] == ["Let me check that for you.", " Sure. It is booked.", " Okay? Bye."]
    chunks = (ch := make("sentence")).push(text, 0.0) + ch.flush(0.0)
    assert [c.raw for c in chunks] == ["Let me check that for you.", " Sure.", " It is booked.", " Okay?", " Bye."]


def test_config_parameters_are_used():
    ch = make("clause", min_chars=6)
    chunks = ch.push("Yes, sure, okay, fine.", 0.0) + ch.flush(0.0)
    assert [c.raw for c in chunks] == ["Yes, sure,", " okay, fine."]
    ch = make("adaptive", deadline_ms=100.0)
    ch.push("I will be at the", 50.0)  # no phrase break, no content word: any word end, at the deadline
    assert ch.next_deadline() == 150.0
    assert ch.poll(149.0) == [] and [c.raw for c in ch.poll(150.0)] == ["I will be"]  # before "at"
    ch = make("adaptive", later_deadline_ms=1000.0, first_min_words=1)
    assert [c.raw for c in ch.push("Right. One two three", 0.0)] == ["Right."]
    assert ch.next_deadline() == 1000.0 and [c.raw for c in ch.poll(1000.0)] == [" One two"]


# ------------------------------------------------------------------ deadline and next_deadline


def test_next_deadline_none_when_idle():
    for strategy in ("sentence", "clause", "adaptive", "words", "passthrough"):
        assert make(strategy).next_deadline() is None, strategy


@pytest.mark.parametrize("strategy", ["sentence", "clause", "words"])
def test_no_deadline_outside_adaptive(strategy):
    ch = make(strategy)
    assert ch.push("no punctuation here at all", 0.0) == []
    assert ch.next_deadline() is None
    assert ch.poll(100_000.0) == []


@pytest.mark.parametrize(
    "text, share, expected",
    [
        ("You filled out a Facebook ad about creating x", 0.5, "You filled out a Facebook ad"),  # a phrase break
        ("alpha bravo charlie delta", 0.75, "alpha bravo charlie"),  # a content word's end
        ("I will be at the x", 1.0, "I will be"),  # before a new phrase, after a function word
        ("I will be very x", 1.0, "I will be very"),  # any word end that does not bind the next
    ],
)
def test_first_chunk_deadline_takes_worse_places_the_longer_it_waits(text, share, expected):
    ch = make("adaptive")
    assert ch.push(text, 0.0) == []
    assert ch.next_deadline() == share * DEADLINE
    assert ch.poll(share * DEADLINE - 1) == []
    out = ch.poll(share * DEADLINE)
    assert [c.raw for c in out] == [expected], out  # the partial word stays pending
    assert out[0].reason == "deadline" and out[0].end_ms == share * DEADLINE and out[0].start_ms == 0.0
    rest = ch.flush(500.0)
    assert [c.raw for c in rest] == [text[len(expected):]] and rest[0].reason == "flush"


def test_deadline_waits_for_first_min_words():
    """At the deadline only two words are complete: the first chunk waits for a third."""
    ch = make("adaptive")
    assert ch.push("alpha bravo charlie", 0.0) == []
    assert ch.next_deadline() is None  # no cut possible yet
    assert ch.poll(DEADLINE + 100) == []
    out = ch.push(" delta", DEADLINE + 200)
    assert [(c.raw, c.reason, c.end_ms) for c in out] == [("alpha bravo charlie", "deadline", DEADLINE + 200)]


def test_deadline_prefers_the_last_weak_boundary():
    ch = make("adaptive", first_min_chars=30)  # no weak cut on arrival
    assert ch.push("Oh well, yes, we can do", 0.0) == []
    out = ch.poll(DEADLINE)
    assert out and out[0].raw == "Oh well, yes,", out


def test_deadline_cut_at_a_weak_boundary_has_reason_deadline():
    """A cut made because the deadline expired is a `deadline` cut, wherever it is placed."""
    ch = make("adaptive", first_min_chars=30)
    ch.push("Oh well, yes, we can do", 0.0)
    out = ch.poll(DEADLINE)
    assert out and out[0].reason == "deadline", out


@pytest.mark.parametrize(
    "text, expected",
    [
        ("You filled out a Facebook ad about creating passive", "You filled out a Facebook ad"),  # before "about"
        ("He is a bit of a guy who", "He is a bit of a guy"),  # before "who", not after "a"
        ("I think we should call the", "I think we should call"),  # not after "the"
        # never "6 | p.m.", and "p.m. | tonight" is no phrase break
        ("Please ring us after 6 p.m. tonight", "Please ring us"),
        ("We booked it for Nov. 3 at", "We booked it"),  # never after "Nov." or "3"
        ('Please tell them "we are not sure', "Please tell them"),  # not inside the quotation
        ("So it is $15 per", "So it is"),  # never after "per" (nor an article)
        ("It arrives in 3 business", "It arrives in"),  # never "3 | business" nor "business | days"
        ("So it is 9 to", "So it is"),  # a connector after a number: "9 to | 5"
        ("We have on file the IBAN GB29 NWBK 6016", "We have on file"),  # a code before a code or number
        ("Please go to Suite 200", "Please go to"),  # the name of a numbered thing before its number
        ("This feature needs Android 14", "This feature needs"),  # a name before its number
        ("Use the code SAVE10 at", "Use the code SAVE10"),  # ... but a code before a word is a place
        ("Now please run `sudo systemctl restart", "Now please run"),  # not inside inline code
        ("We reviewed Gomez et", "We reviewed Gomez"),  # "et | al."
        ("I can do either a)", "I can do either"),  # not after a list marker "a)"
    ],
)
def test_deadline_cuts_at_the_best_place(text, expected):
    ch = make("adaptive")
    assert ch.push(text + " x", 0.0) == []
    assert [c.raw for c in ch.poll(DEADLINE)] == [expected]


@pytest.mark.parametrize(
    "text, cut",
    [
        ("We can meet this afternoon – I will call you", "We can meet this afternoon –"),  # a pause
        ("We are open Mon–Fri from nine", None),  # ranges: no boundary
        ("We are open Monday – Friday from nine", None),
        ("We are open 8 a.m. – 5 p.m. most days", None),
        ("We are open 8 a.m.–9 p.m. most days", None),
        ("The hours are 9—5 most days", None),
    ],
)
def test_an_en_dash_is_a_pause_unless_it_makes_a_range(text, cut):
    ch = make("clause", min_chars=1)
    chunks = [c for i, word in enumerate(re.split(r"(?=\s)", text)) for c in ch.push(word, 10.0 * i)]
    assert [c.raw for c in chunks] == ([cut] if cut else [])


def test_deadline_needs_a_word_boundary():
    ch = make("adaptive")
    assert ch.push("Supercalifragilistic", 0.0) == []
    assert ch.poll(5_000.0) == []
    out = ch.flush(5_001.0)
    assert [c.raw for c in out] == ["Supercalifragilistic"]


def test_deadline_leaves_no_whitespace_only_chunk():
    ch = make("adaptive")
    ch.push("Hello there friend ", 0.0)
    out = ch.poll(DEADLINE)
    assert [c.raw for c in out] == ["Hello there friend"]
    assert ch.flush(DEADLINE + 1) == []
    assert ch.next_deadline() is None


def test_deadline_is_measured_from_the_first_pending_fragment():
    later = ChunkerConfig().later_deadline_ms
    ch = make("adaptive")
    assert ch.push("one two three four", 0.0) == []
    assert ch.push(" five six", 250.0) == []
    assert ch.next_deadline() == 0.75 * DEADLINE  # content word ends: from three quarters of the deadline
    assert ch.poll(0.75 * DEADLINE - 1) == []
    assert [c.raw for c in ch.poll(0.75 * DEADLINE)] == ["one two three four five"]
    assert ch.push(" seven eight", 500.0) == []
    assert ch.next_deadline() == 250.0 + later  # " six" arrived at 250: after the first chunk, the long deadline
    assert ch.poll(250.0 + later - 1) == []
    assert [c.raw for c in ch.poll(250.0 + later)] == [" six seven"]


def test_push_also_fires_an_expired_deadline():
    ch = make("adaptive")
    assert ch.push("alpha beta gamma", 0.0) == []
    out = ch.push(" delta", 450.0)  # nobody polled; the deadline (400) has passed
    assert out and all(c.reason == "deadline" for c in out), out
    assert out[0].raw == "alpha beta gamma" and out[0].end_ms == 450.0


def test_deadline_after_a_cut_starts_with_the_next_text():
    ch = make("adaptive")
    out = ch.push("Hello there my friend, how are you", 0.0)  # >= first_min_chars and 3 words: weak cut now
    assert [c.raw for c in out] == ["Hello there my friend,"]
    d = ch.next_deadline()
    assert d == ChunkerConfig().later_deadline_ms  # " how are" arrived at 0 as well
    assert [c.raw for c in ch.poll(d)] == [" how are"]


def test_later_deadline_never_makes_one_word_chunks():
    ch = make("adaptive")
    assert [c.raw for c in ch.push("Let me check that for you.", 0.0)] == ["Let me check that for you."]
    assert ch.push(" Okay", 100.0) == []
    assert ch.push(" so", 3000.0) == []  # past the later deadline, but " Okay" is one word
    out = ch.push(" the", 3100.0)
    assert [(c.raw, c.reason) for c in out] == [(" Okay so", "deadline")]


# ------------------------------------------------------------------ the engine's lead (underrun)


def lead_chunker(**kw) -> Chunker:
    ch = make("adaptive", **kw)
    assert [c.raw for c in ch.push("Let me look that up for you.", 0.0)] == ["Let me look that up for you."]
    return ch


def test_with_a_comfortable_lead_later_chunks_wait_for_a_boundary():
    ch = lead_chunker()
    ch.set_lead(10_000.0, 0.0)
    assert ch.push(" The booking is on file and", 10.0) == []
    assert ch.poll(5_000.0) == []  # past later_deadline_ms: the lead decides now, and it is comfortable
    assert ch.next_deadline() == 10_000.0 - ChunkerConfig().underrun_lead_ms
    out = ch.push(" ready for you.", 5_010.0)
    assert [(c.raw, c.reason) for c in out] == [(" The booking is on file and ready for you.", "strong")]


def test_underrun_cuts_at_the_best_place_when_playback_would_run_dry():
    ch = lead_chunker()
    ch.set_lead(600.0, 100.0)  # 600 ms ahead at 100 ms: dry at 700, cut 250 ms before
    assert ch.push(" The booking is on file and the", 120.0) == []
    assert ch.next_deadline() == 450.0
    assert ch.poll(449.0) == []
    out = ch.poll(450.0)
    assert [(c.raw, c.reason) for c in out] == [(" The booking is on file", "underrun")]


def test_underrun_counts_the_speech_of_text_emitted_after_the_lead():
    ch = make("adaptive")
    ch.set_lead(0.0, 0.0)  # the first chunk ignores the lead
    assert [c.raw for c in ch.push("Let me look that up for you.", 0.0)] == ["Let me look that up for you."]
    speech = len("Let me look that up for you.") * SPEECH_MS_PER_CHAR
    assert ch.push(" The booking is", 10.0) == []
    assert ch.next_deadline() == pytest.approx(speech - ChunkerConfig().underrun_lead_ms)


def test_underrun_never_cuts_one_word():
    ch = lead_chunker()
    ch.set_lead(0.0, 0.0)
    assert ch.push(" Okay", 10.0) == [] and ch.push(" so", 20.0) == []
    assert ch.poll(30.0) == []
    assert [(c.raw, c.reason) for c in ch.push(" the", 40.0)] == [(" Okay so", "underrun")]


def test_unknown_lead_falls_back_to_the_later_deadline():
    ch = lead_chunker()
    ch.set_lead(10_000.0, 0.0)
    ch.set_lead(None, 0.0)
    ch.push(" The booking is", 10.0)
    assert ch.next_deadline() == 10.0 + ChunkerConfig().later_deadline_ms


# ------------------------------------------------------------------ max_chars


def longest_word(text: str) -> int:
    return max(len(w) for w in text.split())


@pytest.mark.parametrize("streaming", ["whole", "words_same_time", "words_25ms"])
def test_max_chars_bounds_every_chunk(streaming):
    text = LONG_UNPUNCTUATED
    assert len(text) >= 2000 and not re.search(r"[.,;:!?…—–]", text)
    if streaming == "whole":
        fragments, times = [text], [0.0]
    else:
        fragments = [f for f in re.split(r"(?=\s)", text) if f]
        step = 0.0 if streaming == "words_same_time" else 25.0
        times = [step * i for i in range(len(fragments))]
    chunks = feed(make("adaptive"), fragments, times, t_flush=times[-1] + 1, poll_step=POLL_STEP if times[-1] else None)
    check_invariants(chunks, text, len(fragments))
    assert len(chunks) >= len(text) // MAX_CHARS
    pos = 0
    for c in chunks:
        body = c.raw.strip()
        assert len(body) <= MAX_CHARS, f"chunk #{c.index} has {len(body)} characters"
        if c.reason == "max_chars":
            # cut at the *last* word boundary: no room left for another word
            assert len(body) > MAX_CHARS - longest_word(text) - 1, f"chunk #{c.index} cut early: {len(body)}"
        pos += len(c.raw)
        if pos < len(text):
            assert text[pos].isspace() and not text[pos - 1].isspace(), f"chunk #{c.index} splits a word"
    if streaming != "words_25ms":
        assert all(c.reason == "max_chars" for c in chunks[:-1]), [c.reason for c in chunks]


def test_max_chars_parameter_is_used():
    text = LONG_UNPUNCTUATED[:600].rstrip()
    ch = make("adaptive", max_chars=50)
    chunks = ch.push(text, 0.0) + ch.flush(0.0)
    check_invariants(chunks, text)
    assert all(len(c.raw.strip()) <= 50 for c in chunks)
    assert len(chunks) >= 600 // 50


def test_max_chars_never_splits_a_long_word():
    word = "x" * 300
    text = "short words here " + word + " and a tail"
    ch = make("adaptive")
    chunks = ch.push(text, 0.0) + ch.flush(1.0)
    check_invariants(chunks, text)
    assert any(word in c.raw for c in chunks)
    for c in chunks:
        assert len(c.raw.strip()) <= MAX_CHARS or len(c.raw.split()) == 1, c


def test_sentence_has_no_max_chars():
    ch = make("sentence")
    chunks = ch.push(LONG_UNPUNCTUATED, 0.0) + ch.poll(10_000.0) + ch.flush(10_001.0)
    assert [c.raw for c in chunks] == [LONG_UNPUNCTUATED]


# ------------------------------------------------------------------ words


def test_words_strategy_emits_every_n_words_when_the_next_whitespace_arrives():
    words = "one two three four five six seven eight nine ten eleven twelve thirteen".split()
    fragments = [words[0]] + [" " + w for w in words[1:]]
    ch = make("words")  # words=6
    returned = [ch.push(f, 10.0 * i) for i, f in enumerate(fragments)]
    emitted_at = [i for i, out in enumerate(returned) if out]
    # the whitespace after word 6 comes with fragment 6 (" seven"), after word 12 with " thirteen"
    assert emitted_at == [6, 12], returned
    assert [c.raw for c in returned[6]] == ["one two three four five six"]
    assert [c.raw for c in returned[12]] == [" seven eight nine ten eleven twelve"]
    tail = ch.flush(200.0)
    assert [c.raw for c in tail] == [" thirteen"]
    assert returned[6][0].token_start == 0 and returned[6][0].token_end == 5


def test_words_strategy_trailing_whitespace_in_the_same_fragment():
    ch = make("words", words=3)
    assert ch.push("a b", 0.0) == []
    out = ch.push(" c ", 10.0)
    assert [c.raw for c in out] == ["a b c"]
    assert [c.raw for c in ch.push("d", 20.0) + ch.flush(30.0)] == [" d"]


def test_words_strategy_ignores_punctuation():
    ch = make("words", words=6)
    text = "Hi. I am Bob and I like tea. Do you?"
    chunks = ch.push(text, 0.0) + ch.flush(1.0)
    assert [c.raw for c in chunks] == ["Hi. I am Bob and I", " like tea. Do you?"]


# ------------------------------------------------------------------ passthrough


def test_passthrough_every_fragment_is_a_chunk():
    ch = make("passthrough")
    fragments = ["Hello", " world", " ", "!", "\n", " again", "Hi there ", "you", "   "]
    expected = [["Hello"], [" world"], [], [" !"], [], ["\n again"], ["Hi there"], [" you"], []]
    for i, (frag, exp) in enumerate(zip(fragments, expected)):
        out = ch.push(frag, 10.0 * i)
        assert [c.raw for c in out] == exp, (frag, out)
        assert all(c.reason == "fragment" and c.end_ms == 10.0 * i for c in out)
    assert ch.flush(100.0) == []


# ------------------------------------------------------------------ robustness


def big_text(n: int) -> str:
    base = (
        "Dr. Smith paid $1,000.50 at 12:30 p.m. on www.example.org, e.g. for J. R. R. Tolkien's books… "
        "Then 😀 שלום مرحبا — really? Yes! **Bold** `code` [link](https://example.com/a.b?x=1)\n1. Item\n"
    )
    return (base * (n // len(base) + 1))[:n]


@pytest.mark.parametrize("strategy", ["sentence", "clause", "adaptive", "words", "passthrough"])
@pytest.mark.parametrize("piece", [20_000, 7, 1])
def test_20000_characters(strategy, piece):
    text = big_text(20_000)
    fragments = [text[i : i + piece] for i in range(0, len(text), piece)]
    ch = make(strategy)
    chunks = []
    for i, f in enumerate(fragments):
        t = float(i)
        chunks += ch.poll(t) + ch.push(f, t)
    chunks += ch.flush(float(len(fragments)))
    check_invariants(chunks, text, len(fragments))
    assert ch.flush(1e9) == [] and ch.poll(1e9) == []


ALPHABET = (
    list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
    + list("     \n\n\t\r")
    + list(".,;:!?…—–\"“”’‘()[]«»*`_#-@/$%&=+<>|\\~^")
    + ["...", "Dr.", "e.g.", "3.5", "1,000", "12:30", "https://x.io/a.b?c=1", "a@b.co", "\n1. "]
    + list("😀🎉👍❤\ufe0f\u200d🇺🇸")
    + list("שלוםمرحبا\u200f\u202e\u202c\u0301你好。")
    + ["\x00", "\x1b", "\x07", "\x7f", "\x0b", "\x0c", "\x1c", "\x1f", "\x85", "\u00a0", "\u2028", "\u3000", "\ufeff"]
)


@pytest.mark.parametrize("strategy", ["sentence", "clause", "adaptive", "words", "passthrough"])
@pytest.mark.parametrize("seed", range(40))
def test_arbitrary_unicode_does_not_crash(strategy, seed):
    rng = random.Random(seed)
    text = "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 400)))
    cuts = sorted(rng.sample(range(1, len(text)), min(len(text) - 1, rng.randint(0, 80)))) if len(text) > 1 else []
    fragments = [text[a:b] for a, b in zip([0] + cuts, cuts + [len(text)])] if text else []
    ch = make(strategy)
    chunks = []
    t = 0.0
    for f in fragments:
        t += rng.choice([0.0, 1.0, 50.0, 450.0])
        chunks += ch.poll(t) + ch.push(f, t)
    chunks += ch.flush(t + 1)
    check_invariants(chunks, text, len(fragments))
    assert ch.flush(t + 2) == [] and ch.next_deadline() is None


@pytest.mark.parametrize("text", ["a\x00b\x1bc. d\x07e.", "\x00\x00\x00", "\x1b[31mred\x1b[0m text. More."])
@pytest.mark.parametrize("strategy", ["sentence", "clause", "adaptive", "words", "passthrough"])
def test_control_characters(strategy, text):
    ch = make(strategy)
    chunks = [c for frag in text for c in ch.push(frag, 0.0)] + ch.flush(1.0)
    check_invariants(chunks, text, len(text))


SILENT = ["**", "** ** `` ``", "```\n```", "*`*`*", "😀", "🎉🎉 👍", "👨\u200d👩\u200d👧", "❤\ufe0f🔥", "🇺🇸", "**😀**"]


@pytest.mark.parametrize("strategy", ["sentence", "clause", "adaptive", "words", "passthrough"])
@pytest.mark.parametrize("text", SILENT)
def test_markdown_or_emoji_only_reply_has_nothing_to_speak(strategy, text):
    for fragments in ([text], list(text)):
        ch = make(strategy)
        chunks = [c for i, f in enumerate(fragments) for c in ch.push(f, float(i))] + ch.flush(100.0)
        check_invariants(chunks, text, len(fragments))
        assert chunks, "the raw text still makes chunks (the trace keeps it)"
        assert all(c.text == "" for c in chunks), [(c.raw, c.text) for c in chunks]


# ------------------------------------------------------------------ cost is linear in the reply length


def _push_chars(strategy: str, text: str) -> float:
    best = float("inf")
    for _ in range(3):
        ch = make(strategy)
        start = time.perf_counter()
        for i, c in enumerate(text):
            ch.push(c, float(i))
        ch.flush(float(len(text)))
        best = min(best, time.perf_counter() - start)
    return best


@pytest.mark.parametrize(
    "strategy, kind",
    [("sentence", "unpunctuated"), ("clause", "unpunctuated"), ("adaptive", "one_long_word"), ("adaptive", "mixed")],
)
def test_pushing_single_characters_is_linear(strategy, kind):
    if kind == "unpunctuated":
        make_text = lambda n: (LONG_UNPUNCTUATED + " ") * (n // len(LONG_UNPUNCTUATED) + 1)
    elif kind == "one_long_word":
        make_text = lambda n: "x" * n
    else:
        make_text = big_text
    small, large = make_text(5_000)[:5_000], make_text(20_000)[:20_000]
    t_small, t_large = _push_chars(strategy, small), _push_chars(strategy, large)
    ratio = t_large / max(t_small, 1e-9)
    assert ratio < 8, f"20,000 chars took {t_large:.3f}s, 5,000 took {t_small:.3f}s: ratio {ratio:.1f} (O(n^2)?)"
