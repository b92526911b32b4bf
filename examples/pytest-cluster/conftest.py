"""A session-scoped fixture that gives the tests a real 2-node devinst
instance, as the Skyward document's CI section does with its compute pool.

The project under `project/` is copied into a fresh git repository (your own
project would use its repository's root instead), set up and started once
for the session, and destroyed at its end. `DEVINST` names the devinst
executable (default: `devinst` on PATH).
"""

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

HERE = Path(__file__).parent
DEVINST = os.environ.get("DEVINST", "devinst")


@dataclass
class Cluster:
    root: Path
    status: dict

    def devinst(self, *args, check=True):
        return subprocess.run(
            [DEVINST, *args],
            cwd=self.root,
            check=check,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
        )

    def exec(self, *args):
        """`devinst exec ARGS`; its stdout."""
        return self.devinst("exec", *args).stdout


def git(root, *args):
    subprocess.run(
        ["git", "-c", "user.name=ci", "-c", "user.email=ci@example.com", *args],
        cwd=root,
        check=True,
        capture_output=True,
    )


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    root = tmp_path_factory.mktemp("cluster-project")
    shutil.copytree(HERE / "project", root, dirs_exist_ok=True)
    git(root, "init", "-q")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "project")
    up = Cluster(root, {})
    try:
        up.devinst("setup")
        up.devinst("start")
        up.status = json.loads(up.devinst("status", "--json").stdout)
        yield up
    except subprocess.CalledProcessError as err:
        pytest.fail(f"{' '.join(err.cmd)} failed:\n{err.stderr}")
    finally:
        up.devinst("destroy", "--purge", "--yes", check=False)
