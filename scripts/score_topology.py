"""Score the topology probe against boards whose answer is known.

    python scripts/score_topology.py [DIR]      (default: tests/fixtures/boards)

DIR holds one directory per board: the board's proc/ and sys/ (a fixture or
a scripts/capture-board.sh dump) and an expected.json written by hand. Only
online CPUs count, as they are the ones a session can use. Two scores:

- cluster partition: the probe's clusters, restricted to online CPUs, are
  exactly the expected ones (per board);
- uarch per cluster: every online CPU of an expected cluster has the
  expected uarch (per cluster).

TVM's own split (two max frequencies -> big/little) is scored beside it for
the partition, since that is what the probe replaces.
"""
import json
import sys
from pathlib import Path
from typing import Dict, FrozenSet, List, Set, Tuple

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(REPO))

from edge_server.board.topology import probe  # noqa: E402

Partition = Set[FrozenSet[int]]


def partition(doc: dict) -> Partition:
    online = {c["id"] for c in doc["cpus"] if c["online"]}
    parts = {frozenset(set(cl["cpus"]) & online) for cl in doc["clusters"]}
    return {p for p in parts if p}


def tvm_partition(doc: dict) -> Partition:
    """What TVM's cpuinfo_max_freq split would call the groups (online CPUs by frequency)."""
    groups: Dict[object, Set[int]] = {}
    for c in doc["cpus"]:
        if c["online"]:
            groups.setdefault(c["max_freq_khz"], set()).add(c["id"])
    return {frozenset(g) for g in groups.values()}


def score_board(got: dict, want: dict) -> Tuple[bool, bool, int, int]:
    """(partition right, TVM partition right, clusters with the right uarch, clusters)."""
    got_uarch = {c["id"]: c["uarch"] for c in got["cpus"]}
    want_uarch = {c["id"]: c["uarch"] for c in want["cpus"]}
    clusters = sorted(partition(want), key=min)
    right = sum(all(got_uarch.get(i) == want_uarch[i] for i in cl) for cl in clusters)
    return (partition(got) == partition(want), tvm_partition(want) == partition(want),
            right, len(clusters))


def score(root: Path) -> dict:
    rows = []
    for expected in sorted(root.glob("*/expected.json")):
        want = json.loads(expected.read_text())
        got = probe(str(expected.parent))
        rows.append((expected.parent.name,) + score_board(got, want))
    boards = len(rows)
    clusters = sum(r[4] for r in rows)
    return {
        "rows": rows,
        "partition": sum(r[1] for r in rows) / boards if boards else 0.0,
        "tvm_partition": sum(r[2] for r in rows) / boards if boards else 0.0,
        "uarch": sum(r[3] for r in rows) / clusters if clusters else 0.0,
        "boards": boards, "clusters": clusters,
    }


def main(argv: List[str]) -> int:
    root = Path(argv[0]) if argv else REPO / "tests" / "fixtures" / "boards"
    result = score(root)
    for name, part, tvm, right, total in result["rows"]:
        print("%-28s partition %-5s (TVM %-5s)  uarch %d/%d" % (name, "ok" if part else "WRONG",
                                                                "ok" if tvm else "wrong",
                                                                right, total))
    print("cluster partition: %.1f%% of %d boards (TVM's frequency split: %.1f%%)"
          % (100 * result["partition"], result["boards"], 100 * result["tvm_partition"]))
    print("uarch per cluster: %.1f%% of %d clusters" % (100 * result["uarch"], result["clusters"]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
