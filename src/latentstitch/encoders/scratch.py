"""Small encoders trained from scratch. Each maps images to a pooled feature vector."""

from __future__ import annotations

from torch import nn


class SmallCNN(nn.Module):
    """Two conv-pool blocks and a dense layer: the fastest useful image encoder on a CPU."""

    def __init__(self, in_chans: int = 1, img_size: int = 28, channels: tuple[int, int] = (32, 64), num_features: int = 128):
        super().__init__()
        c1, c2 = channels
        self.conv = nn.Sequential(
            nn.Conv2d(in_chans, c1, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )  # fmt: skip
        side = img_size // 4
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(c2 * side * side, num_features), nn.ReLU())
        self.num_features = num_features

    def forward(self, x):
        return self.fc(self.conv(x))


class MLPEncoder(nn.Module):
    """Flatten, then ``depth`` Linear-ReLU layers of width ``hidden``; the last gives the features."""

    def __init__(self, in_chans: int = 1, img_size: int = 28, hidden: int = 256, depth: int = 2, num_features: int = 128):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_chans * img_size * img_size
        for out in [hidden] * (depth - 1) + [num_features]:
            layers += [nn.Linear(width, out), nn.ReLU()]
            width = out
        self.net = nn.Sequential(*layers)
        self.num_features = num_features

    def forward(self, x):
        return self.net(x)


class ConvEncoder(nn.Module):
    """Autoencoder half: two stride-2 convolutions, then a linear map to ``latent_dim``."""

    def __init__(self, in_chans: int = 1, img_size: int = 28, channels: tuple[int, int] = (32, 64), latent_dim: int = 64):
        super().__init__()
        c1, c2 = channels
        side = img_size // 4
        self.net = nn.Sequential(
            nn.Conv2d(in_chans, c1, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(c1, c2, 3, stride=2, padding=1), nn.ReLU(),
            nn.Flatten(), nn.Linear(c2 * side * side, latent_dim),
        )  # fmt: skip
        self.num_features = latent_dim

    def forward(self, x):
        return self.net(x)


class ConvDecoder(nn.Module):
    """Autoencoder half: the mirror of ConvEncoder, latents back to images."""

    def __init__(self, out_chans: int = 1, img_size: int = 28, channels: tuple[int, int] = (64, 32), latent_dim: int = 64):
        super().__init__()
        c1, c2 = channels
        self.side = img_size // 4
        self.c1 = c1
        self.fc = nn.Sequential(nn.Linear(latent_dim, c1 * self.side * self.side), nn.ReLU())
        self.net = nn.Sequential(
            nn.ConvTranspose2d(c1, c2, 3, stride=2, padding=1, output_padding=1), nn.ReLU(),
            nn.ConvTranspose2d(c2, out_chans, 3, stride=2, padding=1, output_padding=1),
        )  # fmt: skip

    def forward(self, z):
        return self.net(self.fc(z).view(-1, self.c1, self.side, self.side))
