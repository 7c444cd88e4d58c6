"""The clocks the daemon holds for this session (--lock-clocks), as the session sees them.

The daemon locks the cpufreq policies of every core a session may use before
it hands the client over (edge_server.daemon.clock_lock) and restores them
after it reaps the session, so the session itself never writes sysfs and
its sandbox may keep cpufreq read-only. It tells the session what it holds
in the hand-off (edge_server.session.ipc): the clock each policy is held at,
which the verdict compares against, and for each policy it could not lock,
why, which every verdict on a run over that policy carries.
"""
from dataclasses import dataclass, field
from typing import Dict, List, Optional


@dataclass(frozen=True)
class HeldClocks:
    """{policy name: kHz it is held at}, {policy name: why it could not be locked}."""
    khz: Dict[str, int] = field(default_factory=dict)
    failed: Dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"khz": dict(self.khz), "failed": dict(self.failed)}

    @classmethod
    def from_json(cls, value) -> "HeldClocks":
        """The hand-off's "clocks" field; ValueError naming what is wrong."""
        if not isinstance(value, dict):
            raise ValueError("hand-off clocks must be a JSON object, got %.80r" % (value,))
        khz, failed = value.get("khz", {}), value.get("failed", {})
        if not (isinstance(khz, dict) and all(isinstance(k, str) and type(v) is int and v > 0
                                               for k, v in khz.items())):
            raise ValueError("hand-off clocks.khz must map policy names to kHz, got %.80r"
                             % (khz,))
        if not (isinstance(failed, dict) and all(isinstance(k, str) and isinstance(v, str)
                                                  for k, v in failed.items())):
            raise ValueError("hand-off clocks.failed must map policy names to reasons, got "
                             "%.80r" % (failed,))
        return cls(dict(khz), dict(failed))

    def failures_for(self, policy_names: List[str]) -> List[str]:
        """Why the clocks of these policies are not locked ([] when they all are)."""
        return [self.failed[n] for n in policy_names if n in self.failed]


def parse_held(value) -> Optional[HeldClocks]:
    """None (no --lock-clocks) or the hand-off's clocks."""
    return None if value is None else HeldClocks.from_json(value)
