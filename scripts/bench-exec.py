#!/usr/bin/env python3
"""Measures what a devinst shim costs against `docker exec`, in one session.

usage: python3 scripts/bench-exec.py [--runs N] [--mib M] [--debug]

Builds devinst (release; the debug build with --debug), sets up a throwaway worktree whose instance runs
the test image `devinst-test/busybox:1` (scripts/test-env.sh builds it),
then, interleaving the two so drift hits both alike:
  1. a shim running `true` vs `docker exec <container> true`: median wall
     time, the ratio, and the shim's peak memory (max RSS, from wait4);
  2. M MiB piped through a shim's `cat` vs `docker exec -i <container> cat`.
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


def timed(argv, stdin=None):
    """Wall seconds of one run of argv."""
    start = time.perf_counter()
    proc = subprocess.run(argv, stdin=stdin or subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{argv} failed: {proc.stderr.decode()}")
    return wall


def peak_rss_mib(argv):
    """Peak RSS of argv, measured by GNU time: a small parent, so the figure
    is not inflated by a copy of this Python process (ru_maxrss counts the
    memory a child had before exec)."""
    out = subprocess.run(["/usr/bin/time", "-f", "%M", *argv], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=True)
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


def interleaved(a, b, runs):
    results = {"a": [], "b": []}
    for _ in range(runs):
        results["a"].append(timed(a))
        results["b"].append(timed(b))
    return results


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
                '[shims]\nt = "true"\ncat = "cat"\n[ports]\nhost_range = [47900, 47950]\n')
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
        shim = os.path.join(work, ".sky-dev", "bin", "t")
        for _ in range(5):  # warm both paths
            timed([shim])
            timed(["docker", "exec", container, "true"])
        r = interleaved([shim], ["docker", "exec", container, "true"], args.runs)
        shim_ms = statistics.median(r["a"]) * 1000
        docker_ms = statistics.median(r["b"]) * 1000
        rss_mib = max(peak_rss_mib([shim]) for _ in range(5))
        docker_rss = max(peak_rss_mib(["docker", "exec", container, "true"]) for _ in range(5))
        print(f"exec `true` ({args.runs} interleaved runs, medians):")
        print(f"  shim           {shim_ms:7.1f} ms   peak RSS {rss_mib:.1f} MiB")
        print(f"  docker exec    {docker_ms:7.1f} ms   peak RSS {docker_rss:.1f} MiB")
        print(f"  ratio          {shim_ms / docker_ms:7.2f}x")

        data = os.path.join(tmp, "data.bin")
        with open(data, "wb") as f:
            chunk = os.urandom(1 << 20)
            for _ in range(args.mib):
                f.write(chunk)
        cat_shim = os.path.join(work, ".sky-dev", "bin", "cat")
        same_bytes_back(cat_shim, data)
        walls = {"a": [], "b": []}
        for _ in range(5):
            for key, argv in (("a", [cat_shim]), ("b", ["docker", "exec", "-i", container, "cat"])):
                with open(data, "rb") as stdin:
                    walls[key].append(timed(argv, stdin=stdin))
        shim_s, docker_s = statistics.median(walls["a"]), statistics.median(walls["b"])
        print(f"pipe {args.mib} MiB through `cat` (5 interleaved runs, medians):")
        print(f"  shim           {shim_s:7.2f} s   ({args.mib / shim_s:.0f} MiB/s)")
        print(f"  docker exec -i {docker_s:7.2f} s   ({args.mib / docker_s:.0f} MiB/s)")
        print(f"  ratio          {shim_s / docker_s:7.2f}x")
    finally:
        if container:
            subprocess.run(["docker", "rm", "-f", container], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
        shutil.rmtree(tmp, ignore_errors=True)


main()
