#!/usr/bin/env python3
"""Measures what a devinst shim costs against `docker exec`, in one session.

usage: python3 scripts/bench-exec.py [--runs N] [--mib M] [--debug]

Builds devinst (release; the debug build with --debug), sets up a throwaway worktree whose instance runs
the test image `devinst-test/busybox:1` (scripts/test-env.sh builds it),
then, interleaving the three so drift hits all alike, with the shim on its
two paths (through the instance's agent, and through the engine as
DEVINST_EXEC=engine forces):
  1. a shim running `true` vs `docker exec <container> true`: median wall
     time, the ratio, and peak memory (max RSS);
  2. M MiB piped through a shim's `cat` vs `docker exec -i <container> cat`
     (`cat FILE | ... | cat >/dev/null`, so both ends are pipes).
Everything it creates is removed at the end. It exits non-zero when a step
fails (a command fails, or the bytes piped through come back changed), never
because of a ratio: CI runs it with few runs (`--runs 5 --mib 16 --debug`)
so that it keeps working, not to judge the figures.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

IMAGE = "devinst-test/busybox:1"


def timed(argv, stdin=None, env=None):
    """Wall seconds of one run of argv."""
    start = time.perf_counter()
    proc = subprocess.run(argv, stdin=stdin or subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, env=env)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{argv} failed: {proc.stderr.decode()}")
    return wall


def peak_rss_mib(argv, env=None):
    """Peak RSS of argv, measured by GNU time: a small parent, so the figure
    is not inflated by a copy of this Python process (ru_maxrss counts the
    memory a child had before exec)."""
    out = subprocess.run(["/usr/bin/time", "-f", "%M", *argv], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=True,
                         env=env)
    return int(out.stderr.strip().splitlines()[-1]) / 1024


def same_bytes_back(cat_shim, data):
    """The shim's `cat` gives back exactly what it was fed."""
    with open(data, "rb") as stdin:
        proc = subprocess.run([cat_shim], stdin=stdin, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
    with open(data, "rb") as f:
        fed = f.read()
    if proc.returncode != 0 or proc.stdout != fed:
        sys.exit(f"{cat_shim} gave back {len(proc.stdout)} bytes of {len(fed)} "
                 f"(exit {proc.returncode}): {proc.stderr.decode()}")


def interleaved(cases, runs, stdin_path=None):
    """Median wall seconds of each (name, argv, env) case, run in turn."""
    walls = {name: [] for name, _, _ in cases}
    for _ in range(runs):
        for name, argv, env in cases:
            if stdin_path:
                with open(stdin_path, "rb") as stdin:
                    walls[name].append(timed(argv, stdin=stdin, env=env))
            else:
                walls[name].append(timed(argv, env=env))
    return {name: statistics.median(w) for name, w in walls.items()}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=60)
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--debug", action="store_true",
                        help="use the debug build (quick to build; slower figures)")
    args = parser.parse_args()
    repo_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    profile = [] if args.debug else ["--release"]
    subprocess.run(["cargo", "build", *profile, "--quiet"], cwd=repo_root, check=True)
    devinst = os.path.join(repo_root, "target", "debug" if args.debug else "release", "devinst")

    tmp = tempfile.mkdtemp(prefix="devinst-bench")
    env = dict(os.environ, DEVINST_DATA_DIR=os.path.join(tmp, "data"))
    work = os.path.join(tmp, "benchwt")
    os.makedirs(work)
    with open(os.path.join(work, "devinst.toml"), "w") as f:
        f.write(f'[container]\nimage = "{IMAGE}"\n[setup]\ncommands = []\n'
                '[shims]\nt = "true"\npipe-cat = "cat"\n[ports]\nhost_range = [47900, 47950]\n')
    container = None
    try:
        subprocess.run([devinst, "-q", "setup"], cwd=work, env=env, check=True)
        subprocess.run([devinst, "-q", "start"], cwd=work, env=env, check=True,
                       stdout=subprocess.DEVNULL)
        container = subprocess.run(
            ["sh", "-c", ". ./.sky-dev/.instance && printf %s \"$DEVINST_CONTAINER\""],
            cwd=work, check=True, capture_output=True, text=True).stdout
        os.environ["DEVINST_DATA_DIR"] = env["DEVINST_DATA_DIR"]
        os.chdir(work)
        agent_env = dict(os.environ, DEVINST_EXEC="agent")
        engine_env = dict(os.environ, DEVINST_EXEC="engine")
        shim = os.path.join(work, ".sky-dev", "bin", "t")
        docker = ["docker", "exec", container, "true"]
        cases = [("agent", [shim], agent_env), ("engine", [shim], engine_env),
                 ("docker", docker, None)]
        interleaved(cases, 5)  # warm every path
        ms = {k: v * 1000 for k, v in interleaved(cases, args.runs).items()}
        rss = {name: max(peak_rss_mib(argv, env) for _ in range(5)) for name, argv, env in cases}
        print(f"exec `true` ({args.runs} interleaved runs, medians):")
        print(f"  shim, agent    {ms['agent']:7.1f} ms   peak RSS {rss['agent']:.1f} MiB"
              f"   {ms['agent'] / ms['docker']:5.2f}x")
        print(f"  shim, engine   {ms['engine']:7.1f} ms   peak RSS {rss['engine']:.1f} MiB"
              f"   {ms['engine'] / ms['docker']:5.2f}x")
        print(f"  docker exec    {ms['docker']:7.1f} ms   peak RSS {rss['docker']:.1f} MiB")

        data = os.path.join(tmp, "data.bin")
        with open(data, "wb") as f:
            chunk = os.urandom(1 << 20)
            for _ in range(args.mib):
                f.write(chunk)
        # Named so it shadows no host command (which would need consent).
        cat_shim = os.path.join(work, ".sky-dev", "bin", "pipe-cat")
        same_bytes_back(cat_shim, data)
        # Through pipes at both ends, as in `producer | shim | consumer`.
        piped = lambda cmd: ["sh", "-c", f"cat {data} | {cmd} | cat >/dev/null"]
        cases = [("agent", piped(cat_shim), agent_env), ("engine", piped(cat_shim), engine_env),
                 ("docker", piped(f"docker exec -i {container} cat"), None)]
        secs = interleaved(cases, 5)
        print(f"pipe {args.mib} MiB through `cat` (5 interleaved runs, medians):")
        for name, label in (("agent", "shim, agent   "), ("engine", "shim, engine  "),
                            ("docker", "docker exec -i")):
            print(f"  {label} {secs[name]:7.2f} s   ({args.mib / secs[name]:5.0f} MiB/s)"
                  f"   {secs[name] / secs['docker']:5.2f}x")
    finally:
        if container:
            subprocess.run(["docker", "rm", "-f", container], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
        shutil.rmtree(tmp, ignore_errors=True)


main()
