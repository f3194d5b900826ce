"""The seed's latency analysis, written for every turn: where each turn's wait went (a breakdown
that adds up), what went wrong (findings with evidence, cause, the setting that owns it and a
computed what-if) and the settings that would save the most.

Pure: reads trace events (through `evidence`, the one module that does), computes with core and
the chunking tools (compare, the oracle bound), and writes nothing. `playground diagnose`, the
TUI and the CSV / Markdown exports show its results.
"""
