#!/usr/bin/env python3
"""Loopback migration timing, one run each (issue: Live peer):
a QEMU 10.0 guest with N MiB of random RAM migrated 10.0 -> 10.0 directly, through
`qmig record`, and into `qmig listen`; total time from `migrate` to `completed`.

    python3 bench/live.py [--mib 512]
"""
import argparse, os, shutil, socket, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "vectors", "tools"))
from qmp import QMP  # noqa: E402

QEMU = os.environ.get("QEMU100", "/opt/qmig-qemu/qemu-10.0/usr/bin/qemu-system-x86_64")
PFX = os.path.dirname(os.path.dirname(QEMU))
QMIG = os.path.join(REPO, "target", "release", "qmig")


def port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def vm(work, name, ram, mib, incoming=None):
    sock = os.path.join(work, name + ".qmp")
    argv = [QEMU, "-L", PFX + "/share/qemu", "-L", PFX + "/share/seabios", "-machine", "pc-q35-10.0,memory-backend=ram0",
            "-accel", "tcg", "-m", "%dM" % mib, "-object", "memory-backend-file,id=ram0,size=%dM,mem-path=%s,share=off" % (mib, ram),
            "-nographic", "-nodefaults", "-display", "none", "-qmp", "unix:%s,server=on,wait=off" % sock]
    if incoming:
        argv += ["-incoming", incoming]
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return p, QMP(sock, timeout=120)


def migrate(q, uri):
    t = time.monotonic()
    q.cmd("migrate", uri=uri)
    st = q.wait_migration(timeout=600)
    return st, time.monotonic() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=512)
    a = ap.parse_args()
    subprocess.run("cd %s && cargo build --release -q -p qmig-harness" % REPO, shell=True, check=True)
    work = tempfile.mkdtemp(prefix="qmig-live-bench-")
    ram = "/dev/shm/qmig-live-bench-ram"
    subprocess.run("head -c %d /dev/urandom > %s" % (a.mib << 20, ram), shell=True, check=True)
    dram = ram + ".dst"
    shutil.copy(ram, dram)
    res = []
    try:
        # direct
        pd = port()
        d, dq = vm(work, "dst1", dram, a.mib, "tcp:127.0.0.1:%d" % pd)
        s, sq = vm(work, "src1", ram, a.mib)
        res.append(("direct 10.0 -> 10.0",) + migrate(sq, "tcp:127.0.0.1:%d" % pd))
        for p in (s, d):
            p.kill(); p.wait()
        # through qmig record
        pd, pp = port(), port()
        d, dq = vm(work, "dst2", dram, a.mib, "tcp:127.0.0.1:%d" % pd)
        rec = subprocess.Popen([QMIG, "record", "--listen", "127.0.0.1:%d" % pp, "--upstream", "127.0.0.1:%d" % pd, "--out", os.path.join(work, "rec"), "--max-conns", "1"], stdout=subprocess.PIPE)
        rec.stdout.readline()
        s, sq = vm(work, "src2", ram, a.mib)
        res.append(("through qmig record",) + migrate(sq, "tcp:127.0.0.1:%d" % pp))
        for p in (s, d, rec):
            p.kill(); p.wait()
        # into qmig listen
        pl = port()
        lis = subprocess.Popen([QMIG, "listen", "tcp:127.0.0.1:%d" % pl, "--out", os.path.join(work, "listen"), "--timeout", "600"], stdout=subprocess.PIPE)
        lis.stdout.readline()
        s, sq = vm(work, "src3", ram, a.mib)
        res.append(("into qmig listen",) + migrate(sq, "tcp:127.0.0.1:%d" % pl))
        lis.wait(timeout=120)
        s.kill(); s.wait()
    finally:
        for f in (ram, dram):
            if os.path.exists(f):
                os.remove(f)
        shutil.rmtree(work, ignore_errors=True)
    print("%d MiB of random guest RAM, 10.0 -> 10.0 over loopback TCP, one run each" % a.mib)
    base = res[0][2]
    for name, st, t in res:
        print("  %-24s %-10s %7.2f s  %5.2fx" % (name, st, t, t / base))


if __name__ == "__main__":
    main()
