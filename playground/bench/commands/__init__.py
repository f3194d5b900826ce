"""`playground bench`: the one benchmark that is a user command, found by the CLI's command scanner.

Its own package, so that finding it does not import every benchmark module of `playground.bench`.
"""
