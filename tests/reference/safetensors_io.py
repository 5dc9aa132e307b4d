"""The safetensors layout in plain Python, shared by the PyTorch reference scripts (they must not
depend on our C++ reader, and the Debian image has no `safetensors` package).

Layout: u64 little-endian header length, a JSON header (padded with spaces to 8 bytes) mapping each
tensor name to dtype, shape and [begin, end) byte offsets into the data, then the raw data. Only F32
is written and read here.
"""
import json
import struct

import numpy as np
import torch


def write_safetensors(path, tensors):
    """tensors: dict name -> float tensor or numpy array, written in insertion order as F32."""
    header, offset, blobs = {}, 0, []
    for name, t in tensors.items():
        array = t.detach().cpu().numpy() if torch.is_tensor(t) else t
        data = np.ascontiguousarray(array, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(array.shape),
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
