"""The session and the turn pipeline. Never imports the UI."""
