"""Memory layouts chosen for speed do not change what a layer computes."""

import torch

from boltzflow.flows import Circle, Interval, Real, SplineTransformer
from boltzflow.flows.nets import MLP

from .checks import points_in

DOMAINS = [Circle(), Interval(0.1, 0.3), Real(), Circle(), Interval(-1.0, 2.0)]


def test_spline_transformer_is_independent_of_the_parameter_layout():
    """Dimension-major and parameter-major raw parameters give identical results."""
    t = SplineTransformer(DOMAINS, bins=6).double()
    g = torch.Generator().manual_seed(0)
    params = torch.randn(32, len(DOMAINS), t.n_params, generator=g, dtype=torch.float64)
    param_major = params.transpose(1, 2).contiguous().transpose(1, 2)  # same values
    x = points_in(DOMAINS, 32)
    for inverse in (False, True):
        a, b = t(x, params, inverse), t(x, param_major, inverse)
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_mlp_output_order_reorders_the_outputs():
    net = MLP(5, 12, (16, 16), residual=True).double()
    torch.nn.init.normal_(net.out.weight)
    torch.nn.init.normal_(net.out.bias)
    x = torch.randn(7, 5, dtype=torch.float64)
    order = torch.randperm(12)
    assert torch.allclose(net(x, order), net(x)[:, order], rtol=1e-13, atol=1e-13)
    (grad,) = torch.autograd.grad(net(x, order).sum(), net.out.weight)
    (ref,) = torch.autograd.grad(net(x).sum(), net.out.weight)
    assert torch.allclose(grad, ref, rtol=1e-13, atol=1e-13)
