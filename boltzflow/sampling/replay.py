"""A prioritised replay buffer of weighted samples, as FAB uses for its AIS samples.

FAB with a prioritised replay buffer (Midgley et al., ICLR 2023) stores AIS samples x with their
log-weights log w (AIS towards p²/q_θ) and log q_θ(x) at insertion, and reuses each sample
several times: draws are proportional to w, so that they approximate p²/q_θ. The target
p²/q_θ changes when the flow does: for w ∝ p²/(q_θ g) (g the AIS sampling density), moving
from θ to θ' multiplies w by q_θ(x)/q_θ'(x). ``update_log_q`` applies that correction,

    log w ← log w + log q_old(x) − log q_new(x),    log q_old ← log q_new,

after each gradient step for the samples just used.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import torch
from torch import Tensor

from ..numerics import clean_log


class PrioritisedReplayBuffer:
    """Fixed-capacity ring buffer of (x [dim], log w, log q) rows, sampled ∝ exp(log w).

    Storage is allocated on the first ``add`` with that call's device and dtype; when full,
    new rows overwrite the oldest. Non-finite log-weights are stored as −inf (never drawn).
    ``state_dict`` / ``load_state_dict`` hold tensors and ints only (checkpoint-safe).
    """

    def __init__(self, capacity: int):
        if int(capacity) != capacity or capacity < 1:
            raise ValueError(f"capacity must be a positive integer, got {capacity}")
        self.capacity = int(capacity)
        self.x: Optional[Tensor] = None
        self.log_w: Optional[Tensor] = None
        self.log_q: Optional[Tensor] = None
        self.size = 0      # rows filled
        self.position = 0  # next row to write

    def __len__(self) -> int:
        return self.size

    def add(self, x: Tensor, log_w: Tensor, log_q: Tensor) -> None:
        """Append rows x [n, dim], log_w [n], log_q [n] (detached), overwriting the oldest."""
        if x.dim() != 2 or (self.x is not None and x.shape[1] != self.x.shape[1]):
            dim = "dim" if self.x is None else self.x.shape[1]
            raise ValueError(f"x must have shape [n, {dim}], got {list(x.shape)}")
        if log_w.shape != x.shape[:1] or log_q.shape != x.shape[:1]:
            raise ValueError(f"log_w and log_q must have shape [n] = [{len(x)}], "
                             f"got {list(log_w.shape)} and {list(log_q.shape)}")
        if self.x is None:
            self.x = x.new_zeros((self.capacity, x.shape[1]))
            self.log_w = x.new_full((self.capacity,), -math.inf)
            self.log_q = x.new_zeros(self.capacity)
        x, log_w, log_q = (t.detach()[-self.capacity:].to(self.x) for t in (x, log_w, log_q))
        log_w = clean_log(log_w)
        rows = (self.position + torch.arange(len(x), device=self.x.device)) % self.capacity
        self.x[rows], self.log_w[rows], self.log_q[rows] = x, log_w, log_q
        self.position = (self.position + len(x)) % self.capacity
        self.size = min(self.size + len(x), self.capacity)

    def sample(self, n: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Draw ``n`` rows with replacement, row i with probability w_i / Σ w.

        Returns (x [n, dim], log_w [n], log_q [n], indices [n]); pass the indices to
        ``update_log_q`` after the flow has changed.
        """
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        log_w = self.log_w[: self.size]
        if torch.isinf(log_w).all():
            raise ValueError("every weight in the replay buffer is zero; add samples with finite log-weights")
        probs = torch.softmax(log_w.double(), dim=0)
        indices = torch.multinomial(probs, n, replacement=True)
        return self.x[indices], self.log_w[indices], self.log_q[indices], indices

    def update_log_q(self, indices: Tensor, log_q_new: Tensor) -> None:
        """Re-weight rows ``indices`` [n] for the new flow: log w += log q_old − log q_new [n]."""
        if log_q_new.shape != indices.shape or indices.dim() != 1:
            raise ValueError(f"indices and log_q_new must both have shape [n], "
                             f"got {list(indices.shape)} and {list(log_q_new.shape)}")
        if self.size == 0 or ((indices < 0) | (indices >= self.size)).any():
            raise ValueError(f"indices must lie in [0, {self.size}) (the rows filled)")
        log_q_new = log_q_new.detach().to(self.log_q)
        self.log_w[indices] = clean_log(self.log_w[indices] + self.log_q[indices] - log_q_new)
        self.log_q[indices] = log_q_new

    def state_dict(self) -> dict[str, Any]:
        """Capacity, fill, write position and the stored rows (tensors and ints only)."""
        state: dict[str, Any] = {"capacity": self.capacity, "size": self.size, "position": self.position}
        if self.x is not None:
            state.update(x=self.x.clone(), log_w=self.log_w.clone(), log_q=self.log_q.clone())
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned (onto the device of its tensors)."""
        if int(state["capacity"]) != self.capacity:
            raise ValueError(
                f"the state holds a buffer of capacity {state['capacity']}, this one has {self.capacity}")
        self.size, self.position = int(state["size"]), int(state["position"])
        if "x" in state:
            self.x, self.log_w, self.log_q = (state[k].clone() for k in ("x", "log_w", "log_q"))
        else:
            self.x = self.log_w = self.log_q = None
