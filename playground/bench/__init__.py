"""Every benchmark of the playground, rerunnable by anyone (`make bench`); nothing else imports this package.

Each module is a command: `python -m playground.bench.<name> --help`.
"""
