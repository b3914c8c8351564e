"""A small causal transformer language model, a shallower student cut from it, and a
deeper model grown from it with its function preserved."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import torch
from torch import nn


@dataclass(frozen=True)
class LMConfig:
    vocab_size: int
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    context: int = 64


class TinyLM(nn.Module):
    """Token and position embeddings, pre-norm transformer blocks with a causal mask,
    a final norm and a linear head."""

    def __init__(self, config: LMConfig) -> None:
        super().__init__()
        if config.d_model % config.n_heads:
            raise ValueError(
                f"d_model ({config.d_model}) must be a multiple of n_heads ({config.n_heads})"
            )
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.d_model)
        self.position = nn.Embedding(config.context, config.d_model)
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(
                config.d_model,
                config.n_heads,
                4 * config.d_model,
                dropout=0.0,
                batch_first=True,
                norm_first=True,
            )
            for _ in range(config.n_layers)
        )
        self.norm = nn.LayerNorm(config.d_model)
        self.head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        mask = nn.Transformer.generate_square_subsequent_mask(config.context)
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits of shape ``batch × length × vocab`` for tokens ``batch × length``."""
        length = tokens.shape[1]
        hidden = self.embed(tokens) + self.position.weight[:length]
        mask = self.mask[:length, :length]
        for block in self.blocks:
            hidden = block(hidden, src_mask=mask, is_causal=True)
        return self.head(self.norm(hidden))


def build(config: dict, state_dict: dict[str, torch.Tensor] | None = None) -> TinyLM:
    """A model from a config dict (as :func:`describe` gives), with weights if given."""
    model = TinyLM(LMConfig(**config))
    if state_dict is not None:
        model.load_state_dict(state_dict)
    return model


def describe(model: TinyLM) -> dict:
    return asdict(model.config)


def cut_student(teacher: TinyLM, layers: int) -> TinyLM:
    """A student with the teacher's embeddings, head and every k-th block (DistilBERT's
    initialisation: keep the width, take ``layers`` of the teacher's blocks, evenly spaced)."""
    if not 1 <= layers <= teacher.config.n_layers:
        raise ValueError(
            f"the student needs 1 to {teacher.config.n_layers} layers (the teacher's), got {layers}"
        )
    student = TinyLM(replace(teacher.config, n_layers=layers))
    step = teacher.config.n_layers / layers
    chosen = [int(i * step) for i in range(layers)]
    state = {k: v for k, v in teacher.state_dict().items() if not k.startswith("blocks.")}
    for new, old in enumerate(chosen):
        prefix = f"blocks.{old}."
        state.update(
            {
                f"blocks.{new}.{k[len(prefix) :]}": v
                for k, v in teacher.state_dict().items()
                if k.startswith(prefix)
            }
        )
    student.load_state_dict({k: v.clone() for k, v in state.items()})
    return student


def grow(model: TinyLM, layers: int) -> TinyLM:
    """A deeper model that computes exactly what ``model`` computes: LEMON's lossless
    depth expansion for pre-norm blocks (Wang et al., "LEMON: Lossless model expansion",
    ICLR 2024). Each new block is stacked on top as a copy of the last one with its
    attention output projection and its feed-forward output layer zeroed, so it adds
    nothing to the residual stream until training moves those two layers (their
    gradients are not zero, so it does at the first step)."""
    if layers < model.config.n_layers:
        raise ValueError(f"cannot grow {model.config.n_layers} layers into {layers}")
    grown = TinyLM(replace(model.config, n_layers=layers))
    state = dict(model.state_dict())
    last = model.config.n_layers - 1
    for new in range(model.config.n_layers, layers):
        for name, value in model.blocks[last].state_dict().items():
            state[f"blocks.{new}.{name}"] = torch.zeros_like(value) if _silenced(name) else value
    grown.load_state_dict({k: v.clone() for k, v in state.items()})
    return grown


def _silenced(name: str) -> bool:
    """The layers of a pre-norm block whose outputs join the residual stream."""
    return name.startswith(("self_attn.out_proj.", "linear2."))
