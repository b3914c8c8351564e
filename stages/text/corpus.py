"""Text that ships with Python, split for language modelling, and its tokenized form.

``pydoc_data.topics`` holds CPython's reference documentation (~465k
characters over 79 topics). Whole topics go to training or validation (in
the order of a hash of their names, into validation until it holds
``valid_fraction`` of the characters); validation paragraphs that also occur
in a training topic (some topics repeat others) are dropped.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

import numpy as np

from memotune.stages.moe.tokenizer import BPETokenizer, train_bpe

SPECIALS = ["<pad>"]


@dataclass(frozen=True)
class TextSplits:
    """Raw training and validation text."""

    train: str
    valid: str


@dataclass
class TokenizedText:
    """Both splits as token streams, and the tokenizer that made them."""

    tokenizer: BPETokenizer
    train: np.ndarray
    valid: np.ndarray

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size

    def token_bytes(self) -> np.ndarray:
        """Bytes of text per token id (to report loss per byte, comparable across vocabularies)."""
        return self.tokenizer.token_bytes()


def pydoc_text(valid_fraction: float = 0.1) -> TextSplits:
    """Python's reference topics, split by topic into training and validation text."""
    from pydoc_data.topics import topics

    if not 0.0 < valid_fraction < 1.0:
        raise ValueError(f"valid_fraction must be in (0, 1), got {valid_fraction}")
    total = sum(len(text) for text in topics.values())
    train: list[str] = []
    valid: list[str] = []
    held = 0
    for name in sorted(topics, key=lambda n: (zlib.crc32(n.encode()), n)):
        if held < valid_fraction * total:
            valid.append(topics[name])
            held += len(topics[name])
        else:
            train.append(topics[name])
    seen = {p.strip() for text in train for p in _paragraphs(text)}
    kept = [p for text in valid for p in _paragraphs(text) if p.strip() not in seen]
    return TextSplits(train="\n\n".join(train), valid="\n\n".join(kept))


def tokenize(splits: TextSplits, vocab_size: int) -> TokenizedText:
    """Train a byte-level BPE tokenizer of ``vocab_size`` on the training text; encode both."""
    tokenizer = train_bpe([splits.train], vocab_size, SPECIALS)
    dtype = np.uint16 if tokenizer.vocab_size <= np.iinfo(np.uint16).max else np.int64
    return TokenizedText(
        tokenizer,
        np.asarray(tokenizer.encode(splits.train), dtype=dtype),
        np.asarray(tokenizer.encode(splits.valid), dtype=dtype),
    )


def _paragraphs(text: str) -> list[str]:
    return [p for p in re.split(r"\n\s*\n", text) if p.strip()]
