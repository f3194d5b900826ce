"""Every benchmark of the playground, rerunnable by anyone (`make bench`); nothing else imports this package.

Each benchmark is one module and a command: `python -m playground.bench.<name> --help`
(pipeline, tui, soak, voice, tts_ws, llm_http, export, trace_tools); `python -m playground.bench`
runs them all. They share `harness` (the ABBA order, percentiles, the Markdown table, the JSON
results of --json) and the recorded sessions in `data/`. `command` is `playground bench`, found
by name by `playground.commands.discover`.
"""
