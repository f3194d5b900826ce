"""The chunker on text streamed like an LLM: where it cuts, and how long the first chunk waits.

    python -m playground.bench.chunker [--corpus FILE.py] [--strategies adaptive,clause] [--json PATH]
                                       [--seed 1] [--set chunker.key=value ...]

Every reply of the corpus (a Python file defining CASES: objects with `id`, `text` and
`protected`, the spans no cut may touch) is tokenized by the real SmolLM2 tokenizer (the
local LLM's model file, vocab only) and, when `tiktoken` is installed, by cl100k (else by
a cl100k-like split: its pre-tokenizer pattern, whole words and punctuation runs). Tokens
arrive as an LLM streams them: the first at 400 ms, then 25 +- 10 ms apart (uniform,
seeded), faster than speech; deadlines fire between tokens as they would live. Printed
as Markdown, per strategy and tokenizer, against the targets:

- cuts inside protected spans (or right after one ending in "."): 0
- TTFC (first chunk - first token) p50 <= 200 ms, p90 <= 300 ms; a reply with no boundary
  at all <= 400 ms
- after the first chunk, cuts at no boundary (deadline, underrun, max_chars) <= 5%
- chunks under 2 words, except a reply's last: 0
- the wait of a `.` that ends a token (emission - its token's arrival), for information
- the seed's Turn 4 (playground/data/traces/seed-turn4.jsonl, its recorded token times):
  first chunk >= 3 words at TTFS <= 1,000 ms, at most 6 chunks
"""

from __future__ import annotations

import codecs
import importlib.util
import random
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from playground.bench.harness import argument_parser, percentiles
from playground.bench.harness import report as harness_report
from playground.chunking.chunker import Chunk, Chunker
from playground.chunking.compare import rechunk, recorded_turns
from playground.core.metrics import percentile
from playground.core.presets import ChunkerConfig, Preset, apply_overrides
from playground.core.tracefile import read_trace
from playground.data import find

FIRST_TOKEN_MS = 400.0
GAP_MS = 25.0
JITTER_MS = 10.0
TARGETS = {"protected": 0, "ttfc_p50": 200.0, "ttfc_p90": 300.0, "no_boundary": 400.0, "off_boundary": 0.05,
           "short": 0, "turn4_words": 3, "turn4_ttfs": 1000.0, "turn4_chunks": 6}
DEFAULT_CORPUS = Path(__file__).resolve().parent / "corpus.py"  # the tests' corpus (tests/chunking)
BOUNDARY_CHARS = frozenset(".!?…,;:—–")
CLOSERS = frozenset("\"”’)]»'")
NO_BOUNDARY = re.compile(r"[.!?…,;:—–\n]")
# cl100k's pre-tokenizer (what splits text before BPE), with `re` classes for \p{L} and \p{N}.
_CL100K_LIKE = re.compile(
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\w]?[^\W\d_]+|\d{1,3}| ?[^\s\w]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+|_+"
)
Tokenizer = Callable[[str], list[str]]


def smollm2_tokenizer() -> Tokenizer:
    """The local LLM's tokenizer (SmolLM2, vocab only): text -> the fragments it would stream, UTF-8
    sequences a token splits decoded incrementally as the LLM provider does."""
    from playground.llm.local import find_model_file, import_llama_cpp

    model = import_llama_cpp().Llama(model_path=str(find_model_file()), vocab_only=True, verbose=False)

    def fragments(text: str) -> list[str]:
        decoder = codecs.getincrementaldecoder("utf-8")()
        out = [decoder.decode(model.detokenize([token]))
               for token in model.tokenize(text.encode("utf-8"), add_bos=False, special=False)]
        out.append(decoder.decode(b"", final=True))
        return [piece for piece in out if piece]

    return fragments


def cl100k_tokenizer() -> tuple[str, Tokenizer]:
    """(name, tokenizer): tiktoken's cl100k when it is installed and has its data, else the cl100k-like split."""
    try:
        import tiktoken

        encoding = tiktoken.get_encoding("cl100k_base")
    except Exception:  # not installed, or its BPE file cannot be fetched: the pre-tokenizer split
        return "cl100k-like", lambda text: _CL100K_LIKE.findall(text)

    def fragments(text: str) -> list[str]:
        out = [encoding.decode_single_token_bytes(t) for t in encoding.encode(text)]
        decoder = codecs.getincrementaldecoder("utf-8")()
        pieces = [decoder.decode(b) for b in out] + [decoder.decode(b"", final=True)]
        return [p for p in pieces if p]

    return "cl100k", fragments


def load_corpus(path: Path) -> list[Any]:
    spec = importlib.util.spec_from_file_location("chunker_bench_corpus", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"{path}: not a Python file; --corpus takes a file that defines CASES")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    cases = getattr(module, "CASES", None)
    if not cases:
        raise SystemExit(f"{path}: defines no CASES (a list of cases with id, text and protected)")
    return [c for c in cases if c.text.strip()]


def arrival_times(n: int, rng: random.Random) -> list[float]:
    times, t = [], FIRST_TOKEN_MS
    for i in range(n):
        times.append(t)
        t += max(1.0, GAP_MS + rng.uniform(-JITTER_MS, JITTER_MS))
    return times


def stream(config: ChunkerConfig, fragments: Sequence[str], times: Sequence[float]) -> list[Chunk]:
    """The fragments at their times through a chunker, deadlines polled when due (as the engine does)."""
    chunker = Chunker(config)
    chunks: list[Chunk] = []
    for fragment, t in zip(fragments, times):
        due = chunker.next_deadline()
        while due is not None and due <= t:
            cut = chunker.poll(due)
            if not cut:
                break
            chunks += cut
            due = chunker.next_deadline()
        chunks += chunker.push(fragment, t)
    return chunks + chunker.flush((times[-1] if times else FIRST_TOKEN_MS) + GAP_MS)


def protected_ranges(text: str, spans: Sequence[str]) -> list[tuple[int, int, bool]]:
    """(start, end, ends with ".") of every occurrence of every protected span."""
    out = []
    for span in spans:
        start = text.find(span)
        while start >= 0:
            out.append((start, start + len(span), span.endswith(".")))
            start = text.find(span, start + 1)
    return out


def at_boundary(text: str, cut: int) -> bool:
    """A cut right after a boundary character (plus closing quotes and brackets), or before a newline."""
    q = cut
    while q > 0 and text[q - 1] in CLOSERS:
        q -= 1
    return (q > 0 and text[q - 1] in BOUNDARY_CHARS) or text[cut:].lstrip(" \t").startswith(("\n", "\r"))


def spoken_words(raw: str) -> int:
    return sum(1 for w in raw.split() if any(ch.isalnum() for ch in w))


@dataclass
class Tally:
    replies: int = 0
    cuts_inside: list[str] = field(default_factory=list)
    ttfc: list[float] = field(default_factory=list)
    no_boundary_ttfc: list[float] = field(default_factory=list)
    later_cuts: int = 0
    later_off_boundary: list[str] = field(default_factory=list)
    short: list[str] = field(default_factory=list)
    dot_waits: list[float] = field(default_factory=list)

    def add(self, case: Any, fragments: Sequence[str], times: Sequence[float], chunks: Sequence[Chunk]) -> None:
        text = case.text
        self.replies += 1
        if chunks:
            ttfc = chunks[0].end_ms - times[0]
            self.ttfc.append(ttfc)
            if not NO_BOUNDARY.search(text.rstrip()):
                self.no_boundary_ttfc.append(ttfc)
        starts = [0]
        for f in fragments:
            starts.append(starts[-1] + len(f))
        ranges = protected_ranges(text, case.protected)
        position = 0
        for i, chunk in enumerate(chunks[:-1]):
            position += len(chunk.raw)
            before, after = text[max(0, position - 30):position], text[position:position + 20]
            where = f"{case.id}: {before!r} | {after!r} ({chunk.reason})"
            if any(s < position < e or (position == e and dot) for s, e, dot in ranges):
                self.cuts_inside.append(where)
            if i > 0:
                self.later_cuts += 1
                if chunk.reason in ("deadline", "underrun", "max_chars") and not at_boundary(text, position):
                    self.later_off_boundary.append(where)
            if spoken_words(chunk.raw) < 2:
                self.short.append(where)
            if chunk.reason == "strong" and text[position - 1] == ".":
                token = next(k for k in range(len(fragments)) if starts[k + 1] >= position)
                if starts[token + 1] == position:  # the "." ended its token
                    self.dot_waits.append(chunk.end_ms - times[token])


def run_corpus(cases: Sequence[Any], tokenizer: Tokenizer, config: ChunkerConfig, seed: int) -> Tally:
    tally = Tally()
    rng = random.Random(seed)
    for case in cases:
        fragments = tokenizer(case.text)
        if "".join(fragments) != case.text:
            fragments = re.findall(r"\s*\S+|\s+$", case.text)  # a tokenization that does not round-trip
        times = arrival_times(len(fragments), rng)
        tally.add(case, fragments, times, stream(config, fragments, times))
    return tally


@dataclass
class Turn4:
    first_text: str
    ttfs: float | None
    chunks: int


def seed_turn4(config: ChunkerConfig) -> Turn4:
    _, events = read_trace(find("trace", "seed-turn4"))
    turn = recorded_turns(events)[0]
    result = rechunk(turn.tokens, turn.done_ms, config)
    return Turn4(result.chunks[0].raw if result.chunks else "", result.ttfs, len(result.chunks))


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _mark(ok: bool) -> str:
    return "yes" if ok else "**no**"


def report(results: dict[tuple[str, str], Tally], turn4: dict[str, Turn4], corpus: Path, seed: int) -> str:
    t = TARGETS
    replies = next(iter(results.values())).replies
    lines = [f"## Chunker: {replies} replies of {corpus.name}, first token at {FIRST_TOKEN_MS:.0f} ms, "
             f"then {GAP_MS:.0f}+-{JITTER_MS:.0f} ms apart (seed {seed})", "",
             "| strategy | tokens | cuts inside protected (0) | TTFC p50 (<= 200) | TTFC p90 (<= 300) "
             "| no boundary, max (<= 400) | later cuts at no boundary (<= 5%) | chunks < 2 words (0) "
             "| token-final `.` wait p50 / p90 |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for (strategy, tokens), r in results.items():
        p50, p90 = percentile(r.ttfc, 50), percentile(r.ttfc, 90)
        no_boundary = max(r.no_boundary_ttfc, default=None)
        off = len(r.later_off_boundary) / r.later_cuts if r.later_cuts else 0.0
        on_arrival = sum(1 for w in r.dot_waits if w == 0)
        waits = (f"{_ms(percentile(r.dot_waits, 50))} / {_ms(percentile(r.dot_waits, 90))} "
                 f"({on_arrival} of {len(r.dot_waits)} on arrival)")
        lines.append(
            f"| {strategy} | {tokens} | {len(r.cuts_inside)} {_mark(len(r.cuts_inside) <= t['protected'])} "
            f"| {_ms(p50)} {_mark(p50 is not None and p50 <= t['ttfc_p50'])} "
            f"| {_ms(p90)} {_mark(p90 is not None and p90 <= t['ttfc_p90'])} "
            f"| {_ms(no_boundary)} {_mark(no_boundary is None or no_boundary <= t['no_boundary'])} "
            f"| {off:.1%} of {r.later_cuts} {_mark(off <= t['off_boundary'])} "
            f"| {len(r.short)} {_mark(len(r.short) <= t['short'])} | {waits} |")
    lines += ["", "### Seed Turn 4 (recorded token times, ~234 ms apart)", "",
              "| strategy | first chunk | words (>= 3) | TTFS (<= 1000) | chunks (<= 6) |",
              "| --- | --- | ---: | ---: | ---: |"]
    for strategy, r in turn4.items():
        words = spoken_words(r.first_text)
        lines.append(f"| {strategy} | {r.first_text!r} | {words} {_mark(words >= t['turn4_words'])} "
                     f"| {_ms(r.ttfs)} {_mark(r.ttfs is not None and r.ttfs <= t['turn4_ttfs'])} "
                     f"| {r.chunks} {_mark(r.chunks <= t['turn4_chunks'])} |")
    for (strategy, tokens), r in results.items():
        examples = [("cut inside a protected span", r.cuts_inside), ("later cut at no boundary", r.later_off_boundary),
                    ("chunk under 2 words", r.short)]
        shown = [(label, found) for label, found in examples if found]
        if shown:
            lines += ["", f"{strategy}, {tokens}:"]
            for label, found in shown:
                lines += [f"- {label}: {w}" for w in found[:5]]
                lines += [f"- ... {len(found) - 5} more"] if len(found) > 5 else []
    return "\n".join(lines)


def results_json(results: dict[tuple[str, str], Tally], turn4: dict[str, Turn4]) -> dict[str, Any]:
    by_strategy: dict[str, Any] = {}
    for (strategy, tokens), r in results.items():
        by_strategy.setdefault(strategy, {})[tokens] = {
            "replies": r.replies, "cuts_inside_protected": len(r.cuts_inside), "ttfc_ms": percentiles(r.ttfc),
            "no_boundary_ttfc_max_ms": max(r.no_boundary_ttfc, default=None), "later_cuts": r.later_cuts,
            "later_cuts_at_no_boundary": len(r.later_off_boundary), "chunks_under_2_words": len(r.short),
            "token_final_dot_wait_ms": percentiles(r.dot_waits)}
    for strategy, r in turn4.items():
        by_strategy.setdefault(strategy, {})["seed_turn4"] = {
            "first_chunk": r.first_text, "words": spoken_words(r.first_text), "ttfs_ms": r.ttfs, "chunks": r.chunks}
    return {"targets": TARGETS, "strategies": by_strategy}


def main(argv: list[str] | None = None) -> int:
    parser = argument_parser("chunker", __doc__)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="a Python file that defines CASES")
    parser.add_argument("--strategies", default="adaptive", help="comma-separated (default: adaptive)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the token gaps")
    parser.add_argument("--set", action="append", default=[], dest="sets", metavar="chunker.KEY=VALUE",
                        help="a chunker setting for every strategy (repeatable)")
    args = parser.parse_args(argv)
    if not args.corpus.is_file():
        parser.error(f"--corpus {args.corpus}: no such file")
    base = apply_overrides(Preset(), args.sets).chunker
    cases = load_corpus(args.corpus)
    cl100k_name, cl100k = cl100k_tokenizer()
    tokenizers = {"SmolLM2": smollm2_tokenizer(), cl100k_name: cl100k}
    results: dict[tuple[str, str], Tally] = {}
    turn4: dict[str, Turn4] = {}
    for strategy in [s.strip() for s in args.strategies.split(",") if s.strip()]:
        config = replace(base, strategy=strategy)
        for name, tokenizer in tokenizers.items():
            results[(strategy, name)] = run_corpus(cases, tokenizer, config, args.seed)
        turn4[strategy] = seed_turn4(config)
    harness_report("chunker", args, [report(results, turn4, args.corpus, args.seed)], results_json(results, turn4))
    return 0


if __name__ == "__main__":
    sys.exit(main())
