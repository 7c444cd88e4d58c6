"""Host side of TVM Edge RPC: sessions with a thread mode, boards on a
tracker, targets per mode, and the MetaSchedule runner plugin.

Names are loaded on first use so `edge-client list` stays light.
"""
import importlib

_EXPORTS = {
    "connect": "host_client.session",
    "request_session": "host_client.session",
    "EdgeSession": "host_client.session",
    "list_boards": "host_client.boards",
    "Board": "host_client.boards",
    "target_for": "host_client.target",
    "target_dict_for": "host_client.target",
    "edge_runner": "host_client.metaschedule",
    "EdgeSessionFactory": "host_client.metaschedule",
    "edge_builder": "host_client.builders",
    "preload_tensor_intrin": "host_client.intrin_preload",
    "EdgeClientError": "host_client.errors",
    "TrackerError": "host_client.errors",
    "TrackerUnreachable": "host_client.errors",
    "KeyUnknown": "host_client.errors",
    "BoardBusy": "host_client.errors",
    "SessionError": "host_client.errors",
    "NotAnEdgeServer": "host_client.errors",
    "ThreadModeRefused": "host_client.errors",
    "CrossCompilerMissing": "host_client.errors",
    "time_evaluator": "host_client.verdicts",
    "conditions": "host_client.verdicts",
    "cooldown": "host_client.verdicts",
    "Verdict": "host_client.verdicts",
    "VerdictEvaluator": "host_client.verdicts",
    "ArchMismatch": "host_client.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError("module 'host_client' has no attribute %r" % name)
    return getattr(importlib.import_module(_EXPORTS[name]), name)
