import math

import pytest
import torch

from tensorar.models.schedules import LOSS_WEIGHTINGS, SCHEDULES, beta, slot_weights


@pytest.mark.parametrize("name", list(SCHEDULES))
@pytest.mark.parametrize("k", [1, 2, 4, 8])
def test_schedule_is_a_monotone_probability_with_clean_first_position(name, k):
    b = beta(name, k)
    assert b.shape == (k,)
    assert b[0] == 0
    assert ((b >= 0) & (b < 1)).all()
    assert (b[1:] > b[:-1]).all()


def test_schedule_values_at_k4():
    # Paper Sec. 2.3 (j normalised by k); "exponential" is the literal reading (j/k)^(1/(2k)).
    expected = {
        "linear": [0, 1 / 4, 1 / 2, 3 / 4],
        "sine": [0, math.sin(math.pi / 8), math.sin(math.pi / 4), math.sin(3 * math.pi / 8)],
        "sqrt": [0, 0.5, 0.5**0.5, 0.75**0.5],
        "exponential": [0, 0.25**0.125, 0.5**0.125, 0.75**0.125],
        "exponential_2_over_k": [0, 0.5, 0.5**0.5, 0.75**0.5],
        "exponential_e": [math.expm1(r) / math.expm1(1) for r in (0, 0.25, 0.5, 0.75)],
    }
    for name, values in expected.items():
        torch.testing.assert_close(beta(name, 4), torch.tensor(values, dtype=torch.float64))
    # Table 5 needs exponential to differ from sqrt and be the noisiest of the four.
    four = ["linear", "sine", "sqrt", "exponential"]
    assert all((beta("exponential", 4)[1:] > beta(n, 4)[1:]).all() for n in four[:3])


@pytest.mark.parametrize("name", list(SCHEDULES))
@pytest.mark.parametrize("weighting", LOSS_WEIGHTINGS)
@pytest.mark.parametrize("k", [1, 3, 4])
def test_weights_positive_and_first_slot_is_one(name, weighting, k):
    w = slot_weights(name, k, weighting)
    assert w.shape == (k,)
    assert w[0] == 1
    assert (w > 0).all()


def test_rdm_weights_linear_k4():
    expected = torch.tensor([1, 1 / 2, 1 / 3, 1 / 4], dtype=torch.float64)
    torch.testing.assert_close(slot_weights("linear", 4, "rdm"), expected)
    b = beta("sine", 4).tolist() + [1.0]
    expected = [(b[s + 1] - b[s]) / b[s + 1] for s in range(4)]
    torch.testing.assert_close(slot_weights("sine", 4), torch.tensor(expected, dtype=torch.float64))


def test_unknown_names_fail_listing_known_ones():
    with pytest.raises(KeyError, match="linear"):
        beta("cosine", 4)
    with pytest.raises(KeyError, match="rdm"):
        slot_weights("linear", 4, "elbo")
