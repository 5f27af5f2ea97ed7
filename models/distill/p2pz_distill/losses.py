"""Losses of the pix2pix objective G* = arg min_G max_D L_cGAN(G,D) + λ_L1·L_L1(G) (+ optional terms).

- adversarial: "lsgan" (least squares, Mao et al. 2017: D: ½[(D(x,y)-1)² + D(x,G(x))²], G: (D(x,G(x))-1)²)
  or "vanilla" (pix2pix's BCE with logits); averaged over the PatchGAN's patches.
- L1: mean |y - G(x)|.
- feature matching (pix2pixHD, Wang et al. 2018): Σ_layers mean |D_k(x,y) - D_k(x,G(x))| over the
  discriminator's intermediate features; a perceptual-style loss that needs no pretrained network.
- VGG perceptual (Johnson et al. 2016): Σ_k w_k · mean |φ_k(y) - φ_k(G(x))| over VGG16 relu1_2 ..
  relu5_3 features. Needs ImageNet weights, which p2pz never downloads: pass a local torchvision
  `vgg16` state dict file (`--vgg-weights`). Off by default.
"""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F


class AdversarialLoss(nn.Module):
    def __init__(self, mode: str = "lsgan"):
        super().__init__()
        if mode not in ("lsgan", "vanilla"):
            raise ValueError(f"unknown GAN loss {mode!r} (lsgan or vanilla)")
        self.mode = mode

    def forward(self, logits: torch.Tensor, real: bool) -> torch.Tensor:
        target = torch.ones_like(logits) if real else torch.zeros_like(logits)
        if self.mode == "lsgan":
            return F.mse_loss(logits, target)
        return F.binary_cross_entropy_with_logits(logits, target)


def feature_matching_loss(fake_feats: list, real_feats: list) -> torch.Tensor:
    """Σ over D's intermediate layers (all but the logits) of mean |D_k(x,y) − D_k(x,G(x))|; the real
    features are constants."""
    loss = fake_feats[0].new_zeros(())
    for f, r in zip(fake_feats[:-1], real_feats[:-1]):
        loss = loss + F.l1_loss(f, r.detach())
    return loss


# torchvision's vgg16().features layout: numbers are conv output channels, "M" a 2x2 max pool. Keys of
# a torchvision state dict ("features.<index>.weight") match the indices of this Sequential.
_VGG16 = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512]
# Indices of relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 in that Sequential.
_VGG16_TAPS = (3, 8, 15, 22, 29)


def vgg16_features() -> nn.Sequential:
    """VGG16's convolutional part, laid out as torchvision's `vgg16().features`."""
    layers: list = []
    c = 3
    for v in _VGG16:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(c, v, 3, padding=1), nn.ReLU(inplace=False)]
            c = v
    return nn.Sequential(*layers)


class VggPerceptualLoss(nn.Module):
    def __init__(self, weights_path: str, layer_weights=(1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)):
        super().__init__()
        self.features = vgg16_features()
        state = torch.load(weights_path, map_location="cpu")
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        own = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
        missing = self.features.load_state_dict(own, strict=False).missing_keys
        if missing:
            raise ValueError(f"{weights_path} is not a torchvision vgg16 state dict (missing {missing[:3]})")
        for p in self.features.parameters():
            p.requires_grad_(False)
        self.features.eval()
        self.layer_weights = layer_weights
        # ImageNet normalization of images in [0,1].
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def _taps(self, x: torch.Tensor) -> list:
        h = ((x + 1) / 2 - self.mean) / self.std
        out = []
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in _VGG16_TAPS:
                out.append(h)
        return out

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        loss = fake.new_zeros(())
        with torch.no_grad():
            real_taps = self._taps(real)
        for w, f, r in zip(self.layer_weights, self._taps(fake), real_taps):
            loss = loss + w * F.l1_loss(f, r)
        return loss
