"""Runs on the head: takes one "RANK SUM" line from each node and writes
what it got to collected.json, then exits."""

import json
import os
import socket

PORT = 7000


def main():
    nodes = int(os.environ["DEVINST_NUM_NODES"])
    parts = {}
    with socket.create_server(("0.0.0.0", PORT)) as server:
        while len(parts) < nodes:
            conn, _ = server.accept()
            with conn:
                rank, part = conn.makefile().readline().split()
                parts[int(rank)] = int(part)
    with open("collected.json.tmp", "w") as out:
        json.dump({"ranks": sorted(parts), "total": sum(parts.values())}, out)
    os.replace("collected.json.tmp", "collected.json")


if __name__ == "__main__":
    main()
