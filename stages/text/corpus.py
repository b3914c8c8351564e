"""Text that ships with Python, split for language modelling, and its tokenized form.

``pydoc_data.topics`` holds CPython's reference documentation (~465k
characters over 79 topics). Whole topics go to validation, test or training
(in the order of a hash of their names: into validation until it holds
``valid_fraction`` of the characters, then into test until it holds
``test_fraction``, the rest to training); validation paragraphs that also
occur in a training topic, and test paragraphs that also occur in a training
or validation topic, are dropped (some topics repeat others).
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass, field

import numpy as np

from memotune.stages.moe.tokenizer import BPETokenizer, train_bpe

SPECIALS = ["<pad>"]


@dataclass(frozen=True)
class TextSplits:
    """Raw training, validation and (optionally) test text."""

    train: str
    valid: str
    test: str = ""


@dataclass
class TokenizedText:
    """Every split as a token stream (``test`` empty when there is no test text), and
    the tokenizer that made them."""

    tokenizer: BPETokenizer
    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint16))

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size

    def token_bytes(self) -> np.ndarray:
        """Bytes of text per token id (to report loss per byte, comparable across vocabularies)."""
        return self.tokenizer.token_bytes()


def pydoc_text(valid_fraction: float = 0.1, test_fraction: float = 0.0) -> TextSplits:
    """Python's reference topics, split by topic into training, validation and test text."""
    from pydoc_data.topics import topics

    if not 0.0 < valid_fraction < 1.0:
        raise ValueError(f"valid_fraction must be in (0, 1), got {valid_fraction}")
    if not 0.0 <= test_fraction < 1.0 - valid_fraction:
        raise ValueError(
            f"test_fraction must be in [0, {1.0 - valid_fraction:g}), got {test_fraction}"
        )
    total = sum(len(text) for text in topics.values())
    train: list[str] = []
    valid: list[str] = []
    test: list[str] = []
    held_valid = held_test = 0
    for name in sorted(topics, key=lambda n: (zlib.crc32(n.encode()), n)):
        if held_valid < valid_fraction * total:
            valid.append(topics[name])
            held_valid += len(topics[name])
        elif held_test < test_fraction * total:
            test.append(topics[name])
            held_test += len(topics[name])
        else:
            train.append(topics[name])
    seen = {p.strip() for text in train for p in _paragraphs(text)}
    kept_valid = [p for text in valid for p in _paragraphs(text) if p.strip() not in seen]
    seen |= {p.strip() for p in kept_valid}
    kept_test = [p for text in test for p in _paragraphs(text) if p.strip() not in seen]
    return TextSplits(
        train="\n\n".join(train), valid="\n\n".join(kept_valid), test="\n\n".join(kept_test)
    )


def tokenize(splits: TextSplits, vocab_size: int) -> TokenizedText:
    """Train a byte-level BPE tokenizer of ``vocab_size`` on the training text (only);
    encode every split."""
    tokenizer = train_bpe([splits.train], vocab_size, SPECIALS)
    dtype = np.uint16 if tokenizer.vocab_size <= np.iinfo(np.uint16).max else np.int64

    def encode(text: str) -> np.ndarray:
        return np.asarray(tokenizer.encode(text), dtype=dtype)

    return TokenizedText(tokenizer, encode(splits.train), encode(splits.valid), encode(splits.test))


def _paragraphs(text: str) -> list[str]:
    return [p for p in re.split(r"\n\s*\n", text) if p.strip()]
