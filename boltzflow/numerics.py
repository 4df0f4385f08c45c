"""Log-space hygiene shared by every floor: which log-densities and log-weights count as zero.

A NaN or +inf log-weight (a clash, a point outside the support, an overflow) means "no
weight", never "all the weight": ``clean_log`` makes it −inf. A log acceptance ratio may
legitimately be +inf (a move out of a −inf state); ``nan_to_neg_inf`` only rejects NaN.
"""

from __future__ import annotations

import math

from torch import Tensor


def clean_log(values: Tensor) -> Tensor:
    """NaN and +inf become −inf (weight 0); finite values and −inf stay. Any shape."""
    return values.nan_to_num(nan=-math.inf, posinf=-math.inf, neginf=-math.inf)


def nan_to_neg_inf(values: Tensor) -> Tensor:
    """NaN becomes −inf; ±inf and finite values stay. Any shape."""
    return values.nan_to_num(nan=-math.inf, posinf=math.inf, neginf=-math.inf)
