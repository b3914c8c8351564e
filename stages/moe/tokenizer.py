"""A byte-level BPE tokenizer trained on the corpus (Sennrich et al., arXiv 1508.07909;
byte-level as in GPT-2).

Text is split into words (a run of letters/digits or of punctuation, with
its leading space), each word into bytes; training repeatedly merges the most
frequent adjacent pair, keeping pair counts up to date incrementally.
Special tokens (padding, end of sample, one tag per task) come first.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import pairwise

import numpy as np

WORD = re.compile(r" ?[A-Za-z0-9_]+| ?[^A-Za-z0-9_\s]+|\s+")


@dataclass
class BPETokenizer:
    specials: list[str]
    merges: list[tuple[int, int]]
    _ranks: dict[tuple[int, int], int] = field(init=False, repr=False)
    _cache: dict[str, list[int]] = field(init=False, repr=False, default_factory=dict)

    def __post_init__(self) -> None:
        self._ranks = {pair: i for i, pair in enumerate(self.merges)}

    @property
    def base(self) -> int:
        return len(self.specials)

    @property
    def vocab_size(self) -> int:
        return self.base + 256 + len(self.merges)

    def special(self, name: str) -> int:
        return self.specials.index(name)

    def encode(self, text: str) -> list[int]:
        ids: list[int] = []
        for word in WORD.findall(text):
            if word not in self._cache:
                self._cache[word] = self._encode_word(word)
            ids.extend(self._cache[word])
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        table = self._byte_table()
        data = b"".join(table[i] for i in ids if i >= self.base)
        return data.decode("utf-8", errors="replace")

    def token_bytes(self) -> np.ndarray:
        """How many bytes of text each token id stands for (a special token counts one)."""
        widths = np.ones(self.vocab_size, dtype=np.int64)
        for token, text in self._byte_table().items():
            widths[token] = len(text)
        return widths

    def _encode_word(self, word: str) -> list[int]:
        parts = [self.base + b for b in word.encode("utf-8")]
        while len(parts) > 1:
            pairs = [
                (self._ranks.get(p, len(self._ranks)), i) for i, p in enumerate(pairwise(parts))
            ]
            rank, i = min(pairs)
            if rank == len(self._ranks):
                break
            parts[i : i + 2] = [self.base + 256 + rank]
        return parts

    def _byte_table(self) -> dict[int, bytes]:
        table = {self.base + b: bytes([b]) for b in range(256)}
        for rank, (a, b) in enumerate(self.merges):
            table[self.base + 256 + rank] = table[a] + table[b]
        return table

    def __getstate__(self) -> dict:
        return {"specials": self.specials, "merges": self.merges}

    def __setstate__(self, state: dict) -> None:
        self.specials, self.merges, self._cache = state["specials"], state["merges"], {}
        self.__post_init__()


def train_bpe(texts: Iterable[str], vocab_size: int, specials: list[str]) -> BPETokenizer:
    """Learn merges until the vocabulary (specials + 256 bytes + merges) has ``vocab_size``."""
    base = len(specials)
    n_merges = vocab_size - base - 256
    if n_merges < 0:
        raise ValueError(
            f"vocab_size must be at least {base + 256} (specials + bytes), got {vocab_size}"
        )
    word_counts = Counter(w for text in texts for w in WORD.findall(text))
    words = [[base + b for b in w.encode("utf-8")] for w in word_counts]
    counts = list(word_counts.values())
    pair_counts: Counter[tuple[int, int]] = Counter()
    where: dict[tuple[int, int], set[int]] = defaultdict(set)
    for index, word in enumerate(words):
        for pair in pairwise(word):
            pair_counts[pair] += counts[index]
            where[pair].add(index)

    merges: list[tuple[int, int]] = []
    while len(merges) < n_merges and pair_counts:
        pair, count = max(pair_counts.items(), key=lambda item: (item[1], -item[0][0], -item[0][1]))
        if count < 2:
            break
        new_id = base + 256 + len(merges)
        merges.append(pair)
        for index in list(where.pop(pair, ())):
            word = words[index]
            for old in pairwise(word):
                pair_counts[old] -= counts[index]
                if pair_counts[old] <= 0:
                    del pair_counts[old]
            words[index] = word = _merge(word, pair, new_id)
            for new in pairwise(word):
                pair_counts[new] += counts[index]
                where[new].add(index)
    return BPETokenizer(list(specials), merges)


def _merge(word: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    out, i = [], 0
    while i < len(word):
        if i + 1 < len(word) and (word[i], word[i + 1]) == pair:
            out.append(new_id)
            i += 2
        else:
            out.append(word[i])
            i += 1
    return out
