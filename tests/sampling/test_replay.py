"""The prioritised replay buffer: ring behaviour, draws proportional to the weights, FAB's
re-weighting when the flow changes, checkpoint round trip, devices and dtypes."""

import io
import math

import pytest
import torch

from boltzflow.sampling import PrioritisedReplayBuffer


def rows(start, n, dtype=torch.float64, device="cpu"):
    """n rows whose x is (i, −i), log w = log(1 + i mod 3), log q = −i, for i = start … start+n−1."""
    i = torch.arange(start, start + n, dtype=dtype, device=device)
    return torch.stack([i, -i], -1), torch.log(1 + i % 3), -i


def test_the_buffer_is_a_ring_of_fixed_capacity(device, dtype):
    buffer = PrioritisedReplayBuffer(5)
    buffer.add(*rows(0, 3, dtype, device))
    assert len(buffer) == 3
    buffer.add(*rows(3, 4, dtype, device))
    assert len(buffer) == 5 and buffer.position == 2
    assert sorted(buffer.x[:, 0].tolist()) == [2, 3, 4, 5, 6]  # 0 and 1 were overwritten
    assert buffer.x.dtype == dtype and buffer.x.device.type == device.type
    buffer.add(*rows(10, 12, dtype, device))  # more rows than the capacity: the last 5 stay
    assert sorted(buffer.x[:, 0].tolist()) == [17, 18, 19, 20, 21]
    assert torch.equal(buffer.log_q, -buffer.x[:, 0])


def test_draws_are_proportional_to_the_weights(device):
    buffer = PrioritisedReplayBuffer(12)
    weights = torch.arange(1, 11, dtype=torch.float64, device=device)
    x = torch.arange(10, dtype=torch.float64, device=device)[:, None]
    buffer.add(x, torch.log(weights), torch.zeros(10, dtype=torch.float64, device=device))
    buffer.add(x[:2] + 100, torch.tensor([-math.inf, math.nan], device=device), torch.zeros(2, device=device))
    n = 20000
    xs, log_w, log_q, index = buffer.sample(n)
    assert xs.shape == (n, 1) and log_w.shape == log_q.shape == index.shape == (n,)
    assert (xs[:, 0] < 100).all()  # zero and NaN weights are never drawn
    counts = torch.bincount(index, minlength=12)[:10].double()
    expected = n * weights / weights.sum()
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 9 + 5 * math.sqrt(2 * 9), chi2
    assert torch.equal(xs[:, 0], buffer.x[index, 0])


def test_update_log_q_reweights_for_the_new_flow():
    """log w ← log w + log q_old − log q_new, then log q_old ← log q_new (FAB)."""
    buffer = PrioritisedReplayBuffer(8)
    buffer.add(*rows(0, 6))
    _, log_w, log_q, index = buffer.sample(4)
    new_log_q = log_q - 0.5
    buffer.update_log_q(index, new_log_q)
    assert torch.allclose(buffer.log_w[index], log_w + 0.5)
    assert torch.equal(buffer.log_q[index], new_log_q)
    untouched = torch.ones(6, dtype=torch.bool)
    untouched[index] = False
    assert torch.equal(buffer.log_w[:6][untouched], rows(0, 6)[1][untouched])
    with pytest.raises(ValueError, match=r"\[0, 6\)"):
        buffer.update_log_q(torch.tensor([7]), torch.zeros(1))


def test_state_dict_round_trip_through_a_checkpoint(dtype):
    buffer = PrioritisedReplayBuffer(6)
    buffer.add(*rows(0, 9, dtype))
    stream = io.BytesIO()
    torch.save({"replay": buffer.state_dict()}, stream)
    stream.seek(0)
    restored = PrioritisedReplayBuffer(6)
    restored.load_state_dict(torch.load(stream, weights_only=True)["replay"])
    assert (len(restored), restored.position) == (len(buffer), buffer.position)
    torch.manual_seed(0)
    a = buffer.sample(50)
    torch.manual_seed(0)
    b = restored.sample(50)
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    restored.add(*rows(20, 1, dtype))  # writes where the original would have
    assert restored.x[buffer.position, 0] == 20
    empty = PrioritisedReplayBuffer(6)
    empty.load_state_dict(PrioritisedReplayBuffer(6).state_dict())
    assert len(empty) == 0
    with pytest.raises(ValueError, match="capacity 6"):
        PrioritisedReplayBuffer(4).load_state_dict(buffer.state_dict())


def test_bad_use_raises_value_errors():
    buffer = PrioritisedReplayBuffer(4)
    with pytest.raises(ValueError, match="empty"):
        buffer.sample(1)
    with pytest.raises(ValueError, match=r"shape \[n\] = \[2\]"):
        buffer.add(torch.zeros(2, 3), torch.zeros(3), torch.zeros(2))
    buffer.add(torch.zeros(2, 3), torch.full((2,), -math.inf), torch.zeros(2))
    with pytest.raises(ValueError, match="zero"):
        buffer.sample(1)
    with pytest.raises(ValueError, match=r"shape \[n, 3\]"):
        buffer.add(torch.zeros(2, 2), torch.zeros(2), torch.zeros(2))
    with pytest.raises(ValueError, match="capacity"):
        PrioritisedReplayBuffer(0)
