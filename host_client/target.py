"""The TVM target for a board under a thread mode.

MetaSchedule's schedule rules read `num-cores` to decide how far to
parallelise, so tuning for "little:1" with the board's 6-core target would
search the wrong space. The board's suggested target (topology "tvm_target",
TVM 0.27's dict form) is the base; the mode decides num-cores (its thread
count) and, on ARM, mcpu (the core class the mode runs on).
"""
from typing import Optional

from host_client.boards import Board

ARM_ARCHES = ("aarch64", "arm64", "armv7l", "armv8l", "armv7", "arm")


def topology_from(board_or_topology) -> dict:
    """Accept a Board, an EdgeSession, an edge_runner, or a topology dict."""
    if isinstance(board_or_topology, dict):
        return board_or_topology
    if isinstance(board_or_topology, Board):
        if board_or_topology.topology is None:
            raise ValueError("board %s (key %r) runs a stock TVM server and announces no "
                             "topology; run edge-server there, or build the target yourself"
                             % (board_or_topology.address, board_or_topology.key))
        return board_or_topology.topology
    topology = getattr(board_or_topology, "topology", None)
    if callable(topology):  # an EdgeSession
        return topology()
    if isinstance(topology, dict):  # an edge_runner
        return topology
    raise TypeError("target_for needs a Board, an EdgeSession, an edge_runner (made with "
                    "check=True) or a topology dict, not %s" % type(board_or_topology).__name__)


def mode_from(board_or_topology, thread_mode: Optional[str]) -> str:
    """The explicit mode, else the runner's or session's own, else "all"."""
    if thread_mode:
        return thread_mode
    own = getattr(board_or_topology, "thread_mode", None)
    if isinstance(own, str):
        return own
    state = getattr(board_or_topology, "thread_state", None)
    if isinstance(state, dict) and state.get("mode"):
        return state["mode"]
    return "all"


def target_dict_for(board_or_topology, thread_mode: Optional[str] = None) -> dict:
    """The target as a JSON-able dict (what `target_for` passes to TVM)."""
    from edge_common.slots import resolve_mode as resolve   # a slot's `all` is the slot

    topology = topology_from(board_or_topology)
    thread_mode = mode_from(board_or_topology, thread_mode)
    base = topology.get("tvm_target")
    if not isinstance(base, dict) or "kind" not in base:
        raise ValueError("the topology has no usable tvm_target (got %r); the board's "
                         "edge-server is too old or its probe failed" % (base,))
    resolution = resolve(topology, thread_mode)
    target = dict(base)
    target["num-cores"] = len(resolution.cpus)
    if str(target.get("mtriple", "")).endswith("gnueabihf"):
        # armhf passes floats in VFP registers; LLVM's default soft ABI objects
        # do not link with the board's (or the cross) armhf toolchain.
        target.setdefault("mfloat-abi", "hard")
    uarch = _mode_uarch(topology, resolution)
    if uarch and str(topology.get("arch", "")).lower() in ARM_ARCHES:
        target["mcpu"] = uarch
    return target


def target_for(board_or_topology, thread_mode: Optional[str] = None):
    """tvm.target.Target for tuning/compiling for that board in that mode.

    thread_mode defaults to the mode of the runner or session passed in,
    else "all". Raises edge_common.modes.ModeError (a ValueError) when the
    board has no such mode."""
    import tvm

    return tvm.target.Target(target_dict_for(board_or_topology, thread_mode))


def _mode_uarch(topology: dict, resolution) -> Optional[str]:
    """The uarch of the class the mode runs on; None if it spans several."""
    classes = {c.get("name"): c for c in topology.get("classes") or []}
    if resolution.cls and resolution.cls in classes:
        return classes[resolution.cls].get("uarch")
    by_cpu = {cpu.get("id"): cpu for cpu in topology.get("cpus") or []}
    uarches = {by_cpu.get(i, {}).get("uarch") for i in resolution.cpus}
    return uarches.pop() if len(uarches) == 1 else None

