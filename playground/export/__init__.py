"""Writing traces out: JSONL (more formats come with the traces issue)."""
