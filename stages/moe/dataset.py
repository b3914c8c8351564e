"""The tokenized multi-task corpus the MoE trainer consumes.

Each sample becomes ``[task tag] + BPE tokens + [end]``; a sample longer than
``max_tokens`` is cut into consecutive pieces, each starting with its tag (a
last piece holding nothing but the end token is dropped).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .corpus import TASKS, Corpus, Sample
from .tokenizer import BPETokenizer, train_bpe

SPECIALS = ["<pad>", "<end>", *(f"<{task}>" for task in TASKS)]


@dataclass
class TokenizedCorpus:
    tokenizer: BPETokenizer
    train: list[np.ndarray]
    valid: list[np.ndarray]
    train_tasks: list[str]
    valid_tasks: list[str]
    max_tokens: int

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size

    def lengths(self, split: str = "train") -> list[int]:
        return [len(s) for s in getattr(self, split)]


def tokenize_corpus(corpus: Corpus, vocab_size: int, max_tokens: int = 256) -> TokenizedCorpus:
    """Train a BPE tokenizer of ``vocab_size`` on the training split and encode both splits."""
    if max_tokens < 8:
        raise ValueError(f"max_tokens must be at least 8, got {max_tokens}")
    tokenizer = train_bpe(corpus.texts(), vocab_size, SPECIALS)
    train, train_tasks = _encode(corpus.train, tokenizer, max_tokens)
    valid, valid_tasks = _encode(corpus.valid, tokenizer, max_tokens)
    return TokenizedCorpus(tokenizer, train, valid, train_tasks, valid_tasks, max_tokens)


def _encode(
    samples: list[Sample], tokenizer: BPETokenizer, max_tokens: int
) -> tuple[list[np.ndarray], list[str]]:
    end = tokenizer.special("<end>")
    encoded, tasks = [], []
    for sample in samples:
        tag = tokenizer.special(f"<{sample.task}>")
        ids = [*tokenizer.encode(sample.text), end]
        for start in range(0, len(ids), max_tokens - 1):
            piece = ids[start : start + max_tokens - 1]
            if piece == [end] and start > 0:
                continue
            encoded.append(np.asarray([tag, *piece], dtype=np.int64))
            tasks.append(sample.task)
    return encoded, tasks
