"""The topology document, typed: what `edge-server probe --json` prints, what the
daemon announces under "edge" on the tracker and what `edge.topology` returns.

The producer (edge_server/board/topology.py) builds a plain dict; everything
that reads one goes through `Topology.from_dict`, which checks every field's
type once and says which field is wrong, so consumers read attributes instead
of guarding each access with `.get()`.

Compatibility rules, because boards and hosts are upgraded at different times:

- `schema` is the document's version (SCHEMA). A newer number is read, not
  refused: new fields are added as optional keys, never by changing old ones.
- Unknown keys, at any level, are kept and written back in place, so a host
  that is older than its boards passes their documents on unchanged.
- `to_dict()` gives back exactly the keys that came in, in their order, so
  `json.dumps(Topology.from_dict(d).to_dict()) == json.dumps(d)`.
- Fields added after the first boards shipped are never required: per-CPU
  "uarch_source" and per-cluster "source" (the probe writes them), top-level
  "linker", "version", "host" and "slot" (absent unless a producer sends them).
"""
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, Dict, List, Optional, Tuple

from edge_common.cpulist import MAX_CPU_ID

SCHEMA = 1


class TopologyError(ValueError):
    """A topology document that does not follow the schema; names the field."""


# kind -> (check, what the message says was expected)
_KINDS = {
    "int": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "str": (lambda v: isinstance(v, str), "a string"),
    "cpus": (lambda v: isinstance(v, list) and all(_is_cpu(x) for x in v),
             "a list of CPU ids (integers 0..%d)" % MAX_CPU_ID),
    "strs": (lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
             "a list of strings"),
    "object": (lambda v: isinstance(v, dict), "a JSON object"),
    "parts": (lambda v: isinstance(v, list), "a list of JSON objects"),
}


def _is_cpu(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_CPU_ID


@dataclass(frozen=True)
class _Key:
    """One key of a document part: JSON name, attribute, kind, and whether it must be
    there (required), may be null, and is written by every producer (standard)."""
    name: str
    attr: str
    kind: str
    required: bool = False
    nullable: bool = True
    standard: bool = True


def _keys(*specs) -> Tuple[_Key, ...]:
    return tuple(_Key(*spec) for spec in specs)


_ABSENT = object()


class _Part:
    """from_dict/to_dict shared by the document and its parts (a table of _Key)."""
    KEYS: Tuple[_Key, ...] = ()
    _NAMES: frozenset = frozenset()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls._NAMES = frozenset(k.name for k in cls.KEYS)

    @classmethod
    def from_dict(cls, data, where: str = "topology"):
        if not isinstance(data, dict):
            raise TopologyError("%s must be a JSON object, got %s" % (where, _shown(data)))
        values: Dict[str, Any] = {}
        for key in cls.KEYS:
            value = data.get(key.name, _ABSENT)
            if value is _ABSENT:
                if key.required:
                    raise TopologyError("%s has no %r (every %s has one)"
                                        % (where, key.name, cls.__name__.lower()))
            elif value is None:
                if not key.nullable:
                    raise TopologyError("%s.%s is null; it must be %s"
                                        % (where, key.name, _KINDS[key.kind][1]))
                values[key.attr] = None
            else:
                values[key.attr] = cls._field(key, value, where)
        names = cls._NAMES
        extra = {k: v for k, v in data.items() if k not in names}
        part = cls(**values, extra=extra, order=tuple(data))
        part.check(where)
        return part

    @classmethod
    def _field(cls, key: _Key, value, where: str):
        """A non-null value of `key`, checked."""
        check, expected = _KINDS[key.kind]
        if not check(value):
            raise TopologyError("%s.%s must be %s%s, got %s" % (
                where, key.name, expected, " or null" if key.nullable else "", _shown(value)))
        return list(value) if isinstance(value, list) else value

    def check(self, where: str) -> None:
        """Cross-field checks of a part (none by default)."""

    def to_dict(self) -> dict:
        """The JSON object: the keys that came in, in their order, then keys given a
        value since (a part built in code gets every standard key)."""
        by_name = {k.name: k for k in self.KEYS}
        out: Dict[str, Any] = {}
        for name in self.order:
            if name in by_name:
                out[name] = _plain(getattr(self, by_name[name].attr))
            elif name in self.extra:
                out[name] = self.extra[name]
        defaults = _defaults(type(self))
        for key in self.KEYS:
            if key.name in out:
                continue
            value = getattr(self, key.attr)
            if (key.standard and not self.order) or value != defaults.get(key.attr):
                out[key.name] = _plain(value)
        for name, value in self.extra.items():
            out.setdefault(name, value)
        return out


def _defaults(cls) -> Dict[str, Any]:
    """Each attribute's default (what an absent key reads as)."""
    out = {}
    for f in fields(cls):
        if f.default is not MISSING:
            out[f.name] = f.default
        elif f.default_factory is not MISSING:
            out[f.name] = f.default_factory()
    return out


def _plain(value):
    """Parts and lists of parts as JSON values."""
    if isinstance(value, _Part):
        return value.to_dict()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _shown(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:60] + "..."


def _parts(part_cls, value, where: str) -> list:
    if not isinstance(value, list):
        raise TopologyError("%s must be a list, got %s" % (where, _shown(value)))
    return [part_cls.from_dict(item, "%s[%d]" % (where, i)) for i, item in enumerate(value)]


@dataclass
class Cpu(_Part):
    """One logical CPU. online/allowed None: the probe could not tell (taken as yes)."""
    id: int
    online: Optional[bool] = None
    allowed: Optional[bool] = None
    uarch: Optional[str] = None
    midr: Optional[str] = None
    max_freq_khz: Optional[int] = None
    capacity: Optional[int] = None
    cluster: Optional[int] = None
    cls: Optional[str] = None            # JSON "class"
    core_id: Optional[int] = None
    package: Optional[int] = None
    smt_siblings: Optional[List[int]] = None
    uarch_source: Optional[str] = None   # how the uarch was found: midr_el1, cpuinfo, ...
    extra: Dict[str, Any] = field(default_factory=dict, repr=False)
    order: Tuple[str, ...] = field(default=(), repr=False, compare=False)

    KEYS = _keys(("id", "id", "int", True, False), ("online", "online", "bool"),
                 ("allowed", "allowed", "bool"), ("uarch", "uarch", "str"),
                 ("uarch_source", "uarch_source", "str"),
                 ("midr", "midr", "str"), ("max_freq_khz", "max_freq_khz", "int"),
                 ("capacity", "capacity", "int"), ("cluster", "cluster", "int"),
                 ("class", "cls", "str"), ("core_id", "core_id", "int"),
                 ("package", "package", "int"), ("smt_siblings", "smt_siblings", "cpus"))

    def check(self, where: str) -> None:
        if not _is_cpu(self.id):
            raise TopologyError("%s.id must be a CPU id 0..%d, got %r" % (where, MAX_CPU_ID,
                                                                          self.id))

    @property
    def usable(self) -> bool:
        """Online and allowed for the server (unknown counts as yes)."""
        return self.online is not False and self.allowed is not False


@dataclass
class Cluster(_Part):
    """CPUs that share a cache/frequency domain."""
    id: int
    cpus: List[int]
    cls: Optional[str] = None            # JSON "class"
    source: Optional[str] = None         # which kernel list grouped them
    extra: Dict[str, Any] = field(default_factory=dict, repr=False)
    order: Tuple[str, ...] = field(default=(), repr=False, compare=False)

    KEYS = _keys(("id", "id", "int", True, False), ("cpus", "cpus", "cpus", True, False),
                 ("class", "cls", "str"), ("source", "source", "str"))


@dataclass
class CoreClass(_Part):
    """One kind of core; rank 0 is the fastest."""
    name: str
    rank: int
    cpus: List[int]
    uarch: Optional[str] = None
    max_freq_khz: Optional[int] = None
    capacity: Optional[int] = None
    extra: Dict[str, Any] = field(default_factory=dict, repr=False)
    order: Tuple[str, ...] = field(default=(), repr=False, compare=False)

    KEYS = _keys(("name", "name", "str", True, False), ("rank", "rank", "int", True, False),
                 ("cpus", "cpus", "cpus", True, False), ("uarch", "uarch", "str"),
                 ("max_freq_khz", "max_freq_khz", "int"), ("capacity", "capacity", "int"))

    def check(self, where: str) -> None:
        if self.rank < 0:
            raise TopologyError("%s.rank must be 0 or more (0 = fastest), got %d"
                                % (where, self.rank))


@dataclass
class Topology(_Part):
    """The whole document; see the module docstring for the compatibility rules."""
    cpus: List[Cpu]
    classes: List[CoreClass]
    clusters: List[Cluster] = field(default_factory=list)
    schema: Optional[int] = SCHEMA
    board: Optional[str] = None
    arch: Optional[str] = None
    isa: List[str] = field(default_factory=list)
    tvm_target: Optional[dict] = None
    warnings: List[str] = field(default_factory=list)
    linker: Optional[str] = None         # the board's C++ linker, None: cannot link
    version: Optional[str] = None        # edge-server's version
    host: Optional[str] = None           # the board's host name
    slot: Optional[dict] = None          # edge-server --slots: this server's slot (slots.py)
    extra: Dict[str, Any] = field(default_factory=dict, repr=False)
    order: Tuple[str, ...] = field(default=(), repr=False, compare=False)

    KEYS = _keys(("schema", "schema", "int"), ("board", "board", "str"),
                 ("arch", "arch", "str"), ("cpus", "cpus", "parts", True, False),
                 ("clusters", "clusters", "parts", False, False),
                 ("classes", "classes", "parts", True, False),
                 ("isa", "isa", "strs", False, False),
                 ("tvm_target", "tvm_target", "object"),
                 ("warnings", "warnings", "strs", False, False),
                 ("linker", "linker", "str", False, True, False),
                 ("version", "version", "str", False, True, False),
                 ("host", "host", "str", False, True, False),
                 ("slot", "slot", "object", False, True, False))
    _PARTS = {"cpus": Cpu, "clusters": Cluster, "classes": CoreClass}

    @classmethod
    def _field(cls, key: _Key, value, where: str):
        if key.kind == "parts":
            return _parts(cls._PARTS[key.name], value, "%s.%s" % (where, key.name))
        return super()._field(key, value, where)

    def check(self, where: str) -> None:
        if self.schema is not None and self.schema < 1:
            raise TopologyError("%s.schema must be 1 or more (this code writes %d), got %d"
                                % (where, SCHEMA, self.schema))
        ids = [cpu.id for cpu in self.cpus]
        if len(set(ids)) != len(ids):
            twice = sorted({i for i in ids if ids.count(i) > 1})
            raise TopologyError("%s.cpus lists CPU %s more than once" % (where, twice[0]))
        names = [c.name for c in self.classes]
        if len(set(names)) != len(names):
            twice = sorted({n for n in names if names.count(n) > 1})
            raise TopologyError("%s.classes has two classes named %r" % (where, twice[0]))

    # ---- what consumers ask -------------------------------------------------
    def cpu_table(self) -> Dict[int, Cpu]:
        return {cpu.id: cpu for cpu in self.cpus}

    def ranked_classes(self) -> List[CoreClass]:
        """Classes fastest first."""
        return sorted(self.classes, key=lambda c: c.rank)

    def usable_cpus(self) -> List[int]:
        return sorted(cpu.id for cpu in self.cpus if cpu.usable)


def as_topology(doc) -> Topology:
    """A Topology from a Topology or a document dict (TopologyError if malformed)."""
    if isinstance(doc, Topology):
        return doc
    return Topology.from_dict(doc)

