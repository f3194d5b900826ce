"""The local model's context window: which history a prompt holds, and keeping the prompt cache when it moves."""

from __future__ import annotations

import pytest

from playground.llm.base import Message
from playground.llm.context import BLOCK_KEEP, ContextWindow
from playground.llm.local import LocalLLM, LocalLLMConfig


def exchanges(n: int, start: int = 0) -> list[dict[str, str]]:
    history = []
    for i in range(start, start + n):
        history += [{"role": "user", "content": f"question {i}"}, {"role": "assistant", "content": f"answer {i}"}]
    return history


def test_a_history_that_fits_keeps_every_message():
    window = ContextWindow()
    history = exchanges(5)
    plan = window.plan(history, [10] * 10, fixed=20, budget=200)
    assert (plan.previous_start, plan.start, plan.trimmed) == (0, 0, 0)


def test_the_window_moves_as_little_as_needed_and_starts_at_a_user_message():
    window = ContextWindow()
    history = exchanges(5)
    costs = [10, 30] * 5  # 200 in all
    plan = window.plan(history, costs, fixed=20, budget=200)  # room 180: drop the first 20 at least
    assert plan.start == 2 and plan.trimmed == 2  # dropping "question 0" alone would start at an answer
    assert history[plan.start]["role"] == "user"


def test_the_start_is_remembered_while_the_conversation_only_grows():
    window = ContextWindow()
    history = exchanges(5)
    costs = [10] * 10
    plan = window.plan(history, costs, fixed=0, budget=80)
    window.commit(history, plan.start)
    assert plan.start == 2
    history += exchanges(1, start=5)
    again = window.plan(history, [10] * 12, fixed=0, budget=120)  # everything would fit again...
    assert (again.previous_start, again.start) == (2, 2)  # ...but the window never moves back: the cache holds 2..


@pytest.mark.parametrize("rewrite", ["cleared", "rewritten"])
def test_a_new_conversation_starts_the_window_over(rewrite):
    window = ContextWindow()
    history = exchanges(5)
    window.commit(history, 4)
    new = [] if rewrite == "cleared" else exchanges(5, start=100)
    plan = window.plan(new, [10] * len(new), fixed=0, budget=1000)
    assert (plan.previous_start, plan.start) == (0, 0)


def test_a_block_drop_leaves_the_history_at_most_its_share_of_the_room():
    window = ContextWindow()
    history = exchanges(20)
    costs = [10] * 40
    plan = window.plan(history, costs, fixed=100, budget=500)  # room 400 for 400: fits exactly
    assert plan.start == 0
    start = window.block_start(history, costs, fixed=100, budget=500, start=2)
    assert sum(costs[start:]) <= (500 - 100) * BLOCK_KEEP and history[start]["role"] == "user"


@pytest.mark.models
@pytest.mark.parametrize("trim", ["shift", "block"])
async def test_a_long_conversation_keeps_its_prompt_cache_when_the_window_moves(trim):
    """The conversation outgrows a small context; the turn that moves the window is recorded,
    and (shift) reuses the cache for nearly the whole prompt, or (block) drops half at once
    so that the following turns are cached again."""
    llm = LocalLLM(LocalLLMConfig(max_tokens=40, context=512, context_trim=trim))
    await llm.load()
    system = Message("system", "You are a helpful voice assistant. Answer in one short sentence.")
    history: list[Message] = []
    moves = []
    try:
        for i in range(30):
            question = Message("user", f"Tell me one fact about the number {i}.")
            reply = "".join([t.text async for t in llm.stream([system, *history, question])])
            history += [question, Message("assistant", reply)]
            context, usage = llm.info.context, llm.info.usage
            assert context.messages + context.dropped == len(history)  # system + history + question
            if context.trimmed:
                moves.append((context, usage))
            if len(moves) == 3:
                break
    finally:
        await llm.close()
    assert len(moves) == 3, "the conversation never outgrew the context"
    for context, usage in moves:
        assert context.how == trim and context.trimmed % 2 == 0  # whole exchanges
        cached, prompt = usage.prompt_tokens_details.cached_tokens, usage.prompt_tokens
        assert prompt <= context.budget_tokens
        if trim == "shift":
            assert cached >= 0.8 * prompt, usage
        else:
            assert cached < 0.2 * prompt and context.trimmed >= 4, usage  # one large re-evaluation
