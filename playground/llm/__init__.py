"""LLM providers behind one protocol: `stream(messages)` yields timestamped tokens."""
