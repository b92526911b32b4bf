#!/usr/bin/env python3
"""Measures a warm start against a cold one, on a real Python project.

usage: python3 scripts/bench-warm.py [--runs N] [--requirement SPEC] [--debug]

Builds devinst (release; the debug build with --debug). Each run makes a
fresh repository holding a Python package that depends on SPEC (default:
SkyPilot's real code, `skypilot==0.14.1`, from PyPI) with the default
recipe (image `ubuntu:22.04`, which scripts/test-env.sh builds locally with
Python), and a linked worktree of it; then it times `devinst start` in the
main worktree (cold: the default setup steps make the venv and
`pip install -e /app` fetches every dependency) and in the linked one (warm:
it starts from the main worktree's finished steps), and checks the warm
instance imports the package from its own /app. The warm image is removed
before each run, so every warm start pays for making it. It prints both
medians and their ratio, and removes everything it made.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

PYPROJECT = """[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "benchproj"
version = "0.1.0"
dependencies = ["{requirement}"]

[tool.setuptools]
packages = ["benchproj"]
"""


def run(argv, cwd, env, check=True):
    proc = subprocess.run(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if check and proc.returncode != 0:
        sys.exit(f"{argv} in {cwd} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def timed_start(devinst, cwd, env):
    began = time.perf_counter()
    proc = run([devinst, "start"], cwd, env)
    return time.perf_counter() - began, proc.stderr


def one_run(devinst, requirement, tmp, index, env):
    main = os.path.join(tmp, f"bench{index}")
    os.makedirs(os.path.join(main, "benchproj"))
    with open(os.path.join(main, "pyproject.toml"), "w") as f:
        f.write(PYPROJECT.format(requirement=requirement))
    with open(os.path.join(main, "benchproj", "__init__.py"), "w") as f:
        f.write("WHERE = 'main'\n")
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.com"]
    run(git + ["init", "-q"], main, env)
    run(git + ["add", "."], main, env)
    run(git + ["commit", "-q", "-m", "project"], main, env)
    linked = main + "-linked"
    run(git + ["worktree", "add", "-q", linked], main, env)
    with open(os.path.join(linked, "benchproj", "__init__.py"), "w") as f:
        f.write("WHERE = 'linked'\n")
    for tree in (main, linked):
        run([devinst, "setup", f"bench{index}-{os.path.basename(tree)}"], tree, env)
    cold, _ = timed_start(devinst, main, env)
    with open(os.path.join(main, ".sky-dev", ".warm")) as f:
        image = f"devinst-warm/{json.load(f)['fingerprint']}:1"
    warm, said = timed_start(devinst, linked, env)
    if "started warm" not in said:
        sys.exit(f"the linked worktree did not start warm:\n{said}")
    where = run([devinst, "exec", "--", "python", "-c", "import benchproj; print(benchproj.WHERE)"],
                linked, env).stdout.strip()
    if where != "linked":
        sys.exit(f"the warm instance imported the package from {where!r}, not its own /app")
    for tree in (linked, main):
        run([devinst, "destroy", "--purge", "--yes"], tree, env, check=False)
    run(["docker", "rmi", image], tmp, env, check=False)
    return cold, warm


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--requirement", default="skypilot==0.14.1")
    parser.add_argument("--debug", action="store_true")
    args = parser.parse_args()
    profile = [] if args.debug else ["--release"]
    subprocess.run(["cargo", "build", "--quiet", *profile], cwd=ROOT, check=True)
    devinst = os.path.join(ROOT, "target", "debug" if args.debug else "release", "devinst")
    tmp = tempfile.mkdtemp(prefix="devinst-bench-warm-")
    env = dict(os.environ, DEVINST_DATA_DIR=os.path.join(tmp, "data"))
    try:
        colds, warms = [], []
        for index in range(args.runs):
            cold, warm = one_run(devinst, args.requirement, tmp, index, env)
            print(f"run {index + 1}: cold {cold:.1f} s, warm {warm:.1f} s", flush=True)
            colds.append(cold)
            warms.append(warm)
        cold, warm = statistics.median(colds), statistics.median(warms)
        print(f"devinst start on a project depending on {args.requirement} "
              f"({args.runs} runs, medians): cold {cold:.1f} s, warm {warm:.1f} s, "
              f"warm/cold {warm / cold:.3f}x")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
