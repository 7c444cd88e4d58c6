"""/proc/cpuinfo text -> per-processor records (MIDR fields, ISA features).

This module only parses text; edge_server.board.sysfs reads the file under a root.
The probe decodes each core's uarch from its own MIDR fields, so the parser
must tell per-processor evidence apart from the single global "CPU part"
block that old ARM kernels print once for the whole machine: a big.LITTLE
board would otherwise get the boot CPU's uarch stamped on every core.

Formats handled:
  - arm64 and newer 32-bit ARM kernels: one block per processor, each with
    "CPU implementer", "CPU part", ... and a blank line between blocks;
  - old ARM kernels: "Processor : ARMv7 Processor rev 4 (v7l)", then bare
    "processor : N" (+ BogoMIPS) lines, then ONE "Features"/"CPU part" block
    that is global (sometimes without a blank line before it);
  - x86: one block per processor with vendor_id, flags, physical id, ...
Anything malformed becomes a warning quoting the line; parse() never raises.
"""
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from edge_common.cpulist import MAX_CPU_ID

# Keys whose presence in a processor block is per-core MIDR evidence.
_MIDR_KEYS = ("cpu implementer", "cpu part")
# Keys old ARM kernels print inside the bare per-processor lines.
_OLD_FORMAT_PER_CPU_KEYS = ("processor", "bogomips")

# (field width in bits, name shown in warnings) of each MIDR field.
_MIDR_WIDTHS = {"implementer": 8, "variant": 4, "part": 12, "revision": 4}

_HEX_RE = re.compile(r"0[xX][0-9a-fA-F]+")
_DEC_RE = re.compile(r"[0-9]+")
_FLOAT_RE = re.compile(r"[0-9]+(\.[0-9]+)?")
_WARN_LINE_CHARS = 120


@dataclass(frozen=True)
class ProcessorRecord:
    """What one "processor : N" block really said; None = not printed or unreadable."""

    id: int
    implementer: Optional[int] = None
    variant: Optional[int] = None
    part: Optional[int] = None
    revision: Optional[int] = None
    architecture: Optional[str] = None
    features: Optional[List[str]] = None
    flags: Optional[List[str]] = None
    model_name: Optional[str] = None
    vendor_id: Optional[str] = None
    physical_id: Optional[int] = None
    core_id: Optional[int] = None
    siblings: Optional[int] = None
    cpu_cores: Optional[int] = None
    bogomips: Optional[float] = None
    cpu_mhz: Optional[float] = None
    # Every "key: value" of the block as printed (first occurrence wins), for
    # fields this record does not model (RISC-V "isa", x86 "model", ...).
    fields: Dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    def midr(self) -> Optional[int]:
        """MIDR_EL1 as the kernel read it; None unless implementer and part were printed.

        The architecture field is always 0xf (CPUID scheme), which is what every
        ARMv7/ARMv8 core reports. A missing variant or revision counts as 0:
        kernels print all four fields together, so this only matters for
        hand-edited text.
        """
        if self.implementer is None or self.part is None:
            return None
        return _build_midr(self.implementer, self.variant, self.part, self.revision)


@dataclass(frozen=True)
class ProcInfo:
    processors: Dict[int, ProcessorRecord]
    global_fields: Dict[str, str]
    warnings: List[str]

    def global_midr(self) -> Optional[int]:
        """MIDR from the global block of old kernels (boot CPU only, not per-core evidence)."""
        lowered = {k.lower(): v for k, v in self.global_fields.items()}
        values = {}
        for name in ("implementer", "variant", "part", "revision"):
            text = lowered.get("cpu " + name)
            values[name] = None if text is None else _midr_field(text, name)
        if values["implementer"] is None or values["part"] is None:
            return None
        return _build_midr(values["implementer"], values["variant"],
                           values["part"], values["revision"])


def format_midr(midr: int) -> str:
    """0x410fd083 style, as Linux and the Arm TRMs print MIDR values."""
    return "0x%08x" % midr


def _build_midr(implementer: int, variant: Optional[int], part: int,
                revision: Optional[int]) -> int:
    return ((implementer << 24) | ((variant or 0) << 20) | (0xF << 16)
            | (part << 4) | (revision or 0))


def _midr_field(text: str, name: str) -> Optional[int]:
    value = _parse_int(text)
    if value is None or value >= (1 << _MIDR_WIDTHS[name]):
        return None
    return value


def _parse_int(text: str) -> Optional[int]:
    """"0x41" (hex) or "4" (decimal); ASCII only, so no unicode digits slip in."""
    text = text.strip()
    if _HEX_RE.fullmatch(text):
        return int(text, 16)
    if _DEC_RE.fullmatch(text):
        return int(text, 10)
    return None


def _parse_float(text: str) -> Optional[float]:
    text = text.strip()
    return float(text) if _FLOAT_RE.fullmatch(text) else None


def _quote(lineno: int, line: str) -> str:
    shown = line if len(line) <= _WARN_LINE_CHARS else line[:_WARN_LINE_CHARS] + "..."
    return "cpuinfo line %d %r" % (lineno, shown)


class _Block:
    """One processor block while it is being read."""

    def __init__(self, cpu: int, lineno: int, line: str):
        self.cpu = cpu
        self.lineno = lineno
        self.line = line
        # lowercase key -> (key as printed, value, line number, raw line)
        self.items: Dict[str, tuple] = {}


def parse(text: str) -> ProcInfo:
    """Parse /proc/cpuinfo text. Never raises; problems go to ProcInfo.warnings."""
    warnings: List[str] = []
    if not isinstance(text, str):
        return ProcInfo({}, {}, ["cpuinfo is not text (%s); no processors read"
                                 % type(text).__name__])
    blocks, global_items, old_format = _split_blocks(text, warnings)
    if blocks and _has_trailing_global_block(blocks, old_format):
        _move_trailing_global_block(blocks[-1], global_items, warnings)
    processors: Dict[int, ProcessorRecord] = {}
    for block in blocks:
        if block.cpu in processors:
            warnings.append("%s: processor %d appears twice; keeping the first block "
                            "(line %d)" % (_quote(block.lineno, block.line), block.cpu,
                                           _first_lineno(blocks, block.cpu)))
            continue
        processors[block.cpu] = _record(block, warnings)
    global_fields = {key: value for key, value, _, _ in global_items.values()}
    return ProcInfo(processors, global_fields, warnings)


def _first_lineno(blocks: List[_Block], cpu: int) -> int:
    return next(b.lineno for b in blocks if b.cpu == cpu)


def _split_blocks(text: str, warnings: List[str]):
    """Cut the text into processor blocks and global lines.

    A block starts at "processor : N" and ends at a blank line or the next
    "processor" line. Lines outside blocks are global. Returns (blocks,
    global items, whether the old-kernel "Processor : <model>" line was seen).
    """
    blocks: List[_Block] = []
    global_items: Dict[str, tuple] = {}
    current: Optional[_Block] = None
    old_format = False
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            current = None
            continue
        key, sep, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if not sep or not key:
            warnings.append("%s: not a 'key : value' line; ignored" % _quote(lineno, raw))
            continue
        if key == "processor":
            cpu = _dec(value)
            if cpu is None or cpu > MAX_CPU_ID:
                warnings.append("%s: processor number is not a decimal integer from 0 to %d; "
                                "the lines up to the next blank line are ignored"
                                % (_quote(lineno, raw), MAX_CPU_ID))
                current = _Block(-1, lineno, raw)  # a sink nobody reads
                continue
            current = _Block(cpu, lineno, raw)
            blocks.append(current)
            continue
        if current is not None and current.cpu < 0:
            continue
        if current is None and key == "Processor":
            old_format = True
        items = current.items if current is not None else global_items
        if key.lower() in items:
            where = "one processor block" if current is not None else "the global lines"
            warnings.append("%s: %r printed twice in %s; keeping the first value"
                            % (_quote(lineno, raw), key, where))
            continue
        items[key.lower()] = (key, value, lineno, raw)
    return blocks, global_items, old_format


def _has_trailing_global_block(blocks: List[_Block], old_format: bool) -> bool:
    """True for old kernels that print bare processor lines then one CPU block.

    Early arm64 (3.10) and ARM kernels write "processor : 0" ... "processor : 7"
    and then a single Features/CPU part block without a blank line, so it
    lands in the last processor's block. It describes the CPU that ran the
    read, not processor 7.
    """
    last = blocks[-1]
    if not any(k in last.items for k in _MIDR_KEYS):
        return False
    if any(k in b.items for b in blocks[:-1] for k in _MIDR_KEYS):
        return False
    return len(blocks) >= 2 or old_format


def _move_trailing_global_block(block: _Block, global_items: Dict[str, tuple],
                                warnings: List[str]) -> None:
    moved = [k for k in block.items if k not in _OLD_FORMAT_PER_CPU_KEYS]
    for key in moved:
        global_items.setdefault(key, block.items.pop(key))
    warnings.append("cpuinfo: only the last processor block (%d, line %d) has CPU "
                    "implementer/part; this is the old kernel format with one global "
                    "CPU block, so it is not per-core evidence" % (block.cpu, block.lineno))


def _record(block: _Block, warnings: List[str]) -> ProcessorRecord:
    items = block.items

    def text(key: str) -> Optional[str]:
        item = items.get(key)
        return None if item is None else item[1]

    def number(key: str, parse_fn, what: str, midr_name: Optional[str] = None):
        item = items.get(key)
        if item is None:
            return None
        value = parse_fn(item[1])
        if value is not None and midr_name is not None:
            if value >= (1 << _MIDR_WIDTHS[midr_name]):
                warnings.append("%s: %s %d does not fit the %d-bit MIDR field; ignored"
                                % (_quote(item[2], item[3]), item[0], value,
                                   _MIDR_WIDTHS[midr_name]))
                return None
        if value is None:
            warnings.append("%s: %s is not %s; ignored" % (_quote(item[2], item[3]),
                                                           item[0], what))
        return value

    def words(key: str) -> Optional[List[str]]:
        value = text(key)
        return None if value is None else value.split()

    return ProcessorRecord(
        id=block.cpu,
        implementer=number("cpu implementer", _parse_int, "an integer like 0x41",
                           "implementer"),
        variant=number("cpu variant", _parse_int, "an integer like 0x1", "variant"),
        part=number("cpu part", _parse_int, "an integer like 0xd08", "part"),
        revision=number("cpu revision", _parse_int, "an integer like 4", "revision"),
        architecture=text("cpu architecture"),
        features=words("features"),
        flags=words("flags"),
        model_name=text("model name"),
        vendor_id=text("vendor_id"),
        physical_id=number("physical id", _dec, "a decimal integer"),
        core_id=number("core id", _dec, "a decimal integer"),
        siblings=number("siblings", _dec, "a decimal integer"),
        cpu_cores=number("cpu cores", _dec, "a decimal integer"),
        bogomips=number("bogomips", _parse_float, "a number like 48.00"),
        cpu_mhz=number("cpu mhz", _parse_float, "a number like 2400.000"),
        fields={key: value for key, value, _, _ in items.values()},
    )


def _dec(text: str) -> Optional[int]:
    text = text.strip()
    return int(text) if _DEC_RE.fullmatch(text) else None
