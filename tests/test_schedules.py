import math

import pytest
import torch

from tensorar.models.schedules import LOSS_WEIGHTINGS, SCHEDULES, beta, noise_levels, slot_weights


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


def test_literal_reading_k4_linear_by_hand():
    # Table 1's β(j) = j/4 at j = 0..4: 0, .25, .5, .75, 1. Algorithm 1 noises positions 2..4 (1-based) with
    # β(2..4), so 0-based positions get 0, .5, .75, 1: the last draft is pure noise.
    torch.testing.assert_close(noise_levels("linear", 4, "literal"),
                               torch.tensor([0, 0.5, 0.75, 1.0], dtype=torch.float64))
    # Slot j weight (β(j) - β(j-1)) / β(j): j=1 (.25 - 0) / .25 = 1, j=2 (.5 - .25) / .5 = 1/2, j=3 (.75 - .5) / .75 = 1/3.
    torch.testing.assert_close(slot_weights("linear", 4, "literal"),
                               torch.tensor([1, 1, 1 / 2, 1 / 3], dtype=torch.float64))
    # Ours on the same schedule: 0-based positions, 1, 1/2, 1/3, 1/4, and the last draft at .75.
    torch.testing.assert_close(noise_levels("linear", 4), torch.tensor([0, 0.25, 0.5, 0.75], dtype=torch.float64))


def test_literal_reading_k4_exponential_by_hand():
    # β(j) = (j/4)^(1/8): β(1) = .8409, β(2) = .9170, β(3) = .9647, β(4) = 1.
    b1, b2, b3 = 0.25**0.125, 0.5**0.125, 0.75**0.125
    literal = slot_weights("exponential", 4, "literal")
    torch.testing.assert_close(literal, torch.tensor([1, 1, (b2 - b1) / b2, (b3 - b2) / b3], dtype=torch.float64))
    assert literal.tolist() == pytest.approx([1, 1, 0.0830, 0.0494], abs=1e-4)
    # Ours gives the first draft slot 0.083: the drafts train ~12x weaker than under the literal reading.
    assert slot_weights("exponential", 4, "rdm").tolist() == pytest.approx([1, 0.0830, 0.0494, 0.0353], abs=1e-4)
    torch.testing.assert_close(noise_levels("exponential", 4, "literal"),
                               torch.tensor([0, b2, b3, 1.0], dtype=torch.float64))


@pytest.mark.parametrize("name", list(SCHEDULES))
def test_literal_is_ours_shifted_by_one_slot(name):
    # Both apply the same RDM formula, 1-based against 0-based: literal slot j+1 is ours slot j.
    torch.testing.assert_close(slot_weights(name, 6, "literal")[1:], slot_weights(name, 6, "rdm")[:-1])
    assert noise_levels(name, 1, "literal").tolist() == [0.0]  # k = 1: nothing to noise either way
