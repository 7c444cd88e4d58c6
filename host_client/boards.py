"""Boards registered on a tracker, with the capabilities edge-server announces.

edge-server puts its topology document under "edge" in the tracker's
UPDATE_INFO; the tracker stores it verbatim and returns it in
summary()["server_info"]. Stock servers have no such field: they are listed
too, with `edge=False`, so a user sees why thread modes will not work there.
"""
from dataclasses import dataclass, field
from typing import List, Optional

from host_client.tracker import TrackerLink, parse_tracker


@dataclass
class Board:
    key: str
    address: str                     # "host:port" the tracker hands out
    edge: bool                       # runs edge-server (announces a topology)
    key_free: int                    # free servers of this key on the tracker
    key_pending: int                 # requests waiting for this key
    key_total: int                   # registered servers of this key
    topology: Optional[dict] = None  # the board's topology document
    info: dict = field(default_factory=dict)  # the raw server_info entry

    @property
    def name(self) -> Optional[str]:
        """The board's model ("FriendlyElec NanoPi M4"), from its device tree or DMI."""
        return (self.topology or {}).get("board")

    @property
    def hostname(self) -> Optional[str]:
        return (self.info.get("edge") or {}).get("hostname") if self.edge else None

    @property
    def version(self) -> Optional[str]:
        """The tvm-edge-rpc version the board runs (None: stock, or older than 0.1.0)."""
        return (self.info.get("edge") or {}).get("version") if self.edge else None

    @property
    def state(self) -> Optional[str]:
        """"free" or "busy" as this board last told the tracker; None for a stock
        server (the tracker itself only counts free servers per key)."""
        state = self.info.get("edge_state")
        if state in ("free", "busy"):
            return state
        return {True: "busy", False: "free"}.get(self.busy)   # a slot's own report

    @property
    def modes(self) -> List[str]:
        """The thread modes this board accepts, one per distinct request shape."""
        return mode_names(self.topology) if self.topology else []

    @property
    def classes(self) -> List[dict]:
        return list((self.topology or {}).get("classes") or [])

    @property
    def cores(self) -> Optional[int]:
        if not self.topology:
            return None
        return sum(1 for cpu in self.topology.get("cpus", []) if cpu.get("online") is not False)

    @property
    def slot(self) -> Optional[dict]:
        """The slot this server is (edge-server --slots), or None for a whole board."""
        slot = (self.topology or {}).get("slot")
        return slot if isinstance(slot, dict) else None

    @property
    def busy(self) -> Optional[bool]:
        """Whether a client is in a session on this slot (None: not told)."""
        slot = self.slot
        return bool(slot["busy"]) if slot and isinstance(slot.get("busy"), bool) else None

    def describe_slot(self) -> str:
        """'1/2 cpus 1 busy' or '-' for a whole board."""
        slot = self.slot
        if not slot:
            return "-"
        from edge_common.cpulist import format_cpulist
        state = {True: "busy", False: "free", None: "?"}[self.busy]
        text = "%s/%s cpus %s %s" % (slot.get("index"), slot.get("count"),
                                     format_cpulist(slot.get("cpus") or []), state)
        if isinstance(slot.get("slowdown"), (int, float)):
            text += " (slowdown %.1f%%)" % (100 * slot["slowdown"])
        return text

    @property
    def arch(self) -> Optional[str]:
        return (self.topology or {}).get("arch")

    @property
    def suggested_target(self) -> Optional[dict]:
        return (self.topology or {}).get("tvm_target")

    def describe_classes(self) -> str:
        """'big 2×cortex-a72@1.8GHz, little 4×cortex-a53@1.4GHz' (or why not)."""
        if not self.edge:
            return "stock TVM server (no thread modes)"
        return describe_classes(self.topology or {}) or "unknown topology"

    @property
    def sandbox(self) -> str:
        """What the board's sessions are confined by, as the board says it
        ("landlock v7 + seccomp", "seccomp only (kernel lacks landlock)", ...)."""
        if not self.edge:
            return "none (stock server)"
        box = self.info.get("edge", {}).get("sandbox")
        if not isinstance(box, dict):
            return "unknown (older edge-server)"
        return str(box.get("applied", "unknown"))

    def to_json(self) -> dict:
        return {"board": self.name, "host": self.hostname, "address": self.address,
                "key": self.key, "edge": self.edge, "version": self.version,
                "state": self.state, "modes": self.modes,
                "key_free": self.key_free, "key_pending": self.key_pending,
                "key_total": self.key_total,
                "classes": self.classes, "cores": self.cores, "arch": self.arch,
                "suggested_target": self.suggested_target, "slot": self.slot,
                "busy": self.busy, "sandbox": self.sandbox}


def describe_classes(topology: dict) -> str:
    parts = []
    for cls in sorted(topology.get("classes") or [], key=lambda c: c.get("rank", 0)):
        count = len(cls.get("cpus") or [])
        if cls.get("uarch"):
            text = "%s %d×%s" % (cls.get("name"), count, cls["uarch"])
        else:
            text = "%s %d core%s" % (cls.get("name"), count, "" if count == 1 else "s")
        if cls.get("max_freq_khz"):
            text += "@%sGHz" % _ghz(cls["max_freq_khz"])
        parts.append(text)
    return ", ".join(parts)


def mode_names(topology: dict) -> List[str]:
    """["all", "big", "big:1", "big:2", "little", ..., "cpus:0-5"]: what a host
    may ask this board for (every mode here resolves on it)."""
    from edge_common.cpulist import format_cpulist
    from edge_common.modes import ModeError, resolve

    names = []
    for candidate in ["all"] + [str(c.get("name")) for c in
                                sorted(topology.get("classes") or [],
                                       key=lambda c: c.get("rank", 0))]:
        try:
            count = len(resolve(topology, candidate).cpus)
        except ModeError:
            continue
        names.append(candidate)
        if candidate != "all":
            names += ["%s:%d" % (candidate, n) for n in range(1, count + 1)]
    usable = [c["id"] for c in topology.get("cpus") or []
              if c.get("online") is not False and c.get("allowed") is not False]
    if usable:
        names.append("cpus:" + format_cpulist(usable))
    return names


def modes_text(names: List[str]) -> str:
    """"all, big[:1-2], little[:1-4], cpus:0-5": mode_names() in a table cell."""
    parts, counts = [], {}
    for name in names:
        head, _, tail = name.partition(":")
        if tail.isdigit():
            counts[head] = max(counts.get(head, 0), int(tail))
        else:
            parts.append(name)
    return ", ".join("%s[:1-%d]" % (p, counts[p]) if counts.get(p, 0) > 1
                     else ("%s[:1]" % p if counts.get(p) else p) for p in parts)


def _ghz(khz: int) -> str:
    text = "%.2f" % (khz / 1e6)
    return text.rstrip("0").rstrip(".") if "." in text else text


def topology_of(info: dict) -> Optional[dict]:
    """The topology document in a server_info entry, if the server sent one."""
    edge = info.get("edge")
    if not isinstance(edge, dict):
        return None
    if isinstance(edge.get("topology"), dict):
        return edge["topology"]
    return edge if "classes" in edge or "cpus" in edge else None


def boards_from_summary(summary: dict) -> List[Board]:
    queues = summary.get("queue_info") or {}
    infos = [i for i in summary.get("server_info") or []
             if str(i.get("key", "")).startswith("server:")]
    totals: dict = {}
    for info in infos:
        key = info["key"].split(":", 1)[1]
        totals[key] = totals.get(key, 0) + 1
    boards = []
    for info in infos:
        key = info["key"].split(":", 1)[1]
        addr = info.get("addr") or [None, None]
        queue = queues.get(key) or {}
        topology = topology_of(info)
        boards.append(Board(key=key, address="%s:%s" % (addr[0], addr[1]),
                            edge="edge" in info, key_free=int(queue.get("free", 0)),
                            key_pending=int(queue.get("pending", 0)), key_total=totals[key],
                            topology=topology, info=info))
    boards.sort(key=lambda b: (b.key, b.address))
    return boards


def list_boards(tracker: Optional[str] = None, timeout: float = 10.0) -> List[Board]:
    """Every server registered on the tracker ("host:port", default
    TVM_TRACKER_HOST/PORT), edge-server boards with their capabilities."""
    with TrackerLink(parse_tracker(tracker), timeout=timeout) as link:
        return boards_from_summary(link.summary())


def pending_keys(tracker: Optional[str] = None, timeout: float = 10.0) -> dict:
    """Keys with requests waiting but no server registered: {key: pending}."""
    with TrackerLink(parse_tracker(tracker), timeout=timeout) as link:
        summary = link.summary()
    listed = {b.key for b in boards_from_summary(summary)}
    return {k: q.get("pending", 0) for k, q in (summary.get("queue_info") or {}).items()
            if k not in listed and q.get("pending", 0)}
