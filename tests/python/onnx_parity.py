"""The exported ONNX files as other runtimes see them: onnx.checker (full check, with shape
inference) on every .onnx of an export folder, and onnxruntime's outputs against the
embeddings `edgeclr embed` (tract) wrote for the same images.

    python onnx_parity.py images EXPORT_DIR IMAGES_DIR        # writes N random PNGs
    python onnx_parity.py compare EXPORT_DIR IMAGES_DIR FP32_NPY INT8_NPY

`compare` prints one JSON report and exits 1 when a check fails. Run by
tests/e2e/onnx_parity.rs in the venv .ci/run makes (pinned: tests/python/requirements.txt).
"""

import json
import pathlib
import sys

import numpy as np


def write_images(export, images, n=24, seed=7):
    size = json.loads((export / "manifest.json").read_text())["input"]["size"]
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder = images / "test" / "noise"
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        # Smooth colour fields, not white noise: closer to what the encoder was trained on.
        low = rng.integers(0, 256, size=(4, 4, 3)).astype(np.uint8)
        img = Image.fromarray(low).resize((size, size), Image.BILINEAR)
        img.save(folder / f"{i:03d}.png")
    # A split folder dataset has train/ and test/; edgeclr embed reads test/.
    train = images / "train" / "noise"
    train.mkdir(parents=True, exist_ok=True)
    for f in folder.glob("*.png"):
        (train / f.name).write_bytes(f.read_bytes())


def inputs(export, images):
    from PIL import Image

    m = json.loads((export / "manifest.json").read_text())
    mean = np.array(m["input"]["normalize"]["mean"], np.float32)[:, None, None]
    std = np.array(m["input"]["normalize"]["std"], np.float32)[:, None, None]
    files = sorted((images / "test" / "noise").glob("*.png"))
    x = np.stack([np.asarray(Image.open(f).convert("RGB"), np.float32).transpose(2, 0, 1) / 255.0 for f in files])
    return ((x - mean) / std).astype(np.float32)


def run_ort(path, x, batched):
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    if batched:
        return sess.run(None, {name: x})[0]
    return np.concatenate([sess.run(None, {name: x[i : i + 1]})[0] for i in range(len(x))])


def cosines(a, b):
    a = a.reshape(len(a), -1)
    b = b.reshape(len(b), -1)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def compare(export, images, fp32_npy, int8_npy):
    import onnx

    report = {"onnx": onnx.__version__, "checker": {}, "parity": {}}
    ok = True
    for f in sorted(export.glob("*.onnx")):
        try:
            onnx.checker.check_model(str(f), full_check=True)
            report["checker"][f.name] = "ok"
        except Exception as e:  # noqa: BLE001 - the report names what failed
            report["checker"][f.name] = f"FAILED: {e}"
            ok = False
    x = inputs(export, images)
    ours = {"fp32": np.load(fp32_npy), "int8": np.load(int8_npy)}
    cases = [
        ("encoder.onnx", False, "fp32", 0.9999),
        ("encoder.batched.onnx", True, "fp32", 0.9999),
        ("encoder.int8.qdq.onnx", True, "int8", 0.99),
        ("encoder.int8.onnx", False, "int8", 0.99),
    ]
    import onnxruntime as ort

    report["onnxruntime"] = ort.__version__
    for name, batched, which, floor in cases:
        theirs = run_ort(export / name, x, batched)
        c = cosines(theirs, ours[which])
        row = {
            "vs": f"edgeclr embed ({which})",
            "images": int(len(c)),
            "min_cosine": float(c.min()),
            "max_abs_error": float(np.abs(theirs.reshape(len(c), -1) - ours[which]).max()),
            "floor": floor,
        }
        row["ok"] = bool(c.min() >= floor)
        ok &= row["ok"]
        report["parity"][name] = row
    print(json.dumps(report, indent=1))
    return ok


if __name__ == "__main__":
    cmd, export, images = sys.argv[1], pathlib.Path(sys.argv[2]), pathlib.Path(sys.argv[3])
    if cmd == "images":
        write_images(export, images)
    else:
        sys.exit(0 if compare(export, images, sys.argv[4], sys.argv[5]) else 1)
