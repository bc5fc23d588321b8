"""Runs a command and writes to OUT.json what the kernel accounted to it and to every
descendant it waited for: wall seconds, user and system CPU seconds (the whole process tree),
the peak resident set size (of the largest process in it), from wait4(2), and the wall-clock
time it was started at (so that a child's own timestamps can be measured from its start).

  measure.py OUT.json -- command args...
"""

import json
import os
import sys
import time

out = sys.argv[1]
command = sys.argv[3:]
started_at = time.time()
start = time.perf_counter()
pid = os.posix_spawnp(command[0], command, os.environ)
_, status, usage = os.wait4(pid, 0)
wall = time.perf_counter() - start
code = os.waitstatus_to_exitcode(status)
with open(out, "w") as f:
    json.dump({"exit": code, "started_at": started_at, "wall": wall, "user": usage.ru_utime, "sys": usage.ru_stime, "maxrss_kb": usage.ru_maxrss}, f)
sys.exit(0 if code == 0 else 1)
