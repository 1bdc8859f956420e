"""onnxruntime half of host/bench/export_speed.sh.

Checks every exported ONNX file with onnx.checker, compares tract's fp32 embeddings of 256
real CIFAR-10 test images (from `edgeclr embed`) with onnxruntime's on the same file, times
onnxruntime on the same files and statistic as models/benches/embed_speed.rs (median over
rounds of the mean per-image latency, batch 1), and prints tract/onnxruntime ratios.
"""
import argparse, json, os, statistics, threading, time

import numpy as np
import onnx
import onnxruntime as ort

p = argparse.ArgumentParser()
p.add_argument("dirs", nargs="+")
p.add_argument("--data", required=True)
p.add_argument("--tract-npy", required=True)
p.add_argument("--out", required=True)
p.add_argument("--rounds", type=int, default=7)
p.add_argument("--images", type=int, default=64)
a = p.parse_args()
cores = os.cpu_count()


def session(path, threads):
    o = ort.SessionOptions()
    o.intra_op_num_threads = threads
    o.inter_op_num_threads = 1
    o.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads == 1:
        o.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(path, o, providers=["CPUExecutionProvider"])


# 1. onnx.checker on every file.
checked = {}
for d in a.dirs:
    for f in sorted(os.listdir(d)):
        if f.endswith(".onnx"):
            onnx.checker.check_model(onnx.load(os.path.join(d, f)), full_check=True)
            checked[os.path.join(d, f)] = "ok"

# 2. Parity: tract (edgeclr embed) vs onnxruntime on the first 256 CIFAR-10 test images.
m32 = json.load(open(os.path.join(a.dirs[0], "manifest.json")))
size = m32["input"]["size"]
tract = np.load(a.tract_npy)
n = tract.shape[0]
raw = np.fromfile(os.path.join(a.data, "test_batch.bin"), dtype=np.uint8).reshape(-1, 3073)[:n]
x = raw[:, 1:].reshape(n, 3, 32, 32).astype(np.float32) / 255.0
norm = m32["input"]["normalize"]
x = (x - np.array(norm["mean"], np.float32)[None, :, None, None]) / np.array(norm["std"], np.float32)[None, :, None, None]
s = session(os.path.join(a.dirs[0], "encoder.onnx"), 1)
ref = np.concatenate([s.run(None, {"image": x[i:i + 1]})[0] for i in range(n)])
cos = (tract * ref).sum(1) / (np.linalg.norm(tract, axis=1) * np.linalg.norm(ref, axis=1))
parity = {"images": int(n), "size": size, "min_cosine": float(cos.min()),
          "max_abs_error": float(np.abs(tract - ref).max()), "checker": checked}
print(json.dumps({"parity_tract_vs_onnxruntime": parity}))

# 3. Speed.
rows = []
rng = np.random.default_rng(0)
for d in a.dirs:
    m = json.load(open(os.path.join(d, "manifest.json")))
    sz = m["input"]["size"]
    inputs = [rng.standard_normal((1, 3, sz, sz), dtype=np.float32) for _ in range(a.images)]
    for f in ["encoder.onnx", "encoder.int8.onnx", "encoder.int8.qdq.onnx"]:
        path = os.path.join(d, f)
        if not os.path.exists(path):
            continue
        for threads in (1, cores):
            s = session(path, threads)
            for x in inputs[:4]:
                s.run(None, {"image": x})
            per = []
            for _ in range(a.rounds):
                t = time.perf_counter()
                for x in inputs:
                    s.run(None, {"image": x})
                per.append((time.perf_counter() - t) * 1e3 / a.images)
            rows.append({"engine": "onnxruntime", "mode": "intra-op", "file": f, "size": sz,
                         "threads": threads, "ms_per_image": statistics.median(per)})
        # All cores the tract way: one single-threaded session per core.
        sessions = [session(path, 1) for _ in range(cores)]
        per = []
        for _ in range(a.rounds):
            chunks = [inputs[i::cores] for i in range(cores)]
            t = time.perf_counter()
            ths = [threading.Thread(target=lambda s, c: [s.run(None, {"image": x}) for x in c], args=(s, c))
                   for s, c in zip(sessions, chunks)]
            [th.start() for th in ths]
            [th.join() for th in ths]
            per.append((time.perf_counter() - t) * 1e3 / a.images)
        rows.append({"engine": "onnxruntime", "mode": "session-per-core", "file": f, "size": sz,
                     "threads": cores, "ms_per_image": statistics.median(per)})
for r in rows:
    r["images_per_s"] = 1e3 / r["ms_per_image"]
    print(json.dumps(r))

rust_rows = [json.loads(l) for l in open(os.path.join(a.out, "tract.jsonl")) if l.startswith("{")]
tract_rows = [r for r in rust_rows if r["engine"] == "tract"]
# Our OrtEmbedder (Rust, the same libonnxruntime via ORT_DYLIB_PATH): one session single
# threaded, or one single-threaded session per core, as Python's "session-per-core" mode.
ours_ort = [r for r in rust_rows if r["engine"] == "onnxruntime"]


def ort_best(size, threads, f):
    c = [r for r in rows if r["size"] == size and r["threads"] == threads and r["file"] == f]
    return min(c, key=lambda r: r["ms_per_image"]) if c else None


table = []
print()
print(f"| input | threads | tract file | tract ms/img | onnxruntime fp32 ms/img | tract throughput ÷ onnxruntime fp32 (Python, separate) | tract ÷ onnxruntime fp32 (interleaved, in-process) | onnxruntime int8 (QDQ) ms/img |")
print("|---|---|---|---|---|---|---|---|")
for t in tract_rows:
    of = ort_best(t["size"], t["threads"], "encoder.onnx")
    oq = ort_best(t["size"], t["threads"], "encoder.int8.qdq.onnx")
    ratio = of["ms_per_image"] / t["ms_per_image"]
    table.append({**t, "ort_fp32_ms": of["ms_per_image"], "ort_fp32_mode": of["mode"],
                  "ort_int8_qdq_ms": oq["ms_per_image"] if oq else None, "throughput_vs_ort_fp32": ratio})
    inproc = t.get("vs_onnxruntime_fp32")
    inproc = f"**{inproc:.2f}×**" if inproc is not None else "—"
    print(f"| {t['size']}×{t['size']} | {t['threads']} | {t['file']} | {t['ms_per_image']:.3f} | "
          f"{of['ms_per_image']:.3f} ({of['mode']}) | {ratio:.2f}× | {inproc} | {oq['ms_per_image'] if oq else float('nan'):.3f} |")

embedder = []
if ours_ort:
    print()
    print("| input | threads | file | edgeclr onnxruntime embedder ms/img | onnxruntime from Python ms/img | embedder throughput ÷ Python's |")
    print("|---|---|---|---|---|---|")
for o in ours_ort:
    mode = "intra-op" if o["threads"] == 1 else "session-per-core"
    py = [r for r in rows if r["size"] == o["size"] and r["threads"] == o["threads"]
          and r["file"] == o["file"] and r["mode"] == mode]
    if not py:
        continue
    ratio = py[0]["ms_per_image"] / o["ms_per_image"]
    embedder.append({**o, "python_ms": py[0]["ms_per_image"], "python_mode": mode, "throughput_vs_python": ratio})
    print(f"| {o['size']}×{o['size']} | {o['threads']} | {o['file']} | {o['ms_per_image']:.3f} | "
          f"{py[0]['ms_per_image']:.3f} ({mode}) | **{ratio:.2f}×** |")
json.dump({"parity": parity, "onnxruntime": rows, "tract": tract_rows, "table": table, "cores": cores,
           "ort_embedder": embedder,
           "onnxruntime_version": ort.__version__}, open(os.path.join(a.out, "speed.json"), "w"), indent=1)
