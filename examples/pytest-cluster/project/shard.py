"""One node's part of a sharded sum, sent to the head.

Node RANK of N sums the numbers below 1000 whose remainder by N is RANK,
sends "RANK SUM" to the head's collector, and prints its part as JSON.
"""

import json
import os
import socket
import time

TOTAL = 1000
PORT = 7000


def send(host, line):
    # The collector may still be starting: try for a few seconds.
    for _ in range(50):
        try:
            with socket.create_connection((host, PORT), timeout=5) as conn:
                conn.sendall(line.encode())
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"cannot reach the head at {host}:{PORT}")


def main():
    rank = int(os.environ["DEVINST_NODE_RANK"])
    nodes = int(os.environ["DEVINST_NUM_NODES"])
    part = sum(range(rank, TOTAL, nodes))
    send(os.environ["DEVINST_HEAD_IP"], f"{rank} {part}\n")
    print(json.dumps({"rank": rank, "sum": part}), flush=True)


if __name__ == "__main__":
    main()
