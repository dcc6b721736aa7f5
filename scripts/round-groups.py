#!/usr/bin/env python3
"""Which tensors' q4 rounding costs the most: an f32 model folder with some tensors replaced by
their values in a q4 (or q8) folder of the same checkpoint, for `native bench agreement`.

    scripts/round-groups.py F32_DIR QUANT_DIR OUT_DIR PREFIX...

Every quantized tensor of QUANT_DIR whose name starts with one of the PREFIXes is decoded
(GGML Q4_0/Q8_0 blocks: an f16 scale, then 32 values) and written over the f32 tensor of the
same name; the manifest's checksum of model.safetensors is updated so the loader accepts the
folder. Standard library only.
"""
import hashlib
import json
import os
import shutil
import struct
import sys


def read_safetensors(path):
    data = open(path, "rb").read()
    (n,) = struct.unpack("<Q", data[:8])
    return bytearray(data), json.loads(data[8 : 8 + n]), 8 + n


def decode_blocks(raw, scheme):
    """The values of GGML Q4_0 or Q8_0 blocks, in order."""
    out = []
    step = 18 if scheme == "q4_0" else 34
    for i in range(0, len(raw), step):
        (d,) = struct.unpack("<e", raw[i : i + 2])
        q = raw[i + 2 : i + step]
        if scheme == "q4_0":  # low nibbles hold values 0..15, high nibbles 16..31
            out += [((x & 15) - 8) * d for x in q] + [((x >> 4) - 8) * d for x in q]
        else:
            out += [struct.unpack("<b", bytes([x]))[0] * d for x in q]
    return out


def main():
    if len(sys.argv) < 5:
        sys.exit(__doc__)
    f32_dir, quant_dir, out_dir, prefixes = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
    f32, f32_header, f32_start = read_safetensors(f32_dir + "/model.safetensors")
    quant, quant_header, quant_start = read_safetensors(quant_dir + "/model.safetensors")
    replaced = 0
    for t in json.load(open(quant_dir + "/manifest.json"))["tensors"]:
        if t["scheme"] not in ("q4_0", "q8_0") or not t["name"].startswith(tuple(prefixes)):
            continue
        begin, end = quant_header[t["stored_as"]]["data_offsets"]
        values = decode_blocks(quant[quant_start + begin : quant_start + end], t["scheme"])
        if t["transposed"]:  # stored as the state dict's transpose (GPT-2 Conv1D)
            rows, cols = t["shape"][1], t["shape"][0]
            values = [values[r * cols + c] for c in range(cols) for r in range(rows)]
        begin, end = f32_header[t["name"]]["data_offsets"]
        if end - begin != 4 * len(values):
            sys.exit(f"{t['name']}: {len(values)} values do not fit {end - begin} bytes")
        f32[f32_start + begin : f32_start + end] = struct.pack(f"<{len(values)}f", *values)
        replaced += 1
    # Built beside the target and renamed, so a crash never leaves a half-written folder.
    part = out_dir.rstrip("/") + ".part"
    shutil.rmtree(part, ignore_errors=True)
    shutil.copytree(f32_dir, part)
    with open(part + "/model.safetensors", "wb") as f:
        f.write(f32)
    with open(part + "/manifest.json") as f:
        manifest = json.load(f)
    for entry in manifest["files"]:
        if entry["name"] == "model.safetensors":
            entry["sha256"] = hashlib.sha256(f32).hexdigest()
    with open(part + "/manifest.json", "w") as f:
        json.dump(manifest, f)
    shutil.rmtree(out_dir, ignore_errors=True)
    os.rename(part, out_dir)
    print(f"{out_dir}: {replaced} tensors rounded")


if __name__ == "__main__":
    try:
        main()
    except (OSError, KeyError, ValueError, struct.error) as e:
        # A missing folder, a tensor absent from the f32 folder, a damaged file: one line, no trace.
        sys.exit(f"round-groups: {type(e).__name__}: {e}")
