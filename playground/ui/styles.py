"""Styles shared by the UI's views (chunk reasons: `playground.core.formatting.REASON_COLORS`)."""

PATH_STYLES = {"persistent": "green", "reconnected": "yellow", "fallback_rest": "bold red"}
