"""The Textual app and its widgets: the only layer that imports textual."""
