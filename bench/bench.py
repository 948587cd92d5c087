#!/usr/bin/env python3
"""qmig benchmarks, side by side in ONE run on the same files (issue: Benchmarks).

    python3 bench/bench.py [--gib 1] [--big-gib 4] [--runs 5] [--lookup-mib 128] [--skip-analyze] [--skip-qemu-load]

Makes its inputs with real QEMU 10.0 at bench time (nothing is committed):
  * a precopy stream of a guest with N GiB of RAM whose every page is non-zero
    (-object memory-backend-file on /dev/shm filled from /dev/urandom),
  * the same guest as a mapped-ram file, and a smaller one (--lookup-mib) for the lookups,
and then times, per input, from the page cache:
  qmig check FILE, qmig inspect --json FILE, cat FILE >/dev/null, QEMU 10.0's own load
  (-incoming defer + migrate-incoming file:, until query-migrate says completed),
  analyze-migration.py from QEMU 10.0's Debian source package (fetched into the scratch
  directory, never committed), cat FILE | qmig check -, cat FILE | cat >/dev/null,
  qmig inspect --extract DIR vs cp FILE, and mapped-ram page lookups by guest address
  (target/release/examples/mapped_lookup: random lookups in both mapped-ram files, at
  two lookup counts, so the time per lookup shows it does not grow with the file).
It prints each one's median wall, user and system time and peak RSS (from /usr/bin/time)
and the ratios.
"""
import argparse, os, shutil, statistics, subprocess, sys, tempfile, time, json

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "vectors", "tools"))
from qmp import QMP  # noqa: E402

QEMU = os.environ.get("QEMU100", "/opt/qmig-qemu/qemu-10.0/usr/bin/qemu-system-x86_64")
PFX = os.path.dirname(os.path.dirname(os.path.dirname(QEMU)))
LARGS = ["-L", os.path.join(PFX, "usr/share/qemu"), "-L", os.path.join(PFX, "usr/share/seabios")]
QMIG = os.path.join(REPO, "target", "release", "qmig")


def sh(cmd, **kw):
    return subprocess.run(cmd, shell=True, check=True, **kw)


def timed(cmd, runs):
    """Median wall seconds, max peak RSS (KiB), median user and system seconds of a shell command."""
    walls, rss, user, sys_ = [], [], [], []
    for _ in range(runs):
        t = time.monotonic()
        r = subprocess.run(["/usr/bin/time", "-f", "QMIGTIME %U %S %M", "sh", "-c", cmd + " >/dev/null"], stderr=subprocess.PIPE, text=True)
        walls.append(time.monotonic() - t)
        lines = [l.split()[1:] for l in r.stderr.strip().splitlines() if l.startswith("QMIGTIME ")]
        u, s_, m = lines[-1] if lines else ("0", "0", "0")
        user.append(float(u))
        sys_.append(float(s_))
        rss.append(int(m))
        if r.returncode != 0:
            print("  command failed (%d): %s\n%s" % (r.returncode, cmd, r.stderr[-400:]))
    return statistics.median(walls), max(rss), statistics.median(user), statistics.median(sys_)


def settle(max_wait=60):
    """Flush the inputs just written (writeback would steal CPU from the timings) and wait,
    up to max_wait seconds, for the CPUs to be idle (below 10% busy over half a second)."""
    sh("sync")
    end = time.monotonic() + max_wait
    while time.monotonic() < end:
        a = [int(x) for x in open("/proc/stat").readline().split()[1:]]
        time.sleep(0.5)
        b = [int(x) for x in open("/proc/stat").readline().split()[1:]]
        d = [y - x for x, y in zip(a, b)]
        if sum(d) and (sum(d) - d[3] - d[4]) / sum(d) < 0.10:
            return
    print("  (the CPUs are still busy: timings below may be disturbed)")


def qemu(work, name, ram_file, mib, extra):
    sock = os.path.join(work, name + ".qmp")
    argv = [QEMU] + LARGS + ["-machine", "pc-q35-10.0,memory-backend=ram0", "-accel", "tcg", "-m", "%dM" % mib,
            "-object", "memory-backend-file,id=ram0,size=%dM,mem-path=%s,share=off" % (mib, ram_file),
            "-nographic", "-nodefaults", "-display", "none", "-qmp", "unix:%s,server=on,wait=off" % sock, "-S"] + extra
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return p, QMP(sock, timeout=600)


def ram_path(mib):
    return "/dev/shm/qmig-bench-ram-%dM" % mib


def make_stream(work, mib, mapped):
    ram = ram_path(mib)
    if not os.path.exists(ram) or os.path.getsize(ram) != mib << 20:
        sh("head -c %d /dev/urandom > %s" % (mib << 20, ram))
    out = os.path.join(work, "stream-%dm%s.bin" % (mib, "-mapped" if mapped else ""))
    p, q = qemu(work, "src", ram, mib, [])
    try:
        if mapped:
            q.set_caps(["mapped-ram"])
        q.cmd("migrate", uri="file:" + out)
        st = q.wait_migration(timeout=900)
        assert st == "completed", st
    finally:
        q.cmd("quit")
        p.wait(timeout=60)
    return out, ram


def qemu_load_cmd(work, ram, mib, path, mapped):
    """A shell command that loads `path` into a fresh QEMU 10.0 and waits for completion."""
    script = os.path.join(work, "load.py")
    with open(script, "w") as f:
        f.write("""import sys, subprocess, os
sys.path.insert(0, %r)
from qmp import QMP
sock = %r
argv = %r
p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
q = QMP(sock, timeout=600)
if %r:
    q.set_caps(["mapped-ram"])
q.cmd("migrate-incoming", uri="file:" + sys.argv[1])
st = q.wait_migration(timeout=900)
q.cmd("quit"); p.wait(timeout=60)
sys.exit(0 if st == "completed" else 1)
""" % (os.path.join(REPO, "vectors", "tools"), os.path.join(work, "dst.qmp"),
       [QEMU] + LARGS + ["-machine", "pc-q35-10.0,memory-backend=ram0", "-accel", "tcg", "-m", "%dM" % mib,
                          "-object", "memory-backend-file,id=ram0,size=%dM,mem-path=%s,share=off" % (mib, ram),
                          "-nographic", "-nodefaults", "-display", "none",
                          "-qmp", "unix:%s,server=on,wait=off" % os.path.join(work, "dst.qmp"), "-incoming", "defer"], mapped))
    return "%s %s %s" % (sys.executable, script, path)


def analyze_script(work):
    """scripts/analyze-migration.py from QEMU 10.0's Debian source package."""
    d = os.path.join(work, "src")
    os.makedirs(d, exist_ok=True)
    bp = "/var/tmp/qemu-apt-backports"
    o = "-o Dir::Etc::sourcelist=%s/src.list -o Dir::Etc::sourceparts=- -o Dir::State::Lists=%s/srclists -o Dir::Cache=%s/cache" % (bp, bp, bp)
    os.makedirs(bp + "/srclists/partial", exist_ok=True)
    with open(bp + "/src.list", "w") as f:
        f.write("deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm-backports main\n")
    sh("apt-get %s update >/dev/null" % o)
    sh("cd %s && apt-get %s source --download-only qemu=1:10.0.2+ds-2+deb13u1~bpo12+1 >/dev/null 2>&1 || true" % (d, o))
    tars = [x for x in os.listdir(d) if x.endswith(".orig.tar.xz")]
    if not tars:
        return None
    sh("cd %s && tar -xJf %s --wildcards '*/scripts/analyze-migration.py'" % (d, tars[0]))
    for root, _, files in os.walk(d):
        if "analyze-migration.py" in files:
            return os.path.join(root, "analyze-migration.py")
    return None


def row(name, t, rss, user=None, sys_=None, base=None):
    ratio = "" if base is None else "%8.2fx" % (t / base)
    us = "" if user is None else "%7.3f u %7.3f s" % (user, sys_)
    print("  %-44s %9.3f s %9.1f MiB %18s %s" % (name, t, rss / 1024, us, ratio))


def lookups(tool, path, n, runs):
    """Median per-lookup times (ns) of the mapped_lookup example on one file."""
    out = []
    for _ in range(runs):
        r = subprocess.run([tool, path, str(n)], stdout=subprocess.PIPE, text=True, check=True)
        out.append(json.loads(r.stdout))
    return {"pages": out[0]["pages"], "file_bytes": out[0]["file_bytes"], "lookups": n,
            "lookup_ns": statistics.median(o["lookup_ns"] for o in out), "read_ns": statistics.median(o["read_ns"] for o in out)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gib", type=int, default=1)
    ap.add_argument("--big-gib", type=int, default=4, help="size of the memory-check stream (0 = skip)")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--lookup-mib", type=int, default=128, help="size of the second mapped-ram file for the lookups (0 = skip)")
    ap.add_argument("--skip-analyze", action="store_true")
    ap.add_argument("--skip-qemu-load", action="store_true")
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    sh("cd %s && cargo build --release -q -p qmig-harness --bin qmig --example mapped_lookup" % REPO)
    work = tempfile.mkdtemp(prefix="qmig-bench-", dir="/var/tmp")
    try:
        stream, ram = make_stream(work, a.gib << 10, False)
        mapped, _ = make_stream(work, a.gib << 10, True)
        print("inputs: %s (%d MiB), %s (%d MiB apparent)" % (stream, os.path.getsize(stream) >> 20, mapped, os.path.getsize(mapped) >> 20))
        settle()
        sh("cat %s %s > /dev/null" % (stream, mapped))
        res = {}
        res["cat"] = timed("cat %s" % stream, a.runs)
        res["check"] = timed("%s check %s" % (QMIG, stream), a.runs)
        res["inspect"] = timed("%s inspect --json %s" % (QMIG, stream), a.runs)
        res["catcat"] = timed("cat %s | cat" % stream, a.runs)
        res["pipe"] = timed("cat %s | %s check -" % (stream, QMIG), a.runs)
        xdir = os.path.join(work, "extract")
        res["cp"] = timed("cp %s %s/copy.bin" % (stream, work), a.runs)
        res["extract"] = timed("rm -rf %s; %s inspect --extract %s %s" % (xdir, QMIG, xdir, stream), a.runs)
        res["mapped-check"] = timed("%s check --src-caps mapped-ram --dst-caps mapped-ram %s" % (QMIG, mapped), a.runs)
        if not a.skip_qemu_load:
            res["qemu-load"] = timed(qemu_load_cmd(work, ram, a.gib << 10, stream, False), max(1, a.runs // 2))
        if not a.skip_analyze:
            script = analyze_script(work)
            if script:
                res["analyze"] = timed("python3 %s -f %s" % (script, stream), a.runs)
            else:
                print("  analyze-migration.py: could not fetch QEMU 10.0's source package; skipped")
        c = res["check"][0]
        print("\n%d GiB precopy stream, median of %d runs (QEMU's load: %d; ratios: that command's time / qmig check)"
              % (a.gib, a.runs, max(1, a.runs // 2)))
        print("  %-44s %11s %13s %18s" % ("", "wall", "peak RSS", "user / sys"))
        for k, label in [("check", "qmig check FILE"), ("inspect", "qmig inspect --json FILE"), ("cat", "cat FILE >/dev/null"),
                         ("qemu-load", "QEMU 10.0 load (migrate-incoming file:)"), ("analyze", "analyze-migration.py -f FILE (10.0)"),
                         ("mapped-check", "qmig check MAPPED-RAM-FILE")]:
            if k in res:
                row(label, *res[k], base=c)
        print("\nstreaming and extraction")
        row("cat FILE | cat >/dev/null", *res["catcat"])
        row("cat FILE | qmig check -", *res["pipe"], base=res["catcat"][0])
        row("cp FILE", *res["cp"])
        row("qmig inspect --extract DIR FILE", *res["extract"], base=res["cp"][0])
        if not a.keep:
            os.remove(stream)
        # Mapped-ram page lookups by guest address: the same lookups in two file sizes, at
        # two lookup counts (median of --runs runs of the example binary each).
        lk = {}
        if a.lookup_mib:
            tool = os.path.join(REPO, "target", "release", "examples", "mapped_lookup")
            small, _ = make_stream(work, a.lookup_mib, True)
            settle()
            print("\nmapped-ram page lookup by guest address (MappedBlock::page; random addresses in the guest RAM block)")
            print("  %-44s %12s %22s" % ("", "lookup", "lookup + read 8 bytes"))
            for f in (small, mapped):
                for n in (100000, 1000000):
                    r = lookups(tool, f, n, a.runs)
                    lk["%s/%d" % (os.path.basename(f), n)] = r
                    print("  %-44s %9.1f ns %19.1f ns" % ("%d MiB file (%d pages), %d lookups" % (r["file_bytes"] >> 20, r["pages"], n),
                                                         r["lookup_ns"], r["read_ns"]))
            os.remove(small)
        if a.big_gib:
            big, bigram = make_stream(work, a.big_gib << 10, False)
            settle()
            row("%d GiB: cat FILE | qmig check -" % a.big_gib, *timed("cat %s | %s check -" % (big, QMIG), 1))
            row("%d GiB: qmig check FILE" % a.big_gib, *timed("%s check %s" % (QMIG, big), 1))
            os.remove(big)
            if bigram.startswith("/dev/shm/") and not a.keep:
                os.remove(bigram)
        out = {k: {"median_s": v[0], "peak_rss_kib": v[1], "user_s": v[2], "sys_s": v[3]} for k, v in res.items()}
        out["lookups"] = lk
        json.dump(out, open(os.path.join(work, "results.json"), "w"), indent=1)
        if a.keep:
            print("\nkept %s (results.json)" % work)
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
            for m in (a.gib << 10, a.big_gib << 10, a.lookup_mib):
                if m and os.path.exists(ram_path(m)):
                    os.remove(ram_path(m))


if __name__ == "__main__":
    main()
