"""The safetensors layout in plain Python, shared by the PyTorch reference scripts (they must not
depend on our C++ reader, and the Debian image has no `safetensors` package).

Layout: u64 little-endian header length, a JSON header (padded with spaces to 8 bytes) mapping each
tensor name to dtype, shape and [begin, end) byte offsets into the data, then the raw data. F32 (or
BF16, rounded to nearest even) is written; F32 is read.
"""
import json
import struct

import numpy as np
import torch


def write_safetensors(path, tensors, dtype="F32"):
    """tensors: dict name -> float tensor or numpy array, written in insertion order as dtype
    ("F32" or "BF16")."""
    assert dtype in ("F32", "BF16"), dtype
    header, offset, blobs = {}, 0, []
    for name, t in tensors.items():
        array = t.detach().cpu().numpy() if torch.is_tensor(t) else t
        if dtype == "BF16":
            bits = torch.from_numpy(np.ascontiguousarray(array, dtype="<f4")).bfloat16()
            data = bits.view(torch.int16).numpy().astype("<i2").tobytes()
        else:
            data = np.ascontiguousarray(array, dtype="<f4").tobytes()
        header[name] = {"dtype": dtype, "shape": list(array.shape),
                        "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)


def read_safetensors(path):
    """Returns dict name -> float32 torch tensor (F32 files only)."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        assert meta["dtype"] == "F32", meta["dtype"]
        b, e = meta["data_offsets"]
        out[name] = torch.from_numpy(np.frombuffer(data[b:e], dtype="<f4").copy()).reshape(meta["shape"])
    return out
