"""The measurement behind the default ViT's shape: small timm ViTs on Fashion-MNIST, same recipe
(AdamW lr 2e-3, weight decay 0.05, one-cycle schedule, batch 256, 5 epochs), test accuracy and
training time. About 15-20 minutes on 2 CPU cores.

    .venv/bin/python scripts/vit_variants.py [--epochs 5]
"""

import argparse
import time

import timm
import torch

from latentstitch.data import load_splits

VARIANTS = {
    "patch 4, width 64, 4 layers, mean pool": dict(
        patch_size=4, embed_dim=64, depth=4, num_heads=4, global_pool="avg", class_token=False
    ),
    "patch 7, width 128, 4 layers, mean pool (default)": dict(
        patch_size=7, embed_dim=128, depth=4, num_heads=4, global_pool="avg", class_token=False
    ),
    "patch 4, width 96, 3 layers, mean pool": dict(
        patch_size=4, embed_dim=96, depth=3, num_heads=4, global_pool="avg", class_token=False
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    data = load_splits("fashion_mnist", "data", [0.286], [0.353], 10)
    x, y, x_test, y_test = data.train.images, data.train.labels, data.test.images, data.test.labels
    steps_per_epoch = len(y) // 256
    for name, kwargs in VARIANTS.items():
        torch.manual_seed(0)
        model = timm.create_model("vit_tiny_patch16_224", img_size=28, in_chans=1, num_classes=10, **kwargs)
        optimizer = torch.optim.AdamW(model.parameters(), 2e-3, weight_decay=0.05)
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, 2e-3, total_steps=args.epochs * steps_per_epoch)
        start = time.perf_counter()
        for _ in range(args.epochs):
            model.train()
            order = torch.randperm(len(y))
            for i in range(steps_per_epoch):
                batch = order[i * 256 : (i + 1) * 256]
                loss = torch.nn.functional.cross_entropy(model(x[batch]), y[batch])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                schedule.step()
        seconds = time.perf_counter() - start
        model.eval()
        with torch.no_grad():
            accuracy = (torch.cat([model(chunk).argmax(1) for chunk in x_test.split(1000)]) == y_test).float().mean()
        print(f"{name}: test accuracy {accuracy:.4f}, training {seconds:.0f} s", flush=True)


if __name__ == "__main__":
    main()
