"""VAELoss and the KL warm-up: tiny tensors with hand-computed values, and the argument / shape errors."""
import math

import pytest
import torch

from nnunet_fracture.losses import VAELoss
from nnunet_fracture.losses.vae_loss import warmed_up_beta


def test_mse_and_kl_by_hand():
    # one sample, 4 elements: errors 1, -1, 2, 0 -> mse (1 + 1 + 4 + 0) / 4 = 1.5
    target = torch.zeros(1, 1, 2, 2)
    recon = torch.tensor([[[[1.0, -1.0], [2.0, 0.0]]]])
    # mu = (1, 0), logvar = (0, log 2): KL = -1/2 [(1 + 0 - 1 - 1) + (1 + log2 - 0 - 2)] = 1 - log(2)/2
    mu = torch.tensor([[1.0, 0.0]])
    logvar = torch.tensor([[0.0, math.log(2.0)]])
    kl = 1.0 - math.log(2.0) / 2
    loss = VAELoss(beta=2.0)
    assert loss(recon, target, mu, logvar).item() == pytest.approx(1.5 + 2.0 * kl / 4)
    assert loss.last_components["reconstruction"] == pytest.approx(1.5)
    assert loss.last_components["kl"] == pytest.approx(kl)
    l1 = VAELoss(beta=0.0, reconstruction="l1")
    assert l1(recon, target, mu, logvar).item() == pytest.approx(1.0)  # (1 + 1 + 2 + 0) / 4


def test_standard_normal_posterior_has_zero_kl_and_reductions():
    target = torch.zeros(2, 1, 2)
    recon = torch.tensor([[[1.0, 1.0]], [[3.0, 3.0]]])  # per-sample mse 1 and 9
    zeros = torch.zeros(2, 3)
    assert VAELoss(beta=5.0)(recon, target, zeros, zeros).item() == pytest.approx(5.0)
    assert VAELoss(reduction="sum")(recon, target, zeros, zeros).item() == pytest.approx(10.0)
    assert VAELoss(reduction="none")(recon, target, zeros, zeros).tolist() == pytest.approx([1.0, 9.0])


def test_gradient_reaches_mu_and_logvar():
    mu = torch.tensor([[0.5]], requires_grad=True)
    logvar = torch.tensor([[0.3]], requires_grad=True)
    VAELoss(beta=1.0)(torch.zeros(1, 1, 1), torch.zeros(1, 1, 1), mu, logvar).backward()
    assert mu.grad.item() == pytest.approx(0.5)  # d/dmu of mu^2 / 2
    assert logvar.grad.item() == pytest.approx(-0.5 * (1 - math.exp(0.3)))


@pytest.mark.parametrize("kwargs, message", [({"beta": -1.0}, "beta must be"), ({"beta": float("nan")}, "beta must"),
                                             ({"reconstruction": "bce"}, "reconstruction must"),
                                             ({"reduction": "max"}, "reduction must")])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        VAELoss(**kwargs)


def test_shape_errors_quote_both_shapes():
    loss = VAELoss()
    with pytest.raises(ValueError, match=r"\(1, 1, 2\).*\(1, 1, 3\)"):
        loss(torch.zeros(1, 1, 2), torch.zeros(1, 1, 3), torch.zeros(1, 2), torch.zeros(1, 2))
    with pytest.raises(ValueError, match=r"mu shape \(1, 2\) and logvar shape \(1, 3\)"):
        loss(torch.zeros(1, 1, 2), torch.zeros(1, 1, 2), torch.zeros(1, 2), torch.zeros(1, 3))
    with pytest.raises(ValueError, match="batch size 2"):
        loss(torch.zeros(1, 1, 2), torch.zeros(1, 1, 2), torch.zeros(2, 2), torch.zeros(2, 2))


@pytest.mark.parametrize("epoch, warmup, expected", [(0, 4, 0.25), (1, 4, 0.5), (3, 4, 1.0), (10, 4, 1.0),
                                                     (0, 0, 1.0)])
def test_linear_warm_up(epoch, warmup, expected):
    assert warmed_up_beta(1.0, epoch, warmup) == pytest.approx(expected)
    assert warmed_up_beta(0.5, epoch, warmup) == pytest.approx(expected / 2)


def test_warm_up_rejects_negative_values():
    with pytest.raises(ValueError, match="epoch and warmup_epochs"):
        warmed_up_beta(1.0, -1, 4)
    with pytest.raises(ValueError, match="beta must"):
        warmed_up_beta(-0.1, 0, 4)


def test_step_adapter_takes_nnunets_call_and_the_input_as_keyword():
    from types import SimpleNamespace

    from nnunet_fracture.losses.vae_loss import VAEStepLoss

    zeros = torch.zeros(1, 2)
    output = SimpleNamespace(reconstruction=torch.ones(1, 1, 2), mu=zeros, logvar=zeros)
    adapter = VAEStepLoss(VAELoss(beta=0.5))
    # reconstruction 1 against input (0, 2): squared errors 1 and 1 -> 1; KL of N(0, 1) = 0
    assert adapter(output, torch.zeros(1, 1, 2), data=torch.tensor([[[0.0, 2.0]]])).item() == pytest.approx(1.0)
    assert adapter.last_components["reconstruction"] == pytest.approx(1.0)
    adapter.beta = 2.0
    assert adapter.vae_loss.beta == 2.0
    with pytest.raises(ValueError, match="needs the encoded input as data"):
        adapter(output, None)
    with pytest.raises(ValueError, match="training output"):
        adapter(torch.zeros(1, 1, 2), None, data=torch.zeros(1, 1, 2))
    with pytest.raises(TypeError, match="wraps a VAELoss"):
        VAEStepLoss(torch.nn.MSELoss())
