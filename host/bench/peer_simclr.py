#!/usr/bin/env python3
"""The PyTorch + lightly reference for host/bench/peer_speed.sh (issue 15's protocol).

The same model and recipe as `edgeclr pretrain --encoder resnet8 --image-size 32`:
a CIFAR-stem ResNet-8 (3x3 stem, 32 channels, one basic block per stage at 32/64/128,
BatchNorm, no conv bias), lightly's SimCLR projection head 128 -> 128 (BN, ReLU) -> 128,
lightly's NTXentLoss, Adam, lightly's SimCLRTransform (random resized crop, flip, colour
jitter at strength s, grayscale 0.2, no blur), views prepared by DataLoader workers as
edgeclr's producer thread prepares them. Images/s = batch / step wall time (the step includes
waiting for the loader, as edgeclr's does), written per step as JSON lines like edgeclr's
metrics.jsonl.

Usage: peer_simclr.py CIFAR10_DIR OUT.jsonl [--batch 256] [--limit 10000] [--steps 12]
           [--threads 2] [--workers 1] [--lr 1e-3] [--temperature 0.5] [--strength 0.5]
"""
import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from lightly.loss import NTXentLoss
from lightly.models.modules import SimCLRProjectionHead
from lightly.transforms import SimCLRTransform
from PIL import Image


def load_cifar(folder: Path, limit: int) -> np.ndarray:
    """The first `limit` images of data_batch_1.bin, 2, ... as uint8 [N, 32, 32, 3]."""
    rows = []
    for f in sorted(folder.glob("data_batch_*.bin")):
        raw = np.fromfile(f, dtype=np.uint8).reshape(-1, 3073)
        rows.append(raw[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    images = np.concatenate(rows)[:limit]
    if len(images) < limit:
        raise SystemExit(f"{folder}: {len(images)} training images, fewer than --limit {limit}")
    return images


class Views(torch.utils.data.Dataset):
    def __init__(self, images: np.ndarray, transform):
        self.images, self.transform = images, transform

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.transform(Image.fromarray(self.images[i]))


class Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


class ResNet8(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 32, 3, 1, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU())
        self.blocks = nn.Sequential(Block(32, 32, 1), Block(32, 64, 2), Block(64, 128, 2))

    def forward(self, x):
        return F.adaptive_avg_pool2d(self.blocks(self.stem(x)), 1).flatten(1)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("data", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--limit", type=int, default=10000)
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--temperature", type=float, default=0.5)
    p.add_argument("--strength", type=float, default=0.5)
    a = p.parse_args()

    torch.manual_seed(1)
    torch.set_num_threads(a.threads)
    transform = SimCLRTransform(input_size=32, cj_strength=a.strength, gaussian_blur=0.0)
    loader = torch.utils.data.DataLoader(
        Views(load_cifar(a.data, a.limit), transform),
        batch_size=a.batch, shuffle=True, drop_last=True,
        num_workers=a.workers, persistent_workers=a.workers > 0,
    )
    encoder, head = ResNet8(), SimCLRProjectionHead(128, 128, 128)
    params = list(encoder.parameters()) + list(head.parameters())
    optimizer = torch.optim.Adam(params, lr=a.lr)
    criterion = NTXentLoss(temperature=a.temperature)

    step, tick = 0, time.perf_counter()
    with open(a.out, "w") as log:
        while step < a.steps:
            for (x0, x1) in loader:
                z = head(encoder(torch.cat([x0, x1])))
                loss = criterion(*z.chunk(2))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                now = time.perf_counter()
                row = {"step": step, "loss": loss.item(), "images_per_second": a.batch / (now - tick)}
                log.write(json.dumps(row) + "\n")
                log.flush()
                tick, step = now, step + 1
                if step == a.steps:
                    break


if __name__ == "__main__":
    main()
