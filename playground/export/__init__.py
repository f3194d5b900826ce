"""Writing traces out: the native JSONL, Chrome/Perfetto, OpenTelemetry, CSV and Markdown.

`playground.export.formats` has the one entry point the CLI and the TUI share
(`export`, `export_all`, `FORMATS`).
"""
