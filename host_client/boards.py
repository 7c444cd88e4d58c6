"""Boards registered on a tracker, with the capabilities edge-server announces.

edge-server puts its topology document under "edge" in the tracker's
UPDATE_INFO; the tracker stores it verbatim and returns it in
summary()["server_info"]. Stock servers have no such field: they are listed
too, with `edge=False`, so a user sees why thread modes will not work there.
A board whose document does not follow the schema is listed with the reason
in `topology_error`, so one broken board never hides the others.
"""
from dataclasses import dataclass, field
from typing import List, Optional

from edge_common.address import format_address
from edge_common.cpulist import format_cpulist
from edge_common.render import describe_classes as _describe
from edge_common.topology import CoreClass, Topology, TopologyError, as_topology
from host_client.tracker import TrackerLink, parse_tracker


@dataclass
class Board:
    key: str
    address: str                     # "host:port" the tracker hands out
    edge: bool                       # runs edge-server (announces a topology)
    key_free: int                    # free servers of this key on the tracker
    key_pending: int                 # requests waiting for this key
    key_total: int                   # registered servers of this key
    topology: Optional[Topology] = None   # the board's topology document
    topology_error: Optional[str] = None  # why an announced document was not usable
    info: dict = field(default_factory=dict)  # the raw server_info entry

    def __post_init__(self):
        if isinstance(self.topology, dict):   # a Board built by hand from a document
            self.topology = Topology.from_dict(self.topology)

    @property
    def name(self) -> Optional[str]:
        """The board's model ("FriendlyElec NanoPi M4"), from its device tree or DMI."""
        return self.topology.board if self.topology else None

    @property
    def hostname(self) -> Optional[str]:
        return self._edge_text("hostname")

    @property
    def version(self) -> Optional[str]:
        """The tvm-edge-rpc version the board runs (None: stock, or older than 0.1.0)."""
        return self._edge_text("version")

    def _edge_text(self, name: str) -> Optional[str]:
        """A string the board put in its edge info."""
        return self._edge_value(name, str)

    def _edge_value(self, name: str, kind: type):
        """A value of type `kind` the board put in its edge info, else None (read
        raw: also when the topology in it was unusable)."""
        edge = self.info.get("edge") if self.edge else None
        value = edge.get(name) if isinstance(edge, dict) else None
        return value if isinstance(value, kind) else None

    @property
    def conditions(self) -> Optional[dict]:
        """Governors, clocks and temperatures the board read when it registered
        (edge_server.board.conditions); None for a stock server or an older board."""
        return self._edge_value("conditions", dict)

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
    def classes(self) -> List[CoreClass]:
        return self.topology.ranked_classes() if self.topology else []

    @property
    def cores(self) -> Optional[int]:
        if not self.topology:
            return None
        return sum(1 for cpu in self.topology.cpus if cpu.online is not False)

    @property
    def slot(self) -> Optional[dict]:
        """The slot this server is (edge-server --slots), or None for a whole board."""
        return self.topology.slot if self.topology else None

    @property
    def busy(self) -> Optional[bool]:
        """Whether a client is in a session on this slot (None: a whole board, or not
        told). A slot server says so in `edge_state`, a few bytes per change; older
        ones re-sent their whole document with slot.busy instead."""
        slot = self.slot
        if not slot:
            return None
        state = self.info.get("edge_state")
        if state in ("free", "busy"):
            return state == "busy"
        return bool(slot["busy"]) if isinstance(slot.get("busy"), bool) else None

    def describe_slot(self) -> str:
        """'1/2 cpus 1 busy' or '-' for a whole board."""
        slot = self.slot
        if not slot:
            return "-"
        state = {True: "busy", False: "free", None: "?"}[self.busy]
        text = "%s/%s cpus %s %s" % (slot.get("index"), slot.get("count"),
                                     format_cpulist(slot.get("cpus") or []), state)
        if isinstance(slot.get("slowdown"), (int, float)):
            text += " (slowdown %.1f%%)" % (100 * slot["slowdown"])
        return text

    @property
    def arch(self) -> Optional[str]:
        return self.topology.arch if self.topology else None

    @property
    def suggested_target(self) -> Optional[dict]:
        return self.topology.tvm_target if self.topology else None

    def describe_classes(self) -> str:
        """'big 2×cortex-a72@1.8GHz, little 4×cortex-a53@1.4GHz' (or why not)."""
        if not self.edge:
            return "stock TVM server (no thread modes)"
        if self.topology is None:
            return "unusable topology: %s" % self.topology_error
        return _describe(self.topology) or "no core classes"

    @property
    def sandbox(self) -> str:
        """What the board's sessions are confined by, as the board says it
        ("landlock v7 + seccomp", "seccomp only (kernel lacks landlock)", ...)."""
        if not self.edge:
            return "none (stock server)"
        box = self._edge_value("sandbox", dict)
        if box is None:
            return "unknown (older edge-server)"
        return str(box.get("applied", "unknown"))

    def to_json(self) -> dict:
        return {"board": self.name, "host": self.hostname, "address": self.address,
                "key": self.key, "edge": self.edge, "version": self.version,
                "state": self.state, "modes": self.modes,
                "key_free": self.key_free, "key_pending": self.key_pending,
                "key_total": self.key_total,
                "classes": [c.to_dict() for c in self.classes], "cores": self.cores,
                "arch": self.arch, "suggested_target": self.suggested_target,
                "slot": self.slot, "busy": self.busy, "sandbox": self.sandbox,
                "topology_error": self.topology_error}


def mode_names(topology) -> List[str]:
    """["all", "big", "big:1", "big:2", "little", ..., "cpus:0-5"]: what a host
    may ask this board for (every mode here resolves on it). topology: a
    Topology or its dict."""
    from edge_common.modes import ModeError, resolve

    topology = as_topology(topology)
    names = []
    for candidate in ["all"] + [c.name for c in topology.ranked_classes()]:
        try:
            count = len(resolve(topology, candidate).cpus)
        except ModeError:
            continue
        names.append(candidate)
        if candidate != "all":
            names += ["%s:%d" % (candidate, n) for n in range(1, count + 1)]
    usable = topology.usable_cpus()
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
        topology, error = _topology(info)
        boards.append(Board(key=key, address=_address(addr),
                            edge="edge" in info, key_free=int(queue.get("free", 0)),
                            key_pending=int(queue.get("pending", 0)), key_total=totals[key],
                            topology=topology, topology_error=error, info=info))
    boards.sort(key=lambda b: (b.key, b.address))
    return boards


def _address(addr) -> str:
    """The tracker's [host, port] as HOST:PORT (IPv6 in brackets)."""
    try:
        return format_address(str(addr[0]), int(addr[1]))
    except (TypeError, ValueError, IndexError):
        return "%s" % (addr,)


def _topology(info: dict):
    """(Topology, None), (None, why) for a malformed one, (None, None) for a stock server."""
    if "edge" not in info:
        return None, None
    try:
        return Topology.from_dict(info["edge"], "edge"), None
    except TopologyError as err:
        return None, str(err)


def list_boards(tracker: Optional[str] = None, timeout: float = 10.0) -> List[Board]:
    """Every server registered on the tracker ("host:port", default
    TVM_TRACKER_HOST/PORT), edge-server boards with their capabilities."""
    with TrackerLink(parse_tracker(tracker), timeout=timeout) as link:
        return boards_from_summary(link.summary())
