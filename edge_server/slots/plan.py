"""From `--slots` to the slots the supervisor runs.

An explicit spec is resolved against the board (edge_common.slots); `auto`
calibrates the candidate layouts (calibrate.py; cached per boot) and admits
the one with the most slots whose measured slowdown stays under
--slot-threshold. Either way every slot carries the slowdown measured for it
(worst and per probe kind), when one was, the --slot-threshold and its
co-slots' cores into its topology document (edge info and session), which is
what the measurement verdict judges a busy co-slot by.
"""
import logging
import os
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

from edge_common.slots import (DEFAULT_THRESHOLD, Slot, SlotError, admit, candidate_specs,
                               parse_spec, resolve_mode, resolve_slots, slot_topology)

log = logging.getLogger("edge_server.slots.plan")


SLOTS_HELP = ("split the board into slots, each its own server on the tracker (same key): "
              "e.g. little:1x4, big:2,little:1x4, 'cpus:0;cpus:1', or auto (the most slots "
              "whose calibrated slowdown stays under --slot-threshold); default: one server "
              "for the whole board")


def _config_error(message: str):
    from edge_server.daemon.config import ConfigError   # config imports this module
    return ConfigError(message)


def parse_threshold(text: str) -> float:
    """'3%' or '3' -> 0.03; ValueError says what a threshold looks like."""
    body = str(text).strip().rstrip("%").strip()
    try:
        value = float(body)
    except ValueError:
        raise ValueError("--slot-threshold %r is not a percentage; write e.g. 3%% or 0.5%%"
                         % text) from None
    if not 0 <= value < 1000 or value != value:
        raise ValueError("--slot-threshold %r must be between 0%% and 1000%%" % text)
    return value / 100.0


def check_threshold(text, flag: str) -> float:
    try:
        return parse_threshold(text)
    except ValueError as err:
        raise _config_error(str(err)) from None


def check_slots(text: Optional[str], flag: str) -> Optional[str]:
    """The --slots spec, its grammar checked (the board is checked at start)."""
    if text is None:
        return None
    spec = text.strip()
    if spec.lower() == "auto":
        return "auto"
    try:
        parse_spec(spec)
    except SlotError as err:
        raise _config_error("%s: %s" % (flag, err)) from None
    return spec


def check_cache_dir(text: Optional[str], flag: str) -> Optional[str]:
    return os.path.abspath(text) if text else None


@dataclass
class SlotPlan:
    spec: str                          # the explicit spec run (auto resolved)
    slots: List[Slot]
    probes: Dict[int, Optional[Dict[str, float]]]   # slot index -> slowdown per probe kind
    default_modes: Dict[int, str]      # slot index -> canonical default mode in that slot
    why: str                           # how the layout was chosen, for the log
    threshold: float = DEFAULT_THRESHOLD    # --slot-threshold, which verdicts hold slots to

    @property
    def slowdowns(self) -> Dict[int, Optional[float]]:
        """Slot index -> the worst slowdown over its probe kinds (None: not measured)."""
        return {i: round(max(p.values()), 4) if p else None for i, p in self.probes.items()}

    def topology(self, board: dict, index: int) -> dict:
        """Slot `index`'s document: its cores, calibration and co-slots."""
        slot = self.slots[index]
        return slot_topology(board, slot, len(self.slots), self.spec, self.slowdowns.get(index),
                             probes=self.probes.get(index), threshold=self.threshold,
                             co_slots=self.slots)


def plan_slots(config, topology: dict,
               calibrate: Optional[Callable[[dict, List[str]], List[dict]]] = None) -> SlotPlan:
    """The slots to run for config.slots; SlotError says what to change.
    `calibrate(topology, specs)` returns one calibration result per spec
    (calibrate.calibrated, cached per boot, unless a test passes another)."""
    if calibrate is None:
        from edge_server.slots.calibrate import calibrated

        def calibrate(topo, specs):
            return calibrated(topo, specs, cache_dir=config.calibration_cache,
                              root=config.root or "/")
    if config.slots == "auto":
        results = calibrate(topology, candidate_specs(topology))
        chosen, why = admit(results, config.slot_threshold)
        spec = chosen["spec"]
    else:
        spec, chosen, why = config.slots, None, "as given by --slots"
        cached = _cached_result(config, topology, spec)
        if cached is not None:
            chosen = cached
            why += "; calibrated slowdowns from this boot's cache"
    slots = resolve_slots(topology, spec)
    probes = _probe_slowdowns(chosen, slots)
    defaults = {}
    for slot in slots:
        doc = slot_topology(topology, slot, len(slots), spec)
        try:
            defaults[slot.index] = resolve_mode(doc, config.default_mode).mode
        except Exception as err:   # ModeError: the three-part message, naming the slot
            raise SlotError("--default-mode %s cannot be met in every slot: %s; --default-mode "
                            "all means each slot's own cores" % (config.default_mode, err)) \
                from None
    return SlotPlan(spec, slots, probes, defaults, why, config.slot_threshold)


def _cached_result(config, topology: dict, spec: str) -> Optional[dict]:
    from edge_server.slots.calibrate import load_cached
    try:
        return load_cached(topology, spec, config.calibration_cache, config.root or "/")
    except Exception as err:  # a broken cache is not a reason to refuse to serve
        log.warning("reading the calibration cache failed: %s; slots run without slowdowns", err)
        return None


def _probe_slowdowns(result: Optional[dict],
                     slots: List[Slot]) -> Dict[int, Optional[Dict[str, float]]]:
    """Slot index -> the slowdown its calibration measured per probe kind
    (None: not measured, or a figure that is not a number)."""
    out: Dict[int, Optional[Dict[str, float]]] = {s.index: None for s in slots}
    if not result:
        return out
    for entry in result.get("slots") or []:
        figures = entry.get("slowdown")
        cpus = tuple(entry.get("cpus") or ())
        if not isinstance(figures, dict) or not figures or not all(
                isinstance(v, (int, float)) and v == v for v in figures.values()):
            continue
        for slot in slots:
            if slot.cpus == cpus:
                out[slot.index] = {str(k): round(float(v), 4) for k, v in figures.items()}
    return out


__all__ = ["DEFAULT_THRESHOLD", "SlotPlan", "check_slots", "check_threshold", "parse_threshold",
           "plan_slots"]
