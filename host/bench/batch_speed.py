"""Issue 17, item 4: does embedding frames in small batches pay on the board's engines?

Times `encoder.batched.onnx` (symbolic batch) with a concrete batch of 1, 2, 4 and 8, one
thread, on onnxruntime and on tract (its Python binding from PyPI, `tract==0.23.9`: the
unpatched release, whose fp32 path is the one edgeclr runs). Statistic: median over 5 rounds
of the mean per-image latency. Prints JSON lines; host/bench/export_speed.sh runs it.
    python batch_speed.py EXPORT_DIR
"""
import json, os, statistics, sys, time

import numpy as np
import onnxruntime as ort
import tract

d = sys.argv[1]
size = json.load(open(os.path.join(d, "manifest.json")))["input"]["size"]
path = os.path.join(d, "encoder.batched.onnx")
rng = np.random.default_rng(0)


def timed(run, b):
    x = rng.standard_normal((b, 3, size, size), dtype=np.float32)
    for _ in range(3):
        run(x)
    n = max(1, 16 // b)
    per = []
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(n):
            run(x)
        per.append((time.perf_counter() - t) * 1e3 / (n * b))
    return statistics.median(per)


o = ort.SessionOptions()
o.intra_op_num_threads = 1
o.inter_op_num_threads = 1
o.add_session_config_entry("session.intra_op.allow_spinning", "0")
s = ort.InferenceSession(path, o, providers=["CPUExecutionProvider"])
for b in (1, 2, 4, 8):
    ms = timed(lambda x: s.run(None, {"image": x}), b)
    print(json.dumps({"engine": "onnxruntime " + ort.__version__, "size": size, "batch": b, "ms_per_image": ms}))
for b in (1, 2, 4, 8):
    m = tract.onnx().load(path)
    m.set_input_fact(0, f"{b},3,{size},{size},f32")
    r = m.into_model().into_runnable()
    ms = timed(lambda x: r.run([x]), b)
    print(json.dumps({"engine": "tract " + tract.version(), "size": size, "batch": b, "ms_per_image": ms}))
