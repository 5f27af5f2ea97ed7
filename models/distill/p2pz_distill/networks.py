"""Generators and discriminator of the pix2pix family (Isola et al. 2017; Johnson et al. 2016).

Image tensors are [N,3,H,W] in [-1,1]. Normalization is InstanceNorm throughout (pix2pix's BatchNorm
at batch 1 is the same thing, and it exports identically for training and inference).

- ResnetGenerator: c7s1-w, d2w, d4w, R4w x blocks, u2w, uw, c7s1-3, tanh (CycleGAN's resnet_9blocks
  with blocks=9). H and W must be multiples of 4.
- UnetGenerator: `depth` stride-2 encoder convs (4x4) with skip connections to the mirrored decoder
  (pix2pix's unet_256 is depth 8). H and W must be multiples of 2**depth.
- PatchDiscriminator: conditional 70x70 PatchGAN on concat(x, y) [N,6,H,W] -> logits [N,1,H/8-2,W/8-2]
  (layers=3); returns every layer's features too, for the feature-matching loss.
"""
from __future__ import annotations

import torch
from torch import nn


def _norm(channels: int) -> nn.Module:
    return nn.InstanceNorm2d(channels, affine=True)


class ResnetBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), _norm(channels), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), _norm(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    def __init__(self, width: int = 64, blocks: int = 9):
        super().__init__()
        w = width
        layers = [nn.ReflectionPad2d(3), nn.Conv2d(3, w, 7), _norm(w), nn.ReLU(True)]
        for m in (1, 2):  # two stride-2 downsamplings: w -> 2w -> 4w
            layers += [nn.Conv2d(w * m, w * m * 2, 3, stride=2, padding=1), _norm(w * m * 2), nn.ReLU(True)]
        layers += [ResnetBlock(w * 4) for _ in range(blocks)]
        for m in (4, 2):
            layers += [
                nn.ConvTranspose2d(w * m, w * m // 2, 3, stride=2, padding=1, output_padding=1),
                _norm(w * m // 2), nn.ReLU(True),
            ]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(w, 3, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)
        self.multiple = 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class UnetGenerator(nn.Module):
    def __init__(self, width: int = 64, depth: int = 8, dropout: bool = True):
        super().__init__()
        if depth < 2:
            raise ValueError("U-Net depth must be at least 2")
        ch = [width * min(2**i, 8) for i in range(depth)]  # encoder output channels per level
        self.down = nn.ModuleList()
        for i in range(depth):
            cin = 3 if i == 0 else ch[i - 1]
            layers = [] if i == 0 else [nn.LeakyReLU(0.2, True)]
            layers.append(nn.Conv2d(cin, ch[i], 4, stride=2, padding=1))
            if 0 < i < depth - 1:  # no norm on the outermost and innermost levels (as pix2pix)
                layers.append(_norm(ch[i]))
            self.down.append(nn.Sequential(*layers))
        self.up = nn.ModuleList()
        for i in reversed(range(depth)):
            cin = ch[i] if i == depth - 1 else ch[i] * 2  # innermost has no skip yet
            if i == 0:
                self.up.append(nn.Sequential(nn.ReLU(True), nn.ConvTranspose2d(cin, 3, 4, stride=2, padding=1), nn.Tanh()))
            else:
                layers = [nn.ReLU(True), nn.ConvTranspose2d(cin, ch[i - 1], 4, stride=2, padding=1), _norm(ch[i - 1])]
                if dropout and depth - 4 <= i <= depth - 2 and i >= 4:
                    layers.append(nn.Dropout(0.5))  # pix2pix: the 8w->8w decoders next to the innermost
                self.up.append(nn.Sequential(*layers))
        self.multiple = 2**depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for layer in self.down:
            x = layer(x)
            skips.append(x)
        skips.pop()  # the innermost feature goes straight up
        for layer in self.up:
            x = layer(x)
            if skips:
                x = torch.cat([x, skips.pop()], dim=1)
        return x


class PatchDiscriminator(nn.Module):
    def __init__(self, width: int = 64, layers: int = 3):
        super().__init__()
        blocks = [nn.Sequential(nn.Conv2d(6, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True))]
        c = width
        for i in range(1, layers + 1):
            cout = width * min(2**i, 8)
            stride = 2 if i < layers else 1
            blocks.append(nn.Sequential(nn.Conv2d(c, cout, 4, stride=stride, padding=1), _norm(cout), nn.LeakyReLU(0.2, True)))
            c = cout
        blocks.append(nn.Sequential(nn.Conv2d(c, 1, 4, stride=1, padding=1)))
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> list:
        """Features of every block; the last is the patch logits."""
        h = torch.cat([x, y], dim=1)
        feats = []
        for block in self.blocks:
            h = block(h)
            feats.append(h)
        return feats


def build_generator(arch: str, width: int, blocks: int, depth: int, dropout: bool = True) -> nn.Module:
    if arch == "resnet":
        return ResnetGenerator(width, blocks)
    if arch == "unet":
        return UnetGenerator(width, depth, dropout)
    raise ValueError(f"unknown generator architecture {arch!r} (resnet or unet)")


def init_weights(module: nn.Module, std: float = 0.02) -> None:
    """pix2pix's init: conv weights N(0, 0.02), norm scales N(1, 0.02), biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.InstanceNorm2d) and m.affine:
            nn.init.normal_(m.weight, 1.0, std)
            nn.init.zeros_(m.bias)
