"""The adversarial term shared by SycoNet's "w/o rec" ablation and RainNet's optional GAN loss."""
from __future__ import annotations

import torch


def lsgan_terms(critic: torch.nn.Module, fake: torch.Tensor, real: torch.Tensor, mask: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """LSGAN terms ``(g_adv, d_loss)`` for training generator and ``critic(image, mask)`` with one
    optimizer: ``g_adv`` sees the critic's weights detached (it moves the generator only) and
    ``d_loss`` sees ``fake`` detached (it moves the critic only); ``real`` are the positives."""
    frozen = {k: v.detach() for k, v in critic.named_parameters()}
    g_adv = (torch.func.functional_call(critic, frozen, (fake, mask)) - 1).pow(2).mean()
    d_loss = (critic(real, mask) - 1).pow(2).mean() + critic(fake.detach(), mask).pow(2).mean()
    return g_adv, d_loss
