#!/usr/bin/env python3
"""A second labelled camera shift for the adaptation benchmark (issue 16): CIFAR-10 through a
cheap daylight dash camera, in the layout of ../shared/data/camera-night so that
`firmware/bench/adapt.sh` runs on it unchanged.

    make_domain.py CIFAR_DIR OUT_DIR [--stream-file data_batch_2.bin] [--stream-n 3000]
        [--frames-per-image 3] [--test-per-class 500] [--size 48] [--seed N]

The camera, applied in this order to an image upscaled to the frame size:
  * a wide-angle lens: barrel distortion r' = r (1 + 0.30 r²) (bilinear resampling) and
    vignetting (1 − 0.45 r²), r the distance from the centre in half-diagonals;
  * motion blur: a horizontal box of 3–7 pixels, fresh per frame (the car moves);
  * daylight auto-exposure that overshoots: gain 1.5, highlights clip at 1, gamma 0.8;
  * a warm white balance (R ×1.12, B ×0.72);
  * JPEG quality 35 with 4:2:0 chroma subsampling (a low-bitrate stream).
Unlike the night camera (dark, noisy, soft), this one is bright, clipped, smeared sideways,
colour-cast and geometrically warped: an input-level shift of another kind.

Writes OUT_DIR/stream.mjpeg (+ stream.index.csv: frame,source_file,source_record,label),
OUT_DIR/train/<class>/<record>.jpg (the stream's source images, one render each without
jitter: the labelled kNN bank) and OUT_DIR/test/<class>/<record>.jpg (class-balanced
CIFAR-10 test images). Deterministic for a seed. The stream comes from data_batch_2 by
default: the issue-3 factory model (10k images) trained on data_batch_1 only, and the night
camera's stream is data_batch_3. Needs numpy and Pillow.
"""
import argparse
import csv
import io
import os

import numpy as np
from PIL import Image

RECORD = 3073


def read_cifar(path):
    raw = np.fromfile(path, dtype=np.uint8)
    n = raw.size // RECORD
    raw = raw[: n * RECORD].reshape(n, RECORD)
    return raw[:, 1:].reshape(n, 3, 32, 32).transpose(0, 2, 3, 1), raw[:, 0].astype(int)


def balanced(labels, per_class):
    picked = []
    for c in range(10):
        picked.extend(np.nonzero(labels == c)[0][:per_class].tolist())
    return sorted(picked)


def lens(x):
    """Barrel distortion and vignetting of an H×W×3 float image."""
    h, w, _ = x.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cy, cx = (h - 1) / 2, (w - 1) / 2
    half_diag = np.hypot(cy, cx)
    dy, dx = (yy - cy) / half_diag, (xx - cx) / half_diag
    r2 = dx * dx + dy * dy
    # Output pixel at radius r shows the scene at r (1 + k r²) / (1 + k): the corners stay put,
    # the middle is magnified.
    k = 0.30
    scale = (1 + k * r2) / (1 + k)
    sy = np.clip(cy + dy * scale * half_diag, 0, h - 1)
    sx = np.clip(cx + dx * scale * half_diag, 0, w - 1)
    y0, x0 = np.floor(sy).astype(int), np.floor(sx).astype(int)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    fy, fx = (sy - y0)[..., None], (sx - x0)[..., None]
    top = x[y0, x0] * (1 - fx) + x[y0, x1] * fx
    bottom = x[y1, x0] * (1 - fx) + x[y1, x1] * fx
    warped = top * (1 - fy) + bottom * fy
    return warped * (1 - 0.45 * r2)[..., None]


def motion_blur(x, length):
    """A horizontal box blur of `length` pixels (edge pixels repeated)."""
    pad = length // 2
    padded = np.pad(x, ((0, 0), (pad, length - 1 - pad), (0, 0)), mode="edge")
    return sum(padded[:, i : i + x.shape[1]] for i in range(length)) / length


def camera(img, rng, size, jitter):
    pad = size + 4
    im = Image.fromarray(img).resize((pad, pad), Image.BICUBIC)
    dx, dy = rng.integers(0, 5, size=2) if jitter else (2, 2)
    x = np.asarray(im.crop((dx, dy, dx + size, dy + size))).astype(np.float32) / 255.0
    x = lens(x)
    x = motion_blur(x, int(rng.integers(3, 8)))
    x = np.power(np.clip(1.5 * x, 0.0, 1.0), 0.8)
    x = x * np.array([1.12, 1.0, 0.72], dtype=np.float32)
    x = np.clip(x * 255.0 + 0.5, 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(x).save(buf, format="JPEG", quality=35, subsampling=2)
    return buf.getvalue()


def write_jpeg(out_dir, split, class_name, record, data):
    folder = os.path.join(out_dir, split, class_name)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, f"{record:05d}.jpg"), "wb") as f:
        f.write(data)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("cifar_dir")
    ap.add_argument("out_dir")
    ap.add_argument("--stream-file", default="data_batch_2.bin")
    ap.add_argument("--stream-n", type=int, default=3000)
    ap.add_argument("--frames-per-image", type=int, default=3)
    ap.add_argument("--test-per-class", type=int, default=500)
    ap.add_argument("--size", type=int, default=48)
    ap.add_argument("--seed", type=int, default=20261203)
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    with open(os.path.join(a.cifar_dir, "batches.meta.txt")) as f:
        names = [line.strip() for line in f if line.strip()]
    os.makedirs(a.out_dir, exist_ok=True)

    imgs, labels = read_cifar(os.path.join(a.cifar_dir, a.stream_file))
    source = balanced(labels, a.stream_n // 10)
    frame = 0
    with open(os.path.join(a.out_dir, "stream.mjpeg"), "wb") as mjpeg, open(
        os.path.join(a.out_dir, "stream.index.csv"), "w", newline=""
    ) as index:
        rows = csv.writer(index)
        rows.writerow(["frame", "source_file", "source_record", "label"])
        for r in (source[i] for i in rng.permutation(len(source))):
            for _ in range(a.frames_per_image):
                mjpeg.write(camera(imgs[r], rng, a.size, jitter=True))
                rows.writerow([frame, a.stream_file, r, int(labels[r])])
                frame += 1
    for r in source:
        write_jpeg(a.out_dir, "train", names[labels[r]], r, camera(imgs[r], rng, a.size, False))

    test_imgs, test_labels = read_cifar(os.path.join(a.cifar_dir, "test_batch.bin"))
    for r in balanced(test_labels, a.test_per_class):
        data = camera(test_imgs[r], rng, a.size, False)
        write_jpeg(a.out_dir, "test", names[test_labels[r]], r, data)
    print(f"dashcam: {frame} stream frames from {len(source)} images, "
          f"{a.test_per_class * 10} test images in {a.out_dir}")


if __name__ == "__main__":
    main()
