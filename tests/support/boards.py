"""Topology documents (schema 1) for mode tests: hand-written boards that
cover the cases resolution must get right, plus every fixture board
(tests/fixtures/boards/<name>/): its expected.json, and the real probe run
on its tree.
"""
import json
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "boards"

CLASS_NAMES = {1: ["big"], 2: ["big", "little"], 3: ["prime", "big", "little"],
               4: ["prime", "big", "mid", "little"]}


def class_names(count: int) -> List[str]:
    return CLASS_NAMES.get(count) or ["class%d" % i for i in range(count)]


def make_board(classes: Sequence[Tuple[Sequence[int], Optional[str]]], offline: Iterable[int] = (),
               disallowed: Iterable[int] = (), siblings: Sequence[Sequence[int]] = (),
               board: Optional[str] = None, arch: str = "aarch64") -> dict:
    """classes: [(cpus, uarch)] fastest first; siblings: groups of SMT threads."""
    offline, disallowed = set(offline), set(disallowed)
    names = class_names(len(classes))
    sib: Dict[int, List[int]] = {}
    for group in siblings:
        for cpu in group:
            sib[cpu] = sorted(group)
    cpus, class_docs = [], []
    for rank, ((ids, uarch), name) in enumerate(zip(classes, names)):
        class_docs.append({"name": name, "rank": rank, "cpus": sorted(ids), "uarch": uarch,
                           "max_freq_khz": None, "capacity": None})
        for cpu in ids:
            cpus.append({"id": cpu, "online": cpu not in offline,
                         "allowed": cpu not in offline and cpu not in disallowed,
                         "uarch": uarch, "midr": None, "max_freq_khz": None, "capacity": None,
                         "cluster": None, "class": name, "core_id": None, "package": 0,
                         "smt_siblings": sib.get(cpu, [cpu])})
    cpus.sort(key=lambda c: c["id"])
    return {"schema": 1, "board": board, "arch": arch, "cpus": cpus, "clusters": [],
            "classes": class_docs, "isa": [], "tvm_target": {"kind": "llvm"}, "warnings": []}


HAND_BOARDS = {
    "rk3399": make_board([([4, 5], "cortex-a72"), ([0, 1, 2, 3], "cortex-a53")]),
    "rk3588": make_board([([4, 5, 6, 7], "cortex-a76"), ([0, 1, 2, 3], "cortex-a55")]),
    "rpi4": make_board([([0, 1, 2, 3], "cortex-a72")]),
    "phone": make_board([([7], "cortex-x1"), ([4, 5, 6], "cortex-a78"),
                         ([0, 1, 2, 3], "cortex-a55")]),
    "four-class": make_board([([9], "cortex-x4"), ([7, 8], "cortex-a720"),
                              ([4, 5, 6], "cortex-a720"), ([0, 1, 2, 3], "cortex-a520")]),
    "five-class": make_board([([4], None), ([3], None), ([2], None), ([1], None), ([0], None)]),
    # i7-12700H-like: 6 P-cores with SMT siblings (0,1)...(10,11), 8 E-cores.
    "intel-hybrid": make_board([(list(range(12)), "golden-cove"), (list(range(12, 20)), "gracemont")],
                               siblings=[(i, i + 1) for i in range(0, 12, 2)], arch="x86_64"),
    # 4 cores, 8 threads, siblings (i, i+4) as Linux numbers them on most x86.
    "x86-smt": make_board([(list(range(8)), None)], siblings=[(i, i + 4) for i in range(4)],
                          arch="x86_64"),
    "rk3399-cpu5-offline": make_board([([4, 5], "cortex-a72"), ([0, 1, 2, 3], "cortex-a53")],
                                      offline=[5]),
    "rk3399-little-only-allowed": make_board([([4, 5], "cortex-a72"), ([0, 1, 2, 3], "cortex-a53")],
                                             disallowed=[4, 5]),
    "this-2cpu-x86": make_board([([0, 1], None)], arch="x86_64"),
}


def fixture_boards() -> Dict[str, dict]:
    out = {}
    for path in sorted(FIXTURES.glob("*/expected.json")):
        out["fixture:" + path.parent.name] = json.loads(path.read_text())
    return out


def probed_fixture_boards() -> Dict[str, dict]:
    """Every fixture tree run through the real probe (edge_server.board.topology)."""
    from edge_server.board.topology import probe
    return {"probe:" + d.name: probe(str(d)) for d in sorted(FIXTURES.iterdir())
            if (d / "sys").is_dir()}


def real_topology() -> dict:
    """This machine's topology, from the real probe."""
    from edge_server.board.topology import probe
    return probe("/")


def all_boards() -> Dict[str, dict]:
    boards = dict(HAND_BOARDS)
    boards.update(fixture_boards())
    boards.update(probed_fixture_boards())
    boards["live:this-machine"] = real_topology()
    return boards


def usable(topology: dict) -> List[int]:
    return sorted(c["id"] for c in topology["cpus"]
                  if c.get("online") is not False and c.get("allowed") is not False)


def physical_cores(topology: dict, cpus: Iterable[int]) -> List[int]:
    """One representative (lowest id) per physical core among usable `cpus`."""
    table = {c["id"]: c for c in topology["cpus"]}
    ok = set(usable(topology))
    chosen, taken = [], set()
    for cpu in sorted(cpus):
        if cpu in ok and cpu not in taken:
            chosen.append(cpu)
            taken.update(table[cpu].get("smt_siblings") or [cpu])
    return chosen
