"""Helpers shared by the Python benchmarks (pop3, imap, capture): loopback
ports, process lifetimes and per-process-tree CPU and memory from /proc."""
import os
import signal
import socket
import subprocess
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, limit=20.0, proc=None, what="server"):
    """True once something accepts on 127.0.0.1:port within limit seconds.
    With proc, a process that exits meanwhile raises RuntimeError."""
    end = time.time() + limit
    while time.time() < end:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("%s exited with %s" % (what, proc.returncode))
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def stop_process(proc, grace=10):
    """SIGTERM, then SIGKILL after grace seconds."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def tail_file(path, lines=20):
    try:
        with open(path) as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""


def _proc_stats():
    """{pid: (ppid, utime+stime+cutime+cstime in ticks)} of every process."""
    stats = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                text = f.read()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2:].split()
        # fields[1] = ppid (field 4); utime, stime, cutime, cstime = 14..17
        stats[int(d)] = (int(fields[1]), sum(int(x) for x in fields[11:15]))
    return stats


def proc_tree(pid, stats=None):
    """pid and every process below it."""
    stats = _proc_stats() if stats is None else stats
    kids = {}
    for p, (pp, _) in stats.items():
        kids.setdefault(pp, []).append(p)
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def tree_cpu(pid):
    """CPU seconds (user + system) used by pid and every process below it,
    live or already reaped: each live process's utime+stime plus the
    cutime+cstime of the children it has waited for (Dovecot's master
    reaps its per-session processes, so their time is counted)."""
    stats = _proc_stats()
    ticks = sum(stats[p][1] for p in proc_tree(pid, stats) if p in stats)
    return ticks / os.sysconf("SC_CLK_TCK")


def tree_memory(pid):
    """(RSS, PSS) in bytes summed over pid and its descendants, and the
    process count."""
    rss = pss = n = 0
    for p in proc_tree(pid):
        try:
            with open("/proc/%d/smaps_rollup" % p) as f:
                for line in f:
                    if line.startswith("Rss:"):
                        rss += int(line.split()[1]) * 1024
                    elif line.startswith("Pss:"):
                        pss += int(line.split()[1]) * 1024
            n += 1
        except OSError:
            pass
    return rss, pss, n
