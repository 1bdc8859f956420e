#!/usr/bin/env python3
"""The no-shift control of a rendered camera domain (issue 16): the same images as
DOMAIN_DIR's labelled train/ and test/ folders, at the same size and framing, without the
camera (no blur, no low light, no noise, lossless PNG). The factory model's kNN on this
folder is what it scores when there is no shift to adapt to, so knn(no-shift) - knn(domain)
is the gap adaptation can close without learning anything beyond the factory's features.

    no_shift.py CIFAR_DIR DOMAIN_DIR OUT_DIR

DOMAIN_DIR is a folder written by make_camera_domain.py (../shared/data/camera-night): its
train/<class>/<record>.jpg files are records of the stream file named in stream.index.csv,
its test/<class>/<record>.jpg records of test_batch.bin. The framing is the generator's
unjittered one (bicubic resize to size + 4, centre crop), at the size of the domain's own
test images. Needs numpy and Pillow.
"""
import argparse
import csv
import os

import numpy as np
from PIL import Image

REC = 3073


def read_cifar(path):
    raw = np.fromfile(path, dtype=np.uint8)
    n = raw.size // REC
    raw = raw[: n * REC].reshape(n, REC)
    return raw[:, 1:].reshape(n, 3, 32, 32).transpose(0, 2, 3, 1)


def frame(img, size):
    pad = size + 4
    return Image.fromarray(img).resize((pad, pad), Image.BICUBIC).crop((2, 2, 2 + size, 2 + size))


def render(images, split_dir, out_dir, size):
    count = 0
    for cls in sorted(os.listdir(split_dir)):
        os.makedirs(os.path.join(out_dir, cls), exist_ok=True)
        for name in sorted(os.listdir(os.path.join(split_dir, cls))):
            record = int(os.path.splitext(name)[0])
            frame(images[record], size).save(os.path.join(out_dir, cls, f"{record:05d}.png"))
            count += 1
    return count


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("cifar_dir")
    ap.add_argument("domain_dir")
    ap.add_argument("out_dir")
    a = ap.parse_args()
    test_dir = os.path.join(a.domain_dir, "test")
    first_class = sorted(os.listdir(test_dir))[0]
    first_image = sorted(os.listdir(os.path.join(test_dir, first_class)))[0]
    with Image.open(os.path.join(test_dir, first_class, first_image)) as im:
        if im.width != im.height:
            raise SystemExit(f"{a.domain_dir}: test images are {im.width}x{im.height}, expected square")
        size = im.width
    with open(os.path.join(a.domain_dir, "stream.index.csv")) as f:
        stream_files = {row["source_file"] for row in csv.DictReader(f)}
    if len(stream_files) != 1:
        raise SystemExit(f"{a.domain_dir}: expected one stream source file, found {stream_files}")
    train = read_cifar(os.path.join(a.cifar_dir, stream_files.pop()))
    test = read_cifar(os.path.join(a.cifar_dir, "test_batch.bin"))
    n_train = render(train, os.path.join(a.domain_dir, "train"), os.path.join(a.out_dir, "train"), size)
    n_test = render(test, os.path.join(a.domain_dir, "test"), os.path.join(a.out_dir, "test"), size)
    print(f"no-shift control: {n_train} train, {n_test} test images in {a.out_dir}")


if __name__ == "__main__":
    main()
