"""MetaSchedule builders that link on the host, for the board's arch, fast.

Two things the stock LocalBuilder does that hurt on a board:

- it exports a `.tar` of object files that the *board* must link, with a
  compiler most boards do not have (and that is slow on an A53);
- it starts a fresh worker pool for every batch, and every worker imports
  tvm.s_tir.tensor_intrin before its first build (see intrin_preload).

`edge_builder(runner)` exports each candidate as a shared library linked
here with the toolchain for the board's announced arch (host_client.link),
so the board only loads it; the intrinsics import is made fast.
`edge_builder(runner, in_process=True)` builds in the tuning process itself:
no pool at all, which is what a short tuning run on a small host wants.
Without a board, the arch is taken from each candidate's target ("mtriple",
which target_for(runner) sets from the board), else the host's.
"""
import os
import tempfile
from typing import Dict, List, Optional

from tvm.ir.utils import derived_object
from tvm.s_tir.meta_schedule.builder import BuilderInput, BuilderResult, PyBuilder

from host_client.intrin_preload import preload_tensor_intrin
from host_client.link import export_for_board, family, host_arch, toolchain_for


def fast_build(mod, target, params):
    """MetaSchedule's default build, after the fast intrinsics import."""
    from tvm.s_tir.meta_schedule.builder.local_builder import default_build

    preload_tensor_intrin()
    return default_build(mod, target, params)


class BoardExport:
    """f_export for LocalBuilder: a `.so` linked for `board_arch`. A plain
    class with one string attribute, so it pickles into the pool's workers."""

    def __init__(self, board_arch: str):
        self.board_arch = board_arch

    def __call__(self, mod) -> str:
        path = os.path.join(tempfile.mkdtemp(prefix="edge-build-"), "tvm_tmp_mod.so")
        return export_for_board(mod, path, self.board_arch)

    def __repr__(self) -> str:
        return "BoardExport(%r)" % self.board_arch


def target_arch(target) -> str:
    """The arch a target builds for: its mtriple's, else this host's."""
    triple = None
    try:
        triple = target.attrs.get("mtriple")
    except AttributeError:
        pass
    return str(triple).split("-")[0] if triple else host_arch()


def arch_mismatch(target, board_arch: str) -> Optional[str]:
    """One line when the target builds for another machine than the board's."""
    built = target_arch(target)
    if family(built) and family(board_arch) and family(built) != family(board_arch):
        return ("built for %s, board runs %s (target mtriple %r); build with "
                "host_client.target_for(runner)" % (built, board_arch, built))
    return None


@derived_object
class EdgeBuilder(PyBuilder):
    """Builds candidates into shared libraries for the board's arch (see module doc)."""

    def __init__(self, board_arch: Optional[str] = None, in_process: bool = False,
                 local_kwargs: Optional[dict] = None):
        super().__init__()
        self.board_arch = board_arch
        self.in_process = in_process
        self.local_kwargs = dict(local_kwargs or {})
        self._pools: Dict[str, object] = {}

    def build(self, build_inputs: List[BuilderInput]) -> List[BuilderResult]:
        results: List[Optional[BuilderResult]] = [None] * len(build_inputs)
        groups: Dict[str, List[int]] = {}
        for index, build_input in enumerate(build_inputs):
            arch = self.board_arch or target_arch(build_input.target)
            problem = arch_mismatch(build_input.target, arch)
            if problem:
                results[index] = BuilderResult(None, "EdgeBuilder: " + problem)
            else:
                groups.setdefault(arch, []).append(index)
        for arch, indices in groups.items():
            built = self._build_for(arch, [build_inputs[i] for i in indices])
            for index, result in zip(indices, built):
                results[index] = result
        return results

    def _build_for(self, arch: str, build_inputs: List[BuilderInput]) -> List[BuilderResult]:
        try:
            toolchain_for(arch)      # a missing cross toolchain: one message, per candidate
        except Exception as err:
            return [BuilderResult(None, "EdgeBuilder: %s" % err) for _ in build_inputs]
        if self.in_process:
            return [self._build_one(arch, b) for b in build_inputs]
        return self._pool(arch).build(build_inputs)

    def _build_one(self, arch: str, build_input: BuilderInput) -> BuilderResult:
        preload_tensor_intrin()
        try:
            module = fast_build(build_input.mod, build_input.target, build_input.params)
            return BuilderResult(BoardExport(arch)(module), None)
        except Exception as err:  # a candidate that does not build fails alone
            return BuilderResult(None, "EdgeBuilder: %s" % err)

    def _pool(self, arch: str):
        if arch not in self._pools:
            from tvm.s_tir.meta_schedule.builder import LocalBuilder

            kwargs = dict(self.local_kwargs)
            kwargs.setdefault("f_build", fast_build)
            kwargs.setdefault("f_export", BoardExport(arch))
            self._pools[arch] = LocalBuilder(**kwargs)
        return self._pools[arch]


def edge_builder(board=None, in_process: bool = False, **kwargs):
    """A builder whose artifacts are shared libraries linked on this host for
    the board's arch, so a board without a compiler can run them.

    board: an edge_runner, Board, EdgeSession, topology dict or arch string
        ("aarch64"); None = the arch of each candidate's target.
    in_process: build in this process, one candidate after another.
    Other keyword arguments go to LocalBuilder (max_workers, timeout_sec, ...).
    """
    if in_process and kwargs:
        raise TypeError("in_process builder takes no LocalBuilder options: %s"
                        % ", ".join(sorted(kwargs)))
    return EdgeBuilder(board_arch_of(board), in_process=in_process, local_kwargs=kwargs)


def board_arch_of(board) -> Optional[str]:
    """The arch a board announces, from whatever names the board."""
    if board is None or isinstance(board, str):
        return board or None
    from host_client.target import topology_from

    arch = topology_from(board).get("arch")
    if not arch:
        raise ValueError("the board announces no arch; upgrade its edge-server, or pass "
                         "edge_builder(\"aarch64\") (the arch it runs)")
    return arch
