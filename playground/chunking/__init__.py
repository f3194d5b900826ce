"""The chunker: LLM text fragments in, speakable chunks out (README.md "The chunker")."""

from playground.chunking.chunker import Chunk, Chunker, REASONS

__all__ = ["Chunk", "Chunker", "REASONS"]
