"""FlowTorch's first-flow tutorial, reproduced with boltzflow."""

from boltzflow.examples.first_flow import TARGET_MEAN, TARGET_VARIANCE, first_flow


def test_first_flow_learns_the_shifted_gaussian():
    result = first_flow(steps=3000, seed=0)
    assert (result.mean - TARGET_MEAN).abs().max() < 0.05
    assert ((result.variance - TARGET_VARIANCE).abs() / TARGET_VARIANCE).max() < 0.10
    # KL(target ‖ flow) = NLL_flow − NLL_target on the same held-out samples: ≥ 0 up to noise,
    # small once fitted (the paired difference has little variance)
    kl = result.nll - result.target_nll
    assert -0.005 < kl < 0.01
