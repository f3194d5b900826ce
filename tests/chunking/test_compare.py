"""Re-chunking a recorded turn: the seed's Turn 4 under every strategy."""

from playground.chunking.compare import rechunk_all, turn_tokens
from playground.core.presets import ChunkerConfig
from tests.events import event

TURN4 = "You filled out a Facebook ad about creating passive income without adding more hours to your day—that's how we got your info."


def seed_turn4_events():
    words = TURN4.replace("—", " — ").split(" ")
    pieces = [w if i == 0 else (w if w == "—" or prev == "—" else " " + w) for i, (w, prev) in enumerate(zip(words, [""] + words))]
    step = (6621.0 - 534.0) / (len(pieces) - 1)
    events = [event("turn.start", 4, 0.0), event("llm.request", 4, 1.0)]
    events += [event("llm.token", 4, 534.0 + i * step, i=i, text=p) for i, p in enumerate(pieces)]
    events.append(event("llm.done", 4, 6793.0))
    assert "".join(pieces) == TURN4
    return events


def test_seed_turn4_sentence_waits_for_the_end_and_adaptive_does_not():
    tokens, done = turn_tokens(seed_turn4_events())
    results = {r.strategy: r for r in rechunk_all(tokens, done, ChunkerConfig())}
    assert results["sentence"].ttfs >= 6621.0 and len(results["sentence"].chunks) == 1
    assert results["sentence"].chunker_wait >= 6087.0
    # not the run-on sentence: the deadline, once three words are complete (" a", the 4th token, ends "out")
    assert results["adaptive"].ttfs == tokens[3][0] and tokens[3][1] == " a"
    assert results["adaptive"].chunks[0].reason == "deadline" and results["adaptive"].chunks[0].raw == "You filled out"
    for r in results.values():
        assert "".join(c.raw for c in r.chunks) == TURN4
        assert r.shortest <= r.longest
