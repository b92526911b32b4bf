"""A small distributed check on a real 2-node instance: each node computes
its shard of a sum by its rank and sends it to the head over the cluster's
network."""

import json
import time

TOTAL = 1000


def test_every_node_is_up_with_an_address(cluster):
    nodes = cluster.status["nodes"]
    assert [node["rank"] for node in nodes] == [0, 1]
    assert all(node["state"] == "running" for node in nodes)
    addresses = [node["address"] for node in nodes]
    assert all(addresses) and len(set(addresses)) == 2


def test_the_nodes_share_a_sum_by_rank(cluster):
    cluster.exec("--node", "0", "--", "sh", "-c", "python3 collect.py >collect.log 2>&1 &")
    out = cluster.exec("--all", "--", "python3", "shard.py")
    parts = {}
    for line in out.splitlines():
        node, _, text = line.partition("] ")
        part = json.loads(text)
        assert node == f"[node {part['rank']}"
        parts[part["rank"]] = part["sum"]
    assert sorted(parts) == [0, 1]
    assert sum(parts.values()) == sum(range(TOTAL))

    collected = cluster.root / "collected.json"
    for _ in range(100):
        if collected.exists():
            break
        time.sleep(0.1)
    got = json.loads(collected.read_text())
    assert got == {"ranks": [0, 1], "total": sum(range(TOTAL))}
