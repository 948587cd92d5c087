#!/usr/bin/env python3
"""Capture REAL QEMU migration streams as qmig test vectors.

    bash vectors/setup-qemu.sh          # once: unpacks QEMU 7.2 and 10.0.2
    python3 vectors/capture.py          # every case not yet captured
    python3 vectors/capture.py --list
    python3 vectors/capture.py --only file100-precopy --force

Each case becomes vectors/<name>/ with case.json (see TRACE-FORMAT.md) and, for
kind "file", stream.bin (+ src/dst.stderr.txt when non-empty); for kind
"socket", conn*.qmtrace written by `qmig record` (the recording proxy of
qmig-harness, target/release/qmig; override with --qmig or $QMIG).

Guest: the dirtier boot sector (vectors/guest/, built at run time into a
temporary directory) on a 4 MiB file-backed RAM whose backing file holds
deterministic pseudo-random bytes and a text pattern, so the streams carry real
non-zero pages. No KVM (-accel tcg), loopback / unix sockets only. Every QEMU
run is bounded by timeouts and every process started is killed at the end.
Existing cases are skipped unless --force; a case is written to a temporary
directory and renamed into place only when complete.
"""

import argparse
import atexit
import json
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(HERE, "tools"))
from qmp import QMP, QMPError, QMPTimeout  # noqa: E402

PREFIX = os.environ.get("QMIG_QEMU_PREFIX", os.environ.get("PREFIX", "/opt/qmig-qemu"))
QEMU = {
    "7.2": os.path.join(PREFIX, "qemu-7.2"),
    "10.0": os.path.join(PREFIX, "qemu-10.0"),
}

RAM_MB = 4                    # default guest RAM (small, so streams stay ~1.5 MB)
# mapped-ram files are sparse but every RAM block is 1 MiB aligned, and a git checkout
# makes them dense: mapped-ram cases use SMALL = 2 MiB RAM with acpi=off (no ACPI ROM
# blocks), giving ~4.5 MB files instead of ~10.6 MB.
SMALL = {"ram_mb": 2, "machine_opts": "acpi=off"}
RAM_SEED = 0x716D6967         # "qmig"
PATTERN_AT, PATTERN_LEN = 0x120000, 0x10000   # 64 KiB of a recognisable text pattern
RANDOM_AT, RANDOM_LEN = 0x130000, 0x40000     # 256 KiB of seeded pseudo-random bytes
# (both below 2 MiB so the SMALL guest holds them too; the rest of RAM is zero)
# The dirtier re-dirties every page in [0x100000, DIRTY_END): 32 pages, so that live
# precopy iterations re-send them without bloating every stream.
GUEST_DEFS = "-DDIRTY_START=0x100000 -DDIRTY_END=0x120000"
PRE_RUN_S = 1.5               # let the guest run (and dirty pages) before migrating
UUID_SRC = "6b5b6c4e-9d0a-4a55-8e1c-000000000001"
UUID_DST = "6b5b6c4e-9d0a-4a55-8e1c-000000000002"

# --------------------------------------------------------------------------------------
# the cases


def side(qemu, machine=None, caps=(), params=None, share=False, uuid=None, small=False, globals_=None):
    if machine is None:
        machine = "pc-i440fx-7.2" if qemu == "7.2" else "pc-i440fx-10.0"
    d = {"qemu": qemu, "machine": machine, "caps": list(caps), "params": dict(params or {}),
         "share": share, "uuid": uuid, "ram_mb": RAM_MB}
    if globals_:
        # -global driver.prop=value settings (e.g. migration.multifd-flush-after-each-section)
        d["globals"] = dict(globals_)
    if small:
        d.update(SMALL)
    return d


RP = ["return-path"]
# A 4 MiB guest converges in the first precopy pass (max-bandwidth does not help: the
# switchover estimate uses the measured rate and the final pass is unthrottled). A 1 ms
# downtime limit and a 1 B/s switchover bandwidth keep precopy from ever "fitting", so
# migrate-start-postcopy really switches to postcopy.
POSTCOPY_PARAMS = {"downtime-limit": 1, "avail-switchover-bandwidth": 1}
CASES = [
    # ---------------------------------------------------------------- file cases
    dict(name="file72-precopy", kind="file",
         desc="7.2 -> exec:cat > file (guest running), loaded by 7.2 via exec:cat <",
         expect="plain precopy stream from QEMU 7.2; destination completes",
         src=side("7.2"), dst=side("7.2")),
    dict(name="file100-precopy", kind="file",
         desc="10.0 (pc-q35-10.0) -> file: (guest running), loaded by 10.0",
         expect="plain precopy stream from QEMU 10.0 on q35; destination completes",
         src=side("10.0", "pc-q35-10.0"), dst=side("10.0", "pc-q35-10.0")),
    dict(name="file100-mapped-ram", kind="file", vm="paused",
         desc="10.0 -> file: with mapped-ram on both sides (guest paused first)",
         expect="mapped-ram seekable file (sparse, page offsets per RAM block); destination completes",
         src=side("10.0", small=True, caps=["mapped-ram"]), dst=side("10.0", small=True, caps=["mapped-ram"])),
    dict(name="file100-mapped-ram-multifd", kind="file", vm="paused",
         desc="10.0 -> file: with mapped-ram + multifd (2 channels) on both sides",
         expect="mapped-ram file written by multifd threads; destination completes",
         src=side("10.0", small=True, caps=["mapped-ram", "multifd"], params={"multifd-channels": 2}),
         dst=side("10.0", small=True, caps=["mapped-ram", "multifd"], params={"multifd-channels": 2})),
    dict(name="file72-to-100", kind="file",
         desc="7.2 (pc-i440fx-7.2) -> exec:cat > file, loaded by 10.0 with the same machine type",
         expect="cross-version load of an older stream; should complete",
         src=side("7.2"), dst=side("10.0", "pc-i440fx-7.2")),
    dict(name="file100-to-72", kind="file",
         desc="10.0 with machine pc-i440fx-7.2 -> file:, loaded by 7.2",
         expect="backward migration to an older QEMU with a compat machine type",
         src=side("10.0", "pc-i440fx-7.2"), dst=side("7.2")),
    dict(name="file100-mapped-ram-src-only", kind="file", vm="paused",
         desc="10.0 -> file: with mapped-ram on the source only; destination without mapped-ram",
         expect="destination rejects the configuration section (mapped-ram capability mismatch)",
         src=side("10.0", small=True, caps=["mapped-ram"]), dst=side("10.0", small=True)),
    dict(name="file100-mapped-ram-dst-only", kind="file",
         desc="10.0 -> file: plain stream; destination has mapped-ram on",
         expect="destination rejects the configuration section (mapped-ram capability mismatch)",
         src=side("10.0", small=True), dst=side("10.0", small=True, caps=["mapped-ram"])),
    dict(name="file100-ignore-shared", kind="file",
         desc="10.0 -> file: with x-ignore-shared on both sides, RAM share=on on the same backing file",
         expect="shared RAM is not sent (only block addresses); destination maps the same file and completes",
         src=side("10.0", caps=["x-ignore-shared"], share=True),
         dst=side("10.0", caps=["x-ignore-shared"], share=True), shared_ram=True),
    dict(name="file100-ignore-shared-dst-only", kind="file",
         desc="10.0 -> file: plain stream; destination has x-ignore-shared (share=on RAM)",
         expect="destination rejects the configuration section (x-ignore-shared capability mismatch)",
         src=side("10.0"), dst=side("10.0", caps=["x-ignore-shared"], share=True)),
    dict(name="file100-ignore-shared-src-only", kind="file",
         desc="10.0 -> file: with x-ignore-shared on the source only (share=on RAM); destination without",
         expect="destination rejects the configuration section (x-ignore-shared capability mismatch)",
         src=side("10.0", caps=["x-ignore-shared"], share=True), dst=side("10.0")),
    dict(name="file100-validate-uuid-mismatch", kind="file",
         desc="10.0 -> file: with -uuid and validate-uuid; destination has a different -uuid",
         expect="configuration section carries the UUID; destination rejects the mismatch",
         src=side("10.0", caps=["validate-uuid"], uuid=UUID_SRC),
         dst=side("10.0", caps=["validate-uuid"], uuid=UUID_DST)),
    # ---------------------------------------------------------------- socket cases
    dict(name="sock100-precopy-rp", kind="socket",
         desc="10.0 -> 10.0 over TCP with return-path on both sides",
         expect="OPEN_RETURN_PATH, PING/PONG, SHUT on the return path; completes",
         src=side("10.0", caps=RP), dst=side("10.0", caps=RP)),
    dict(name="sock100-switchover-ack", kind="socket",
         desc="10.0 -> 10.0 with return-path + switchover-ack on both sides",
         expect="destination sends SWITCHOVER_ACK on the return path; completes",
         src=side("10.0", caps=RP + ["switchover-ack"]), dst=side("10.0", caps=RP + ["switchover-ack"])),
    # guest running, max-bandwidth 64 KiB/s (seen not to bound it well): unthrottled, the waiting source re-sends
    # the dirtied pages at full speed (~500 MB in 8 s)
    dict(name="sock100-switchover-ack-src-only", kind="socket", src_timeout=2.5, cancel=True,
         desc="10.0 -> 10.0, switchover-ack on the source only (return-path both), guest running, "
              "max-bandwidth 64 KiB/s",
         expect="source waits forever for SWITCHOVER_ACK; harness times out after 2.5 s and cancels",
         src=side("10.0", caps=RP + ["switchover-ack"], params={"max-bandwidth": 64 << 10}),
         dst=side("10.0", caps=RP)),
    dict(name="sock100-switchover-ack-src-only-paused", kind="socket", src_timeout=6, cancel=True,
         vm="paused",
         desc="10.0 -> 10.0, switchover-ack on the source only, guest paused before migrate",
         expect="10.0 does not wait for the ACK when the VM was not running: completes",
         src=side("10.0", caps=RP + ["switchover-ack"]), dst=side("10.0", caps=RP)),
    dict(name="sock100-postcopy", kind="socket", postcopy=True,
         desc="10.0 -> 10.0 with postcopy-ram (+return-path) on both sides, migrate-start-postcopy right after migrate",
         expect="POSTCOPY_ADVISE/LISTEN/RUN, PACKAGED, RAM_DISCARD, REQ_PAGES on the return path; completes",
         src=side("10.0", caps=RP + ["postcopy-ram"], params=POSTCOPY_PARAMS),
         dst=side("10.0", caps=RP + ["postcopy-ram"])),
    dict(name="sock100-postcopy-preempt", kind="socket", postcopy=True,
         desc="10.0 -> 10.0 with postcopy-ram + postcopy-preempt (+return-path) on both sides, migrate-start-postcopy right after migrate, "
              "max-postcopy-bandwidth 64 KiB/s (so the running guest faults on pages not yet sent)",
         expect="a second connection (the preempt channel: bare page records, EOS) besides the main one; completes",
         src=side("10.0", caps=RP + ["postcopy-ram", "postcopy-preempt"],
                  params=dict(POSTCOPY_PARAMS, **{"max-postcopy-bandwidth": 64 << 10})),
         dst=side("10.0", caps=RP + ["postcopy-ram", "postcopy-preempt"])),
    dict(name="sock72-postcopy", kind="socket", postcopy=True,
         desc="7.2 -> 7.2 with postcopy-ram (+return-path) on both sides, migrate-start-postcopy right after migrate",
         expect="7.2 postcopy: ADVISE/DISCARD/PACKAGED(LISTEN, RUN); completes",
         src=side("7.2", caps=RP + ["postcopy-ram"], params={"downtime-limit": 1}),
         dst=side("7.2", caps=RP + ["postcopy-ram"])),
    dict(name="sock72-to-100-postcopy", kind="socket", postcopy=True,
         desc="7.2 -> 10.0 (pc-i440fx-7.2) with postcopy-ram (+return-path), migrate-start-postcopy right after migrate",
         expect="cross-version postcopy; completes",
         src=side("7.2", caps=RP + ["postcopy-ram"], params={"downtime-limit": 1}),
         dst=side("10.0", "pc-i440fx-7.2", caps=RP + ["postcopy-ram"])),
    dict(name="sock100-multifd", kind="socket",
         desc="10.0 -> 10.0 with multifd, 2 channels",
         expect="main channel + 2 multifd connections; completes",
         src=side("10.0", caps=["multifd"], params={"multifd-channels": 2}),
         dst=side("10.0", caps=["multifd"], params={"multifd-channels": 2})),
    dict(name="sock72-multifd", kind="socket",
         desc="7.2 -> 7.2 with multifd, 2 channels",
         expect="legacy multifd sync: a SYNC packet per channel at every RAM section end (EOS), no MULTIFD_FLUSH; completes",
         src=side("7.2", caps=["multifd"], params={"multifd-channels": 2}),
         dst=side("7.2", caps=["multifd"], params={"multifd-channels": 2})),
    dict(name="sock72-to-100-multifd", kind="socket",
         desc="7.2 -> 10.0 (pc-i440fx-7.2) with multifd, 2 channels",
         expect="the 7.2 machine type puts the 10.0 destination in legacy sync mode (flush after each section); completes",
         src=side("7.2", caps=["multifd"], params={"multifd-channels": 2}),
         dst=side("10.0", "pc-i440fx-7.2", caps=["multifd"], params={"multifd-channels": 2})),
    dict(name="sock100-multifd-flush-legacy-src-only", kind="socket", src_timeout=15, cancel=True,
         desc="10.0 -> 10.0 with multifd, migration.multifd-flush-after-each-section=on on the source only",
         expect="legacy source (sync at every EOS, no MULTIFD_FLUSH) against a modern destination (syncs only on MULTIFD_FLUSH)",
         src=side("10.0", caps=["multifd"], params={"multifd-channels": 2},
                  globals_={"migration.multifd-flush-after-each-section": "on"}),
         dst=side("10.0", caps=["multifd"], params={"multifd-channels": 2})),
    dict(name="sock100-multifd-flush-legacy-dst-only", kind="socket", src_timeout=15, cancel=True,
         desc="10.0 -> 10.0 with multifd, migration.multifd-flush-after-each-section=on on the destination only",
         expect="modern source (SYNC per dirty round + MULTIFD_FLUSH) against a legacy destination (syncs at every EOS)",
         src=side("10.0", caps=["multifd"], params={"multifd-channels": 2}),
         dst=side("10.0", caps=["multifd"], params={"multifd-channels": 2},
                  globals_={"migration.multifd-flush-after-each-section": "on"})),
    dict(name="sock72-precopy-rp", kind="socket",
         desc="7.2 -> 7.2 over TCP with return-path on both sides",
         expect="7.2 return path; completes",
         src=side("7.2", caps=RP), dst=side("7.2", caps=RP)),
    dict(name="sock72-to-100", kind="socket",
         desc="7.2 (pc-i440fx-7.2) -> 10.0 (pc-i440fx-7.2) over TCP, return-path",
         expect="forward cross-version migration; completes",
         src=side("7.2", caps=RP), dst=side("10.0", "pc-i440fx-7.2", caps=RP)),
    dict(name="sock100-to-72", kind="socket",
         desc="10.0 with machine pc-i440fx-7.2 -> 7.2 over TCP, return-path",
         expect="backward cross-version migration with compat machine type",
         src=side("10.0", "pc-i440fx-7.2", caps=RP), dst=side("7.2", caps=RP)),
    dict(name="sock100-return-path-src-only", kind="socket",
         desc="10.0 -> 10.0, return-path on the source only",
         expect="destination opens the return path on request anyway (capability not validated)",
         src=side("10.0", caps=RP), dst=side("10.0")),
    dict(name="sock100-multifd-src-only", kind="socket", src_timeout=15, cancel=True,
         desc="10.0 -> 10.0, multifd (2 channels) on the source only",
         expect="destination not expecting multifd channels",
         src=side("10.0", caps=["multifd"], params={"multifd-channels": 2}), dst=side("10.0")),
    dict(name="sock100-postcopy-src-only", kind="socket", postcopy=True, src_timeout=15, cancel=True,
         desc="10.0 -> 10.0, postcopy-ram on the source only (return-path both), migrate-start-postcopy",
         expect="what a destination without postcopy-ram does with POSTCOPY_ADVISE/LISTEN",
         src=side("10.0", caps=RP + ["postcopy-ram"], params=POSTCOPY_PARAMS),
         dst=side("10.0", caps=RP)),
]

# --------------------------------------------------------------------------------------
# process bookkeeping: everything we start is killed at exit

_procs = []


def _kill_all():
    for p in _procs:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except OSError:
                pass
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                pass


atexit.register(_kill_all)
for _sig in (signal.SIGINT, signal.SIGTERM):
    signal.signal(_sig, lambda s, f: sys.exit(128 + s))


def spawn(argv, stderr_path, stdout_path=None):
    out = open(stdout_path, "wb") if stdout_path else subprocess.DEVNULL
    err = open(stderr_path, "wb")
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                         start_new_session=True)
    _procs.append(p)
    return p


def stop(p, q=None, grace=5.0, sig=signal.SIGTERM):
    """Stop a process: QMP quit if we have QMP, else `sig`; SIGKILL after grace.
    Returns (exit_status, killed) where killed means we had to signal it."""
    killed = False
    if p.poll() is None and q is not None:
        try:
            q.cmd("quit", timeout=3)
        except Exception:
            pass
        try:
            p.wait(grace)
        except subprocess.TimeoutExpired:
            pass
    if p.poll() is None:
        killed = True
        try:
            os.killpg(p.pid, sig)
            p.wait(grace)
        except (OSError, subprocess.TimeoutExpired):
            pass
    if p.poll() is None:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except OSError:
            pass
        p.wait(5)
    return p.returncode, killed


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def listening(port):
    """True if something LISTENs on 127.0.0.1:port / 0.0.0.0:port (read /proc, no connect)."""
    for f in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = open(f).read().splitlines()[1:]
        except OSError:
            continue
        for ln in lines:
            parts = ln.split()
            if len(parts) > 3 and parts[3] == "0A" and int(parts[1].split(":")[1], 16) == port:
                return True
    return False


def wait_listening(port, timeout, proc=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if listening(port):
            return True
        if proc is not None and proc.poll() is not None:
            return False
        time.sleep(0.05)
    return False


# --------------------------------------------------------------------------------------
# guest assets


def make_ram_template(path, ram_mb):
    """ram_mb MiB of RAM: zero, except RANDOM_LEN seeded pseudo-random bytes at RANDOM_AT and a
    text pattern at PATTERN_AT. Deterministic (random.Random(RAM_SEED))."""
    rnd = random.Random(RAM_SEED).randbytes(RANDOM_LEN)
    # pad each line to 32 bytes so pages hold 128 fixed-width lines
    lines = [b"QMIG page %05x line %03d ......\n" % (n // 128, n % 128) for n in range(PATTERN_LEN // 32)]
    assert all(len(x) == 32 for x in lines)
    pat = b"".join(lines)
    with open(path, "wb") as f:
        f.truncate(ram_mb << 20)
        f.seek(RANDOM_AT)
        f.write(rnd)
        f.seek(PATTERN_AT)
        f.write(pat)


class Assets:
    def __init__(self, tmp):
        self.tmp = tmp
        subprocess.run(["sh", os.path.join(HERE, "guest", "build.sh"), os.path.join(tmp, "guest")],
                       check=True, stdout=subprocess.DEVNULL, timeout=60,
                       env=dict(os.environ, DEFS=GUEST_DEFS))
        self.boot = os.path.join(tmp, "guest", "boot.img")
        self.ram = {}
        for mb in sorted({RAM_MB, SMALL["ram_mb"]}):
            self.ram[mb] = os.path.join(tmp, "ram%d.template" % mb)
            make_ram_template(self.ram[mb], mb)

    def ram_copy(self, path, ram_mb=RAM_MB):
        shutil.copyfile(self.ram[ram_mb], path)
        return path


# --------------------------------------------------------------------------------------
# one QEMU


def qemu_bin(ver):
    return os.path.join(QEMU[ver], "usr", "bin", "qemu-system-x86_64")


def qemu_version_line(ver):
    try:
        out = subprocess.run([qemu_bin(ver), "--version"], capture_output=True, text=True, timeout=10)
        return out.stdout.splitlines()[0]
    except Exception as e:
        return "unknown (%s)" % e


class Qemu:
    def __init__(self, role, sd, assets, work, incoming=False, ram_file=None):
        self.role, self.sd = role, sd
        ver = sd["qemu"]
        base = QEMU[ver]
        self.qmp_path = os.path.join(work, role + ".qmp")
        self.stderr_path = os.path.join(work, role + ".stderr")
        ram_mb = sd.get("ram_mb", RAM_MB)
        if ram_file is None:
            if sd.get("share"):
                ram_file = assets.ram_copy(os.path.join(work, role + ".ram"), ram_mb)
            else:
                ram_file = assets.ram[ram_mb]  # share=off: private mapping, never written
        if "q35" in sd["machine"]:
            # q35 has no floppy controller; IDE(AHCI) refuses read-only drives, so each
            # QEMU gets its own writable copy (image locking would stop two sharing one)
            boot = os.path.join(work, role + ".boot.img")
            shutil.copyfile(assets.boot, boot)
            drive = "file=%s,format=raw,if=ide" % boot
        else:
            drive = "file=%s,format=raw,if=floppy,readonly=on" % assets.boot
        argv = [qemu_bin(ver),
                "-L", os.path.join(base, "usr/share/qemu"), "-L", os.path.join(base, "usr/share/seabios"),
                "-machine", "%s,memory-backend=ram0%s" % (
                    sd["machine"], "," + sd["machine_opts"] if sd.get("machine_opts") else ""),
                "-object", "memory-backend-file,id=ram0,size=%dM,mem-path=%s,share=%s"
                % (ram_mb, ram_file, "on" if sd.get("share") else "off"),
                "-m", str(ram_mb),
                "-nographic", "-nodefaults", "-display", "none", "-accel", "tcg",
                "-drive", drive,
                "-qmp", "unix:%s,server=on,wait=off" % self.qmp_path]
        if sd.get("uuid"):
            argv += ["-uuid", sd["uuid"]]
        for k, v in sorted(sd.get("globals", {}).items()):
            argv += ["-global", "%s=%s" % (k, v)]
        if incoming:
            argv += ["-incoming", "defer"]
        self.argv = argv
        self.proc = spawn(argv, self.stderr_path)
        self.q = QMP(self.qmp_path, timeout=10, connect_timeout=15)
        self.statuses = []
        self.error_desc = None

    def setup_migration(self):
        self.q.set_caps(self.sd["caps"])
        self.q.set_params(self.sd["params"])

    def poll_status(self):
        """query-migrate once; None when QEMU is gone."""
        if self.proc.poll() is not None:
            return None
        try:
            r = self.q.query_migrate()
        except (EOFError, OSError, QMPTimeout, QMPError, ValueError):
            return None
        st = r.get("status", "none")
        if r.get("error-desc"):
            self.error_desc = r["error-desc"]
        if not self.statuses or self.statuses[-1] != st:
            self.statuses.append(st)
        return st

    def wait(self, want, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st = self.poll_status()
            if st is None or st in want:
                return st
            time.sleep(0.05)
        return self.poll_status()

    def finish(self, killed_by_harness=False, grace=5.0):
        """Quit QEMU (QMP quit) and return the side dict for case.json."""
        if self.poll_status() is None and self.proc.poll() is None:
            try:  # QMP gone: QEMU is exiting on its own, reap it
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        exited_alone = self.proc.poll() is not None
        code, _ = stop(self.proc, self.q)
        self.q.close()
        stderr = open(self.stderr_path, "rb").read().decode("utf-8", "replace")
        last = self.statuses[-1] if self.statuses else None
        final = last
        note = None
        if exited_alone and code not in (0, None) and last not in ("failed", "cancelled"):
            # QEMU reported the error and exit(1)ed before we could see "failed" in query-migrate
            final = "failed"
            note = "QEMU exited with status %s on its own; last status seen via query-migrate: %s" % (code, last)
        d = {k: v for k, v in self.sd.items() if k not in ("share", "uuid", "ram_mb")}
        d["qemu"] = self.sd["qemu"]
        d["qemu_version"] = qemu_version_line(self.sd["qemu"])
        d["final_status"] = final
        d["statuses_seen"] = self.statuses
        if note:
            d["final_status_note"] = note
        if self.error_desc:
            d["error_desc"] = self.error_desc
        d["stderr"] = [ln for ln in stderr.splitlines() if ln.strip()]
        d["exit_status"] = code
        d["exited_on_its_own"] = exited_alone
        d["killed_by_harness"] = killed_by_harness
        d["memory_backend"] = "memory-backend-file size=%dM share=%s" % (
            self.sd.get("ram_mb", RAM_MB), "on" if self.sd.get("share") else "off")
        if self.sd.get("uuid"):
            d["uuid"] = self.sd["uuid"]
        d["argv"] = [os.path.basename(a) if a.startswith("/") and not a.startswith("-") else a
                     for a in self.argv[1:]]
        self.stderr_text = stderr
        return d


# --------------------------------------------------------------------------------------
# case runners


def exec_out(path):
    return "exec:cat > %s" % path


def run_file_case(case, assets, work, out):
    stream = os.path.join(out, "stream.bin")
    sd, dd = case["src"], case.get("dst")
    shared_ram = None
    if case.get("shared_ram"):
        shared_ram = assets.ram_copy(os.path.join(work, "shared.ram"))
    src = Qemu("src", sd, assets, work, ram_file=shared_ram)
    time.sleep(PRE_RUN_S)
    src.setup_migration()
    if case.get("vm", "running") == "paused":
        src.q.cmd("stop")
    uri = exec_out(stream) if sd["qemu"] == "7.2" else "file:%s" % stream
    src.q.cmd("migrate", uri=uri)
    st = src.wait({"completed", "failed", "cancelled"}, case.get("src_timeout", 60))
    killed = st not in ("completed", "failed", "cancelled")
    if killed:
        try:
            src.q.cmd("migrate_cancel")
        except Exception:
            pass
    # source's QEMU may still be running on its own RAM file; for shared RAM the
    # destination must take over the file only once the source has stopped
    sres = src.finish(killed_by_harness=killed)
    res = {"src": sres, "src_uri": uri}
    if dd is not None and os.path.exists(stream):
        dst = Qemu("dst", dd, assets, work, incoming=True, ram_file=shared_ram)
        dst.setup_migration()
        duri = "exec:cat < %s" % stream if dd["qemu"] == "7.2" else "file:%s" % stream
        dst.q.cmd("migrate-incoming", uri=duri)
        st = dst.wait({"completed", "failed"}, case.get("dst_timeout", 60))
        dkilled = st not in ("completed", "failed", None)
        if st == "completed":
            time.sleep(0.5)  # let the guest run a moment on the destination
        res["dst"] = dst.finish(killed_by_harness=dkilled)
        res["dst_uri"] = duri
        res["dst_stderr_text"] = dst.stderr_text
    res["src_stderr_text"] = src.stderr_text
    return res


def parse_trace(path):
    """Summarise one QMIGTRC1 file: header json + bytes/records per direction."""
    data = open(path, "rb").read()
    if data[:8] != b"QMIGTRC1":
        return {"error": "bad magic"}
    hl = struct.unpack_from("<I", data, 8)[0]
    try:
        header = json.loads(data[12:12 + hl])
    except ValueError:
        header = None
    off = 12 + hl
    summ = {0: [0, 0, False], 1: [0, 0, False]}
    errors = []
    while off + 14 <= len(data):
        kind, d, t, ln = struct.unpack_from("<BBQI", data, off)
        off += 14
        payload = data[off:off + ln]
        off += ln
        s = summ.setdefault(d, [0, 0, False])
        if kind == 1:
            s[0] += ln
            s[1] += 1
        elif kind == 2:
            s[2] = True
        elif kind == 3:
            errors.append(payload.decode("utf-8", "replace"))
    r = {"header": header,
         "bytes_src_to_dst": summ[0][0], "records_src_to_dst": summ[0][1], "eof_src_to_dst": summ[0][2],
         "bytes_dst_to_src": summ[1][0], "records_dst_to_src": summ[1][1], "eof_dst_to_src": summ[1][2]}
    if errors:
        r["errors"] = errors
    if off != len(data):
        r["trailing_bytes"] = len(data) - off
    return r


def run_socket_case(case, assets, work, out, recorder):
    sd, dd = case["src"], case["dst"]
    dport, pport = free_port(), free_port()
    dst = Qemu("dst", dd, assets, work, incoming=True)
    dst.setup_migration()
    dst.q.cmd("migrate-incoming", uri="tcp:127.0.0.1:%d" % dport)
    if not wait_listening(dport, 10, dst.proc):
        raise RuntimeError("destination does not listen on %d" % dport)
    proxy = spawn(recorder + ["--listen", "127.0.0.1:%d" % pport,
                   "--upstream", "127.0.0.1:%d" % dport, "--out", out],
                  os.path.join(work, "proxy.stderr"), os.path.join(work, "proxy.stdout"))
    if not wait_listening(pport, 10, proxy):
        raise RuntimeError("qmig record does not listen on %d: %s"
                           % (pport, open(os.path.join(work, "proxy.stderr")).read()))
    src = Qemu("src", sd, assets, work)
    time.sleep(PRE_RUN_S)
    src.setup_migration()
    if case.get("vm", "running") == "paused":
        src.q.cmd("stop")
    uri = "tcp:127.0.0.1:%d" % pport
    src.q.cmd("migrate", uri=uri)
    notes = []
    if case.get("postcopy"):
        # issued at once: a 4 MiB guest finishes its first precopy pass in well under a
        # second, after which 10.0 completes precopy without looking at start-postcopy
        src.wait({"completed", "failed"}, case.get("postcopy_delay", 0.0))
        try:
            src.q.cmd("migrate-start-postcopy")
            notes.append("migrate-start-postcopy issued (source status then: %s)" % src.poll_status())
        except QMPError as e:
            notes.append("migrate-start-postcopy refused: %s" % e)
    final = {"completed", "failed", "cancelled"}
    st = src.wait(final, case.get("src_timeout", 60))
    killed = st not in final
    if killed and case.get("cancel"):
        notes.append("source still %r after %ss: migrate_cancel" % (st, case.get("src_timeout", 60)))
        try:
            src.q.cmd("migrate_cancel")
        except Exception as e:
            notes.append("migrate_cancel: %s" % e)
        time.sleep(1)
        after = src.poll_status()
        notes.append("source status after cancel: %s" % after)
    dwant = {"completed", "failed"}
    dst_st = dst.wait(dwant, 10 if st == "completed" else 3)
    # A destination whose QMP no longer answers (st None) while its process lives is hung
    # (e.g. its main loop blocked in a multifd sync): the harness kills it, so it counts as waiting.
    dkilled = dst_st not in dwant and (dst_st is not None or dst.proc.poll() is None)
    if dst_st is None and dkilled:
        notes.append("destination QMP unresponsive (main loop blocked); killed by the harness")
    if dst_st == "completed":
        time.sleep(0.5)
    sres = src.finish(killed_by_harness=killed)
    if killed:
        # report the status the source was stuck in, not the one after our cancel
        sres["final_status"] = st
    dres = dst.finish(killed_by_harness=dkilled)
    pcode, pkilled = stop(proxy, None, grace=5, sig=signal.SIGTERM)
    pout = open(os.path.join(work, "proxy.stderr"), "rb").read().decode("utf-8", "replace")
    return {"src": sres, "dst": dres, "src_uri": uri, "dst_uri": "tcp:127.0.0.1:%d" % dport,
            "notes": notes, "proxy": {"recorder": case["_recorder_name"], "exit_status": pcode, "signalled": pkilled,
                                      "stderr": [ln for ln in pout.splitlines() if ln.strip()][-20:]},
            "src_stderr_text": src.stderr_text, "dst_stderr_text": dres and dst.stderr_text}


def outcome_line(res, case):
    s = res["src"]
    parts = ["src %s" % s["final_status"] + (" (killed by harness)" if s["killed_by_harness"] else "")]
    serrs = [ln.replace("qemu-system-x86_64: ", "") for ln in s["stderr"] if "qemu-system" in ln]
    if serrs:
        parts[0] += ": " + " / ".join(serrs[:2])
    d = res.get("dst")
    if d:
        p = "dst %s" % d["final_status"]
        if d["exit_status"] not in (0, None) or d["exited_on_its_own"]:
            p += " (exit %s)" % d["exit_status"]
        if d["killed_by_harness"]:
            p += " (killed by harness)"
        errs = [ln.replace("qemu-system-x86_64: ", "") for ln in d["stderr"] if "qemu-system" in ln]
        if errs:
            p += ": " + " / ".join(errs[:2])
        parts.append(p)
    return "; ".join(parts)


def capture(case, assets, args):
    name = case["name"]
    final_dir = os.path.join(HERE, name)
    if os.path.exists(os.path.join(final_dir, "case.json")) and not args.force:
        print("%-36s exists (use --force)" % name)
        return True
    if case["kind"] == "socket" and not args.recorder:
        print("%-36s SKIPPED: no `qmig record` (cargo build --release -p qmig-harness), "
              "or pass --fallback-recorder" % name)
        return False
    case["_recorder_name"] = args.recorder_name
    work = tempfile.mkdtemp(prefix="qmig-%s-" % name, dir=args.tmp)
    out = tempfile.mkdtemp(prefix=".%s.tmp-" % name, dir=HERE)
    t0 = time.time()
    try:
        if case["kind"] == "file":
            res = run_file_case(case, assets, work, out)
        else:
            res = run_socket_case(case, assets, work, out, args.recorder)
        cj = {"name": name, "desc": case["desc"], "kind": case["kind"], "origin": "qemu",
              "expect": case["expect"], "outcome": outcome_line(res, case),
              "src": res["src"]}
        if res.get("dst"):
            cj["dst"] = res["dst"]
        if case["kind"] == "file":
            cj["stream"] = "stream.bin"
        else:
            conns = []
            for fn in sorted(f for f in os.listdir(out) if f.endswith(".qmtrace")):
                c = {"file": fn}
                c.update(parse_trace(os.path.join(out, fn)))
                conns.append(c)
            cj["connections"] = conns
        cj["capture"] = {
            "tool": "vectors/capture.py", "src_uri": res.get("src_uri"), "dst_uri": res.get("dst_uri"),
            "vm_state_at_migrate": case.get("vm", "running"),
            "guest": {"image": "vectors/guest/dirtier.S boot sector", "defs": GUEST_DEFS,
                      "ram_mb": case["src"].get("ram_mb", RAM_MB), "ram_seed": RAM_SEED,
                      "random_region": [hex(RANDOM_AT), RANDOM_LEN],
                      "pattern_region": [hex(PATTERN_AT), PATTERN_LEN],
                      "pre_run_s": PRE_RUN_S},
            "notes": res.get("notes", []), "duration_s": round(time.time() - t0, 2),
        }
        if res.get("proxy"):
            cj["capture"]["proxy"] = res["proxy"]
        for role in ("src", "dst"):
            txt = res.get(role + "_stderr_text")
            if txt and txt.strip():
                open(os.path.join(out, role + ".stderr.txt"), "w").write(txt)
        txt = json.dumps(cj, indent=2).replace(out, "<case>").replace(work, "<scratch>") + "\n"
        with open(os.path.join(out, "case.json"), "w") as f:
            f.write(txt)
        os.chmod(out, 0o755)
        for fn in os.listdir(out):
            os.chmod(os.path.join(out, fn), 0o644)
        if os.path.exists(final_dir):
            shutil.rmtree(final_dir)
        os.rename(out, final_dir)
        size = sum(os.path.getsize(os.path.join(final_dir, f)) for f in os.listdir(final_dir))
        print("%-36s %9d B  %s" % (name, size, cj["outcome"]))
        return True
    except Exception as e:
        print("%-36s ERROR: %s: %s" % (name, type(e).__name__, e))
        for fn in ("src.stderr", "dst.stderr", "proxy.stderr"):
            p = os.path.join(work, fn)
            if os.path.exists(p) and os.path.getsize(p):
                print("   %s: %s" % (fn, open(p, errors="replace").read().strip()[-500:]))
        shutil.rmtree(out, ignore_errors=True)
        return False
    finally:
        _kill_all()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


DEFAULT_TMP = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
FALLBACK_RECORDER = os.path.join(HERE, "tools", "record.py")


def recorder_argv(args):
    """argv prefix of the recording proxy: `qmig record` if available, else the fallback."""
    if args.qmig:
        return [args.qmig, "record"], "qmig record (%s)" % os.path.relpath(args.qmig, REPO)
    if args.fallback_recorder:
        return [sys.executable, FALLBACK_RECORDER], "vectors/tools/record.py (fallback)"
    return None, None


def find_qmig(explicit):
    cands = [explicit, os.environ.get("QMIG"), os.path.join(REPO, "target", "release", "qmig")]
    for c in cands:
        if c and os.access(c, os.X_OK):
            try:
                r = subprocess.run([c, "record", "--help"], capture_output=True, timeout=10)
                if r.returncode == 0:
                    return c
            except Exception:
                pass
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--list", action="store_true", help="list the cases and exit")
    ap.add_argument("--only", action="append", default=[], help="capture only NAME (repeatable, comma list)")
    ap.add_argument("--kind", choices=("file", "socket"), help="only cases of this kind")
    ap.add_argument("--force", action="store_true", help="re-capture cases that already exist")
    ap.add_argument("--qmig", help="path to the qmig binary (default target/release/qmig or $QMIG)")
    ap.add_argument("--fallback-recorder", action="store_true",
                    help="record socket cases with vectors/tools/record.py when `qmig record` is missing")
    ap.add_argument("--tmp", default=DEFAULT_TMP,
                    help="scratch directory for RAM backing files and sockets (default /dev/shm: "
                         "postcopy refuses file-backed RAM that is not on tmpfs/hugetlbfs)")
    ap.add_argument("--keep", action="store_true", help="keep scratch directories")
    args = ap.parse_args()
    only = {n for o in args.only for n in o.split(",") if n}
    cases = [c for c in CASES if (not only or c["name"] in only) and (not args.kind or c["kind"] == args.kind)]
    unknown = only - {c["name"] for c in CASES}
    if unknown:
        ap.error("unknown case(s): %s" % ", ".join(sorted(unknown)))
    if args.list:
        for c in CASES:
            have = "captured" if os.path.exists(os.path.join(HERE, c["name"], "case.json")) else "-"
            print("%-36s %-6s %-9s %s" % (c["name"], c["kind"], have, c["desc"]))
        return 0
    for v in QEMU:
        if not os.access(qemu_bin(v), os.X_OK):
            print("missing %s: run `bash vectors/setup-qemu.sh` first" % qemu_bin(v), file=sys.stderr)
            return 2
    args.qmig = find_qmig(args.qmig)
    args.recorder, args.recorder_name = recorder_argv(args)
    tmp = tempfile.mkdtemp(prefix="qmig-capture-", dir=args.tmp)
    try:
        assets = Assets(tmp)
        ok = True
        for c in cases:
            ok &= capture(c, assets, args)
        return 0 if ok else 1
    finally:
        _kill_all()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
