#!/usr/bin/env python3
"""An independent safetensors reader (json + struct only): prints {name: {dtype, shape, values}}
as JSON, so tests can check that files sparta writes are standard."""
import json
import struct
import sys

SIZES = {"F32": (4, "f"), "F64": (8, "d"), "I32": (4, "i"), "U16": (2, "H")}

with open(sys.argv[1], "rb") as f:
    (n,) = struct.unpack("<Q", f.read(8))
    header = json.loads(f.read(n))
    data = f.read()
out = {}
for name, info in header.items():
    if name == "__metadata__":
        continue
    size, code = SIZES[info["dtype"]]
    begin, end = info["data_offsets"]
    count = (end - begin) // size
    values = list(struct.unpack("<%d%s" % (count, code), data[begin:end]))
    numel = 1
    for d in info["shape"]:
        numel *= d
    assert numel == count, (name, info["shape"], count)
    out[name] = {"dtype": info["dtype"], "shape": info["shape"], "values": values}
print(json.dumps(out))
