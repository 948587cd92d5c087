"""Tiny stdlib-only QMP client over a unix socket.

    from qmp import QMP
    q = QMP("/tmp/x/src.qmp", timeout=10)      # connects (retrying) and negotiates
    q.cmd("migrate-set-capabilities", capabilities=[{"capability": "return-path", "state": True}])
    st = q.wait_migration({"completed", "failed"}, timeout=30)
    q.close()

Every call is bounded by a timeout; asynchronous events are collected in `q.events`.
"""

import json
import socket
import time


class QMPError(Exception):
    """QEMU answered a command with {"error": ...}."""

    def __init__(self, command, error):
        self.command = command
        self.error = error
        super().__init__("%s: %s: %s" % (command, error.get("class"), error.get("desc")))


class QMPTimeout(Exception):
    pass


class QMP:
    def __init__(self, path, timeout=10.0, connect_timeout=10.0):
        self.path = path
        self.timeout = timeout
        self.events = []
        self.greeting = None
        self._buf = b""
        self._id = 0
        deadline = time.monotonic() + connect_timeout
        last = None
        while True:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(path)
                break
            except OSError as e:  # not created yet / not listening yet
                s.close()
                last = e
                if time.monotonic() > deadline:
                    raise QMPTimeout("cannot connect to %s: %s" % (path, last))
                time.sleep(0.05)
        self.sock = s
        self.greeting = self._read_msg(time.monotonic() + timeout)
        if "QMP" not in self.greeting:
            raise QMPError("greeting", {"class": "Protocol", "desc": repr(self.greeting)})
        self.cmd("qmp_capabilities")

    # -- low level -------------------------------------------------------
    def _read_msg(self, deadline):
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise QMPTimeout("no QMP message from %s" % self.path)
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                raise QMPTimeout("no QMP message from %s" % self.path)
            if not chunk:
                raise EOFError("QMP connection %s closed" % self.path)
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        line = line.strip()
        if not line:
            return self._read_msg(deadline)
        return json.loads(line.decode("utf-8", "replace"))

    def execute(self, command, args=None, timeout=None):
        """Send one command, return the whole reply dict (with "return" or "error")."""
        self._id += 1
        msg = {"execute": command, "id": self._id}
        if args:
            msg["arguments"] = args
        self.sock.sendall(json.dumps(msg).encode() + b"\n")
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            r = self._read_msg(deadline)
            if "event" in r:
                self.events.append(r)
                continue
            if r.get("id") == self._id:
                return r

    def cmd(self, command, timeout=None, **args):
        """Execute; return the "return" value or raise QMPError."""
        r = self.execute(command, args, timeout=timeout)
        if "error" in r:
            raise QMPError(command, r["error"])
        return r.get("return")

    def hmp(self, line, timeout=None):
        return self.cmd("human-monitor-command", timeout=timeout, **{"command-line": line})

    # -- helpers ---------------------------------------------------------
    def set_caps(self, caps):
        """caps: iterable of capability names to switch on (or dict name->bool)."""
        if not isinstance(caps, dict):
            caps = {c: True for c in caps}
        if caps:
            self.cmd("migrate-set-capabilities",
                     capabilities=[{"capability": k, "state": bool(v)} for k, v in caps.items()])

    def set_params(self, params):
        if params:
            self.cmd("migrate-set-parameters", **params)

    def query_migrate(self):
        return self.cmd("query-migrate")

    def status(self):
        return self.query_migrate().get("status", "none")

    def wait_migration(self, want=("completed", "failed", "cancelled"), timeout=30.0, poll=0.1):
        """Poll query-migrate until status is in `want`; return the last status seen.

        Never raises on timeout: returns the last status (the caller decides), so
        "active after a timeout" can be recorded as such."""
        want = set(want)
        deadline = time.monotonic() + timeout
        last = None
        while True:
            try:
                last = self.status()
            except (EOFError, OSError, QMPTimeout):
                return last if last is not None else "gone"
            if last in want or time.monotonic() > deadline:
                return last
            time.sleep(poll)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
