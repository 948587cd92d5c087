#!/usr/bin/env python3
"""Regenerate fuzz/corpus/<target>/ from the real vectors (corpus dirs are gitignored).

main_stream / round_trip / mapped_ram: every vectors/*/stream.bin and direction 0 of every
conn0.qmtrace that starts with QEVM; return_path: direction 1 of conn0; multifd: direction 0
of conn1+ that starts with the multifd magic; structured: a few fixed byte patterns (the
model is built from arbitrary bytes, any input works). Seeds above their target's limit are
cut: main_stream and round_trip keep 64 KiB heads (whole 1 MiB streams ran at ~30 exec/s;
the small synthetic streams carry the device sections, commands and vmdesc), the others 1 MiB."""
import glob, os, shutil, struct

HERE = os.path.dirname(os.path.abspath(__file__))
VEC = os.path.join(HERE, "..", "vectors")
LIMIT = 1 << 20  # keep in step with -max_len in run-smoke.sh
SMALL = {"main_stream": 64 << 10, "round_trip": 64 << 10}
TARGETS = ("main_stream", "round_trip", "mapped_ram", "return_path", "multifd", "structured")


def trace_dirs(path):
    """Concatenated DATA payloads of direction 0 and 1 of a QMIGTRC1 trace."""
    b = open(path, "rb").read()
    assert b[:8] == b"QMIGTRC1", path
    hl = struct.unpack("<I", b[8:12])[0]
    p, out = 12 + hl, [bytearray(), bytearray()]
    while p + 14 <= len(b):
        k, d, _t, n = struct.unpack("<BBQI", b[p:p + 14])
        if k == 1:
            out[d & 1] += b[p + 14:p + 14 + n]
        p += 14 + n
    return bytes(out[0]), bytes(out[1])


def put(target, name, data):
    if not data:
        return
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    open(os.path.join(d, name), "wb").write(data[:SMALL.get(target, LIMIT)])


for t in TARGETS:
    shutil.rmtree(os.path.join(HERE, "corpus", t), ignore_errors=True)
counts = {}
for cdir in sorted(glob.glob(os.path.join(VEC, "*"))):
    name = os.path.basename(cdir)
    s = os.path.join(cdir, "stream.bin")
    if os.path.isfile(s):
        data = open(s, "rb").read()
        for t in ("main_stream", "round_trip", "mapped_ram"):
            put(t, name, data)
    for tr in sorted(glob.glob(os.path.join(cdir, "conn*.qmtrace"))):
        conn = os.path.basename(tr).split(".")[0]
        fwd, back = trace_dirs(tr)
        tag = name + "-" + conn
        if conn == "conn0":
            if fwd[:4] == b"QEVM":
                for t in ("main_stream", "round_trip"):
                    put(t, tag, fwd)
            put("return_path", tag, back)
        elif fwd[:4] == b"\x11\x22\x33\x44":
            put("multifd", tag, fwd)
for i, pat in enumerate([b"\0" * 64, bytes(range(256)) * 4, b"\xff" * 512, b"\x01\x02\x03" * 300]):
    put("structured", "pattern%d" % i, pat)
for t in TARGETS:
    d = os.path.join(HERE, "corpus", t)
    print("corpus/%s: %d seeds" % (t, len(os.listdir(d)) if os.path.isdir(d) else 0))
