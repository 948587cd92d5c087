#!/usr/bin/env python3
"""Start a destination QEMU configured like a recorded case's destination (case.json dst.argv,
with the scratch paths made anew), listening on a free loopback port.

    start_dst.py CASE-DIR SCRATCH-DIR   ->  prints "PORT QMP-SOCKET PID"

Used by `qmig send` tests: the recorded source side is then replayed into it."""
import sys, json, subprocess, time, os, socket, re
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qmp import QMP
case = sys.argv[1]
c = json.load(open(case + '/case.json'))
ver = c['dst']['qemu']
pfx = os.path.join(os.environ.get('QMIG_QEMU_PREFIX', '/opt/qmig-qemu'), 'qemu-%s' % ver, 'usr')
argv = list(c['dst']['argv'])
out = []
tmp = os.path.join(sys.argv[2], os.path.basename(case.rstrip('/')))
os.makedirs(tmp, exist_ok=True)
i = 0
while i < len(argv):
    a = argv[i]
    if a == '-L':
        out += ['-L', pfx + '/share/' + argv[i+1]]; i += 2; continue
    if 'mem-path=' in a:
        size = re.search(r'size=(\d+)M', a).group(1)
        p = tmp + '/ram'
        with open(p, 'wb') as f: f.truncate(int(size) << 20)
        a = re.sub(r'mem-path=[^,]*', 'mem-path=' + p, a)
    if a.startswith('file=') and 'boot.img' in a:
        p = tmp + '/boot.img'
        with open(p, 'wb') as f: f.truncate(1 << 20)
        a = re.sub(r'file=[^,]*', 'file=' + p, a)
    a = a.replace('<scratch>', tmp)
    out.append(a); i += 1
s = socket.socket(); s.bind(('127.0.0.1', 0)); port = s.getsockname()[1]; s.close()
p = subprocess.Popen([pfx + '/bin/qemu-system-x86_64'] + out, stdout=subprocess.DEVNULL, stderr=open(tmp + '/stderr', 'w'), start_new_session=True)
q = QMP(tmp + '/dst.qmp', timeout=20)
if c['dst'].get('caps'): q.set_caps(c['dst']['caps'])
if c['dst'].get('params'): q.set_params(c['dst']['params'])
q.cmd('migrate-incoming', uri='tcp:127.0.0.1:%d' % port)
q.close()
print(port, tmp + '/dst.qmp', p.pid, flush=True)
