"""Runs a command as a child subreaper: processes that the command's children leave behind are
re-parented to this process, which reaps them (no zombies, even where PID 1 does not reap), and
when the command ends, every descendant still running is stopped (SIGTERM, then SIGKILL).
SIGINT/SIGTERM/SIGHUP are passed on to the command.

Usage: python3 supervise.py COMMAND [ARG...]
"""

import ctypes
import os
import signal
import sys
import time

PR_SET_CHILD_SUBREAPER = 36


def descendants(root):
    """PIDs of all live processes whose ancestry includes root."""
    parent = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
            # The command name may contain spaces and parentheses: split after the last ')'.
            fields = stat[stat.rindex(")") + 2:].split()
            if fields[0] == "Z":
                continue
            parent[int(name)] = int(fields[1])
        except (OSError, ValueError, IndexError):
            continue
    found = []
    for pid in parent:
        p = pid
        while p in parent and p not in (0, 1):
            p = parent[p]
            if p == root:
                found.append(pid)
                break
    return found


def reap():
    """Reaps every exited child; returns {pid: status}."""
    done = {}
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return done
        if pid == 0:
            return done
        done[pid] = status


def main():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    pid = os.fork()
    if pid == 0:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        try:
            os.execvp(sys.argv[1], sys.argv[1:])
        finally:
            os._exit(127)

    state = {"signalled_at": None}

    def forward(sig, _frame):
        if state["signalled_at"] is None:
            state["signalled_at"] = time.monotonic()
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, forward)

    code = None
    while code is None:
        for p, status in reap().items():
            if p == pid:
                code = os.waitstatus_to_exitcode(status)
                if code < 0:
                    code = 128 - code
        if code is None:
            # A command that ignores the signal gets 20 s before it is killed.
            if state["signalled_at"] is not None and time.monotonic() - state["signalled_at"] > 20:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.1)

    left = descendants(os.getpid())
    if left:
        print(f"supervise: stopping {len(left)} leftover process(es): {left}", file=sys.stderr)
        for sig, wait in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 2.0)):
            for p in descendants(os.getpid()):
                try:
                    os.kill(p, sig)
                except ProcessLookupError:
                    pass
            end = time.monotonic() + wait
            while time.monotonic() < end and descendants(os.getpid()):
                reap()
                time.sleep(0.1)
    reap()
    sys.exit(code)


if __name__ == "__main__":
    main()
