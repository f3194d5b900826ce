"""The chunker: LLM text fragments in, speakable chunks out (docs/chunker.md)."""

from playground.chunking.chunker import Chunk, Chunker, REASONS

__all__ = ["Chunk", "Chunker", "REASONS"]
