import random

import torch

from memotune import Choice, Float, Int, Pipeline, stage
from memotune.tuner.encoding import SpaceEncoder


@stage(
    space={
        "lr": Float(1e-5, 1e-1, log=True),
        "momentum": Float(0.0, 0.99),
        "layers": Int(1, 8),
        "width": Int(16, 1024, log=True),
        "act": Choice(["relu", "gelu", 3, True, None]),
    }
)
def first(inputs, lr, momentum, layers, width, act):
    return inputs


@stage(space={"wd": Float(-3.0, 3.0)})
def second(x, wd):
    return 0.0


PIPE = Pipeline([first, second])


def random_config(rng: random.Random) -> dict:
    return {
        "first": {
            "lr": 10 ** rng.uniform(-5, -1),
            "momentum": rng.uniform(0.0, 0.99),
            "layers": rng.randint(1, 8),
            "width": rng.randint(16, 1024),
            "act": rng.choice(["relu", "gelu", 3, True, None]),
        },
        "second": {"wd": rng.uniform(-3.0, 3.0)},
    }


def test_encoding_round_trips_exactly_value_for_value():
    encoder = SpaceEncoder(PIPE)
    rng = random.Random(0)
    for _ in range(500):
        config = random_config(rng)
        row = encoder.encode(config)
        assert row.shape == (6,) and bool((row >= 0).all() and (row <= 1).all())
        decoded = encoder.decode(row)
        assert decoded == config
        assert all(type(decoded["first"][k]) is type(config["first"][k]) for k in config["first"])


def test_integers_and_choices_round_trip_even_for_a_fresh_encoder():
    rng = random.Random(1)
    for _ in range(200):
        config = random_config(rng)
        row = SpaceEncoder(PIPE).encode(config)
        decoded = SpaceEncoder(PIPE).decode(row)  # knows nothing: decodes by formula
        for name in ("layers", "width", "act"):
            assert decoded["first"][name] == config["first"][name]
            assert type(decoded["first"][name]) is type(config["first"][name])
        assert abs(decoded["second"]["wd"] - config["second"]["wd"]) < 1e-12


def test_any_row_decodes_to_a_valid_configuration():
    encoder = SpaceEncoder(PIPE)
    for row in torch.rand(300, 6, generator=torch.Generator().manual_seed(2), dtype=torch.float64):
        PIPE.validate(encoder.decode(row))
    PIPE.validate(encoder.decode(torch.zeros(6, dtype=torch.float64)))
    PIPE.validate(encoder.decode(torch.ones(6, dtype=torch.float64)))


def test_prefix_columns_lead_in_stage_order():
    encoder = SpaceEncoder(PIPE)
    assert encoder.stage_end == [5, 6] and encoder.prefix_end(1) == 5
    config = random_config(random.Random(3))
    assert torch.equal(encoder.encode_prefix(config, 1), encoder.encode(config)[:5])
