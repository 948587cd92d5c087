#!/usr/bin/env python3
"""Corruption experiments: targeted mutations of real vectors, each loaded into a real
QEMU destination of the base vector's version; QEMU's accept/reject and error text are
recorded as a case (vectors/corrupt-*/case.json).

The mutated stream is NOT committed: case.json carries `derive` = the base case and the
byte edits, and readers (qmig's case loader, this script) rebuild it from the base's
stream.bin. `harness/tests/corruption.rs` checks that qmig's predicted destination
outcome agrees with every experiment.

    python3 vectors/corrupt.py [--only NAME] [--list]
"""
import argparse, json, os, shutil, struct, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import capture as C  # noqa: E402

QMIG = os.path.join(REPO, "target", "release", "qmig")


def dump(path, pages=False):
    out = subprocess.run([QMIG, "inspect", "--json"] + (["--pages"] if pages else []) + [path], capture_output=True, check=True).stdout
    return json.loads(out)["channels"][0]["records"]


def find(recs, pred, nth=0):
    hits = [r for r in recs if pred(r)]
    return hits[nth] if len(hits) > nth else None


def rtype(t):
    return lambda r: r["record"]["type"] == t


def section_named(name, ty=None):
    def p(r):
        v = r["record"].get("value", {})
        return r["record"]["type"] == "section-header" and v.get("idstr") == name and (ty is None or v.get("ty") == ty)
    return p


def edits_for(name, data, recs, recs_pages):
    """The byte edits of experiment `name` against base bytes `data`: list of ops."""
    cfg = find(recs, rtype("configuration"))
    ram_start = find(recs, section_named("ram", 1))
    footer = find(recs, rtype("footer"))
    page = find(recs, lambda r: r["record"]["type"] == "ram-pages" and r["record"]["value"]["normal"] > 0)
    eof = find(recs, rtype("eof"))
    vmd = find(recs, rtype("vm-desc"))
    timer = find(recs, section_named("timer"))
    glob = find(recs, section_named("globalstate"))
    mem = find(recs, lambda r: r["record"]["type"] == "ram" and r["record"]["value"]["kind"] == "mem-size")
    n = len(data)
    E = {
        "truncate-half": [{"op": "truncate", "len": n // 2}],
        "truncate-before-eof": [{"op": "truncate", "len": eof["offset"]}],
        "truncate-in-vmdesc": [{"op": "truncate", "len": vmd["offset"] + 100}],
        "no-vmdesc": [{"op": "truncate", "len": vmd["offset"]}],
        "bad-magic": [{"op": "set", "offset": 0, "hex": "51455658"}],
        "version-2": [{"op": "set", "offset": 4, "hex": "00000002"}],
        "no-configuration": [{"op": "delete", "offset": cfg["offset"], "len": cfg["len"]}],
        "machine-renamed": [{"op": "set", "offset": cfg["offset"] + 5, "hex": "71"}],  # 'p' -> 'q'
        "cap-mapped-ram-injected": [
            {"op": "insert", "offset": cfg["offset"] + cfg["len"],
             "hex": "05" + "1a" + b"configuration/capabilities".hex() + "00000001" + "00000001" + "0a" + b"mapped-ram".hex()}],
        "footer-id-wrong": [{"op": "set", "offset": footer["offset"] + 4, "hex": "%02x" % (data[footer["offset"] + 4] ^ 0x40)}],
        "footer-missing": [{"op": "delete", "offset": footer["offset"], "len": 5}],
        "unknown-section-type": [{"op": "set", "offset": ram_start["offset"], "hex": "42"}],
        "ram-version-3": [{"op": "set", "offset": ram_start["offset"] + ram_start["len"] - 1, "hex": "03"}],
        "ram-unknown-flag": [{"op": "set", "offset": page["offset"] + 6, "hex": "%02x" % (data[page["offset"] + 6] | 0x04)}],
        "zero-page-fill-1": None,  # filled below
        "mem-size-total-off": [{"op": "set", "offset": mem["offset"] + 4, "hex": "%02x" % (data[mem["offset"] + 4] ^ 0x01)}],
        "timer-body-truncated": [{"op": "delete", "offset": timer["offset"] + timer["len"], "len": 8}],
        "globalstate-idstr-unknown": [{"op": "set", "offset": glob["offset"] + 6, "hex": "47"}],  # 'g' -> 'G'
        "vmdesc-garbage": [{"op": "set", "offset": vmd["offset"] + 5, "hex": "5b5b5b5b"}],
        "trailing-garbage": [{"op": "insert", "offset": n, "hex": "deadbeef"}],
    }
    # a zero page: the first ZERO record qmig lists (its fill byte is its last byte)
    z = find(recs_pages, lambda r: r["record"]["type"] == "ram" and r["record"]["value"]["kind"] == "zero")
    E["zero-page-fill-1"] = [{"op": "set", "offset": z["offset"] + z["len"] - 1, "hex": "01"}] if z else None
    return E[name]


def apply(data, ops):
    b = bytearray(data)
    for o in ops:
        if o["op"] == "set":
            v = bytes.fromhex(o["hex"])
            b[o["offset"]:o["offset"] + len(v)] = v
        elif o["op"] == "truncate":
            del b[o["len"]:]
        elif o["op"] == "delete":
            del b[o["offset"]:o["offset"] + o["len"]]
        elif o["op"] == "insert":
            b[o["offset"]:o["offset"]] = bytes.fromhex(o["hex"])
    return bytes(b)


EXPERIMENTS = ["truncate-half", "truncate-before-eof", "truncate-in-vmdesc", "no-vmdesc", "bad-magic", "version-2",
               "no-configuration", "machine-renamed", "cap-mapped-ram-injected", "footer-id-wrong", "footer-missing",
               "unknown-section-type", "ram-version-3", "ram-unknown-flag", "zero-page-fill-1", "mem-size-total-off",
               "timer-body-truncated", "globalstate-idstr-unknown", "vmdesc-garbage", "trailing-garbage"]
BASES = ["file100-precopy", "file72-precopy"]


def run_experiment(tmp, assets, name, base, meta, data, ops, desc, src_meta, dst_meta):
    """Load the mutated bytes into a real destination and write the case directory."""
    mutated = apply(data, ops)
    work = tempfile.mkdtemp(dir=tmp)
    path = os.path.join(work, "stream.bin")
    open(path, "wb").write(mutated)
    dd = dict(dst_meta)
    sd = C.side(dd["qemu"], dd["machine"], dd.get("caps", ()), dd.get("params"))
    dst = C.Qemu("dst", sd, assets, work, incoming=True)
    dst.setup_migration()
    uri = "exec:cat < %s" % path if dd["qemu"] == "7.2" else "file:%s" % path
    dst.q.cmd("migrate-incoming", uri=uri)
    st = dst.wait({"completed", "failed"}, 30)
    if st == "completed":
        time.sleep(0.3)
    res = dst.finish(killed_by_harness=st not in ("completed", "failed", None))
    res.pop("argv", None)
    cj = {
        "name": name, "kind": "file", "origin": "qemu",
        "desc": desc,
        "expect": "what the real destination loader does with these bytes",
        "outcome": "dst %s%s" % (res["final_status"], (": " + " / ".join(res["stderr"][:2])) if res["stderr"] else ""),
        "src": src_meta | {"final_status": None, "stderr": [], "exit_status": None},
        "dst": res,
        "derive": {"from": base, "edits": ops},
    }
    cj["src"].pop("argv", None)
    out = os.path.join(HERE, name)
    os.makedirs(out, exist_ok=True)
    json.dump(cj, open(os.path.join(out, "case.json"), "w"), indent=2)
    print("%-44s %s" % (name, cj["outcome"][:150]))


def fixed_ram_rename(data):
    """Spell the configuration's capability `mapped-ram` as the RFC's `fixed-ram` (one byte
    shorter: the length byte, the name, and one byte less)."""
    at = data.index(b"\x0amapped-ram")
    return [{"op": "set", "offset": at, "hex": "09" + b"fixed-ram".hex()},
            {"op": "delete", "offset": at + 10, "len": 1}]


def initial_data_handshake(data):
    """Insert the precopy-initial-data RFC v1 handshake after the configuration section: the
    general MIG_CMD_INITIAL_DATA_ENABLE (command 11, 268 bytes) and one per-device advise."""
    assert data[8] == 7, "configuration section expected at offset 8"
    end = 13 + int.from_bytes(data[9:13], "big")
    assert data[end] != 5, "base without configuration subsections"

    def cmd(general, idstr):
        info = bytes([general]) + bytes(7) + idstr.ljust(256, b"\0") + (0).to_bytes(4, "little")
        return bytes([8]) + (11).to_bytes(2, "big") + len(info).to_bytes(2, "big") + info
    return [{"op": "insert", "offset": end, "hex": (cmd(1, b"") + cmd(0, b"0000:00:05.0/vfio")).hex()}]


# Dialect experiments: a real stream re-spelled as an RFC dialect's, loaded by a real merged
# destination (name, base case, edits, description, src override, dst override).
DIALECT_EXPERIMENTS = [
    ("corrupt-file100-mapped-ram-as-fixed-ram", "file100-mapped-ram", fixed_ram_rename,
     "fixed-ram RFC (v2+, 28-byte header) source on one side: the mapped-ram file with its capability spelled "
     "fixed-ram, loaded by a real merged QEMU 10.0 destination without mapped-ram (the name is one byte shorter, so "
     "the absolute offsets after it are off by one: the stream also misparses at the second block, which QEMU never reaches)",
     {"qemu": "rfc:fixed-ram", "caps": ["fixed-ram"]}, {"caps": []}),
    ("corrupt-file100-mapped-ram-as-fixed-ram-dst-mapped-ram", "file100-mapped-ram", fixed_ram_rename,
     "fixed-ram RFC source against a merged QEMU 10.0 destination with mapped-ram on (the same layout, another name)",
     {"qemu": "rfc:fixed-ram", "caps": ["fixed-ram"]}, {}),
    ("corrupt-file72-as-rfc-initial-data", "file72-precopy", initial_data_handshake,
     "precopy-initial-data RFC v1 source: the 7.2 stream with the RFC's INITIAL_DATA_ENABLE handshake (command 11, "
     "268 bytes, general + per-device) after its configuration, loaded by a real merged QEMU 7.2",
     {"qemu": "rfc:precopy-initial-data", "caps": ["precopy-initial-data"]}, {}),
    ("corrupt-file72-as-rfc-initial-data-to-100", "file72-precopy", initial_data_handshake,
     "the same RFC handshake loaded by a real merged QEMU 10.0 (machine pc-i440fx-7.2), where command 11 is "
     "SWITCHOVER_START with length 0",
     {"qemu": "rfc:precopy-initial-data", "caps": ["precopy-initial-data"]},
     {"qemu": "10.0", "machine": "pc-i440fx-7.2", "caps": []}),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", action="append", default=[])
    ap.add_argument("--list", action="store_true")
    a = ap.parse_args()
    if a.list:
        for b in BASES:
            for e in EXPERIMENTS:
                print("corrupt-%s-%s" % (b.replace("-precopy", ""), e))
        for d in DIALECT_EXPERIMENTS:
            print(d[0])
        return
    tmp = tempfile.mkdtemp(prefix="qmig-corrupt-", dir="/dev/shm")
    try:
        assets = C.Assets(tmp)
        for base in BASES:
            bdir = os.path.join(HERE, base)
            meta = json.load(open(os.path.join(bdir, "case.json")))
            data = open(os.path.join(bdir, "stream.bin"), "rb").read()
            recs = dump(os.path.join(bdir, "stream.bin"))
            recs_pages = dump(os.path.join(bdir, "stream.bin"), pages=True)
            for e in EXPERIMENTS:
                name = "corrupt-%s-%s" % (base.replace("-precopy", ""), e)
                if a.only and name not in a.only:
                    continue
                ops = edits_for(e, data, recs, recs_pages)
                if ops is None:
                    print("%-44s no target in %s" % (name, base))
                    continue
                desc = "corruption experiment %s of %s, loaded by a real QEMU %s destination" % (e, base, meta["dst"]["qemu"])
                run_experiment(tmp, assets, name, base, meta, data, ops, desc, meta["src"], meta["dst"])
        for name, base, edits, desc, src_over, dst_over in DIALECT_EXPERIMENTS:
            if a.only and name not in a.only:
                continue
            bdir = os.path.join(HERE, base)
            meta = json.load(open(os.path.join(bdir, "case.json")))
            data = open(os.path.join(bdir, "stream.bin"), "rb").read()
            run_experiment(tmp, assets, name, base, meta, data, edits(data), desc,
                           dict(meta["src"], **src_over), dict(meta["dst"], **dst_over))
    finally:
        C._kill_all()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
