"""Runs a command on a real pseudo-terminal and scripts it.

usage: pty_driver.py ROWS COLS STEPS_JSON -- ARGV...
STEPS_JSON is a list of ["expect", text] | ["send", text] | ["resize", rows, cols].
An `expect` whose text does not show within 30 s fails the run (exit 1, with
the output so far on stderr); nothing waits for a guessed time.
Prints one JSON object: the output, the exit code (128+n for a signal), and
whether the terminal's settings were the same after the command as before.
"""

import fcntl
import json
import os
import pty
import select
import struct
import sys
import termios
import time

EXPECT_LIMIT = 30


def set_size(fd, rows, cols):
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def read_some(master, out, timeout):
    ready, _, _ = select.select([master], [], [], timeout)
    if not ready:
        return True
    try:
        data = os.read(master, 65536)
    except OSError:
        return False
    if not data:
        return False
    out.extend(data)
    return True


def expect(master, out, text, pid):
    deadline = time.time() + EXPECT_LIMIT
    while text.encode() not in out:
        if time.time() > deadline:
            os.kill(pid, 9)
            sys.exit(f"pty_driver: {text!r} did not show within {EXPECT_LIMIT} s; "
                     f"output so far:\n{out.decode(errors='replace')}")
        read_some(master, out, 0.1)


def main():
    rows, cols, steps = int(sys.argv[1]), int(sys.argv[2]), json.loads(sys.argv[3])
    argv = sys.argv[5:]
    master, slave = pty.openpty()
    set_size(slave, rows, cols)
    before = termios.tcgetattr(slave)
    pid = os.fork()
    if pid == 0:
        os.setsid()
        fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
        for fd in (0, 1, 2):
            os.dup2(slave, fd)
        os.execvp(argv[0], argv)
    out = bytearray()
    for step in steps:
        if step[0] == "expect":
            expect(master, out, step[1], pid)
        elif step[0] == "send":
            os.write(master, step[1].encode())
        elif step[0] == "resize":
            set_size(master, step[1], step[2])
    # The slave stays open here (its settings are read below), so the master
    # never reaches end of file: wait for the child, then drain.
    deadline = time.time() + 30
    status = None
    while status is None and time.time() < deadline:
        read_some(master, out, 0.05)
        done, status_now = os.waitpid(pid, os.WNOHANG)
        if done:
            status = status_now
    if status is None:
        os.kill(pid, 9)
        _, status = os.waitpid(pid, 0)
    while read_some(master, out, 0.05) and select.select([master], [], [], 0)[0]:
        pass
    code = os.waitstatus_to_exitcode(status)
    after = termios.tcgetattr(slave)
    print(json.dumps({
        "output": out.decode(errors="replace"),
        "code": code if code >= 0 else 128 - code,
        "restored": before == after,
    }))


main()
