"""A multi-task, variable-length English corpus built offline from Python's own docs.

``pydoc_data.topics`` (shipped with CPython, ~465k characters over 79
reference topics) is cut into samples of four tasks whose lengths differ by
orders of magnitude, as in multi-task training (DynaPipe's setting):

- ``sentence``: one prose sentence (tens of characters);
- ``paragraph``: one prose paragraph (hundreds);
- ``code``: one indented code or grammar block;
- ``section``: consecutive paragraphs of a topic, up to ``section_chars``
  (thousands).

Whole topics go to either the training or the validation split (topics in
the order of a hash of their names, into validation until it holds
``valid_fraction`` of the samples); as some topics repeat text of others,
validation samples whose text also occurs in training are dropped.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

TASKS = ("sentence", "paragraph", "code", "section")


@dataclass(frozen=True)
class Sample:
    task: str
    text: str


@dataclass
class Corpus:
    train: list[Sample]
    valid: list[Sample]

    def texts(self) -> list[str]:
        return [s.text for s in self.train]


def _topics() -> dict[str, str]:
    from pydoc_data.topics import topics

    return dict(topics)


def _paragraphs(text: str) -> list[str]:
    return [p for p in re.split(r"\n\s*\n", text) if p.strip()]


def _is_code(paragraph: str) -> bool:
    return paragraph.startswith("   ")


def _is_heading(paragraph: str) -> bool:
    lines = paragraph.strip().splitlines()
    return len(lines) == 2 and set(lines[1]) <= set("*=-")


def _sentences(paragraph: str) -> list[str]:
    flat = " ".join(paragraph.split())
    return [s for s in re.split(r"(?<=[.!?])\s+(?=[A-Z])", flat) if len(s) >= 20]


def topic_samples(text: str, section_chars: int) -> list[Sample]:
    """The samples of one topic, in reading order."""
    samples: list[Sample] = []
    section: list[str] = []
    for paragraph in _paragraphs(text):
        if _is_heading(paragraph):
            continue
        if _is_code(paragraph):
            samples.append(Sample("code", paragraph.rstrip()))
        else:
            prose = " ".join(paragraph.split())
            samples.append(Sample("paragraph", prose))
            samples.extend(Sample("sentence", s) for s in _sentences(paragraph))
        if section and sum(map(len, section)) + len(paragraph) > section_chars:
            samples.append(Sample("section", "\n\n".join(section)))
            section = []
        section.append(paragraph.rstrip())
    if section:
        samples.append(Sample("section", "\n\n".join(section)))
    return samples


def build_corpus(valid_fraction: float = 0.1, section_chars: int = 1500) -> Corpus:
    """The corpus, split by topic into training and validation samples."""
    per_topic = {name: topic_samples(text, section_chars) for name, text in _topics().items()}
    total = sum(len(samples) for samples in per_topic.values())
    train: list[Sample] = []
    valid: list[Sample] = []
    for name in sorted(per_topic, key=lambda n: (zlib.crc32(n.encode()), n)):
        split = valid if len(valid) < valid_fraction * total else train
        split.extend(per_topic[name])
    seen = {sample.text for sample in train}  # some topics repeat other topics' text
    return Corpus(train, [sample for sample in valid if sample.text not in seen])
