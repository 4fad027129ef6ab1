#!/usr/bin/env python3
"""Reads strace logs of concurrent moat processes (strace -f -tt -T -e
trace=flock,mkdirat,rename,renameat,renameat2) and compares the longest wait
for a lock with the longest layer unpack of the same run: a layer's unpack
runs from the mkdirat of its tmp/HEX.SUFFIX directory to the rename of that
directory into layers/ (store.cc). Prints both; exits 1 when a wait was
longer than the slowest unpack (the done-when of issue 12)."""
import re, sys
from datetime import datetime

call = re.compile(r'^(\d+)\s+(\d\d:\d\d:\d\d\.\d+)\s+(?:<\.\.\. (\w+) resumed>|(\w+)\((.*))')
dur = re.compile(r'<([\d.]+)>\s*$')

def secs(ts):
    t = datetime.strptime(ts, '%H:%M:%S.%f')
    return t.hour * 3600 + t.minute * 60 + t.second + t.microsecond / 1e6

waits, starts, unpacks = [], {}, []
for path in sys.argv[1:]:
    pending = {}  # pid -> (syscall, args, start) of an <unfinished ...> call
    for line in open(path, errors='replace'):
        m = call.match(line)
        if not m:
            continue
        pid, ts = m.group(1), secs(m.group(2))
        if m.group(3):  # resumed
            name, args, t0 = pending.pop(pid, (m.group(3), '', ts))
        else:
            name, args, t0 = m.group(4), m.group(5), ts
            if line.rstrip().endswith('<unfinished ...>'):
                pending[pid] = (name, args, ts)
                continue
        d = dur.search(line)
        if name == 'flock' and d:
            waits.append((float(d.group(1)), path, args.split(')')[0]))
        elif name == 'mkdirat':
            n = re.search(r'"([0-9a-f]{64}\.[^"/]+)"', args)
            if n:
                starts[n.group(1)] = t0
        elif name.startswith('rename'):
            n = re.search(r'/tmp/([0-9a-f]{64}\.[^"/]+)"', args)
            if n and n.group(1) in starts and '= 0' in line:
                unpacks.append((ts - starts[n.group(1)], n.group(1)[:12]))

if not unpacks:
    print('lock_waits: no layer was unpacked in these traces', file=sys.stderr)
    sys.exit(2)
w = max(waits) if waits else (0.0, '-', '-')
u = max(unpacks)
print(f'layers unpacked: {len(unpacks)}, slowest unpack {u[0]:.3f} s (layer {u[1]}); '
      f'flock calls: {len(waits)}, longest wait {w[0]:.3f} s ({w[1]}, fd {w[2]}); '
      f'waits over 10 ms: {sum(1 for x in waits if x[0] > 0.01)}')
sys.exit(1 if w[0] > u[0] else 0)
