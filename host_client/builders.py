"""MetaSchedule builders that do not spend a minute per batch importing TVM's
tensor intrinsics (see intrin_preload for why that import is slow).

LocalBuilder starts a fresh worker pool for every batch, and every worker
imports tvm.s_tir.tensor_intrin before its first build. `edge_builder()`
keeps LocalBuilder (isolation, timeouts) but makes that import fast;
`edge_builder(in_process=True)` builds in the tuning process itself, where
the intrinsics are already loaded: no pool at all, which is what a short
tuning run on a small host wants.
"""
from typing import List

from tvm.ir.utils import derived_object
from tvm.s_tir.meta_schedule.builder import BuilderInput, BuilderResult, PyBuilder

from host_client.intrin_preload import preload_tensor_intrin


def fast_build(mod, target, params):
    """MetaSchedule's default build, after the fast intrinsics import."""
    from tvm.s_tir.meta_schedule.builder.local_builder import default_build

    preload_tensor_intrin()
    return default_build(mod, target, params)


@derived_object
class InProcessBuilder(PyBuilder):
    """Builds each candidate in the calling process, one after another."""

    def build(self, build_inputs: List[BuilderInput]) -> List[BuilderResult]:
        from tvm.s_tir.meta_schedule.builder.local_builder import default_export

        preload_tensor_intrin()
        results = []
        for build_input in build_inputs:
            try:
                module = fast_build(build_input.mod, build_input.target, build_input.params)
                results.append(BuilderResult(default_export(module), None))
            except Exception as err:  # a candidate that does not build fails alone
                results.append(BuilderResult(None, "InProcessBuilder: %s" % err))
        return results


def edge_builder(in_process: bool = False, **kwargs):
    """A LocalBuilder with `fast_build` (keyword arguments go to LocalBuilder),
    or with in_process=True an InProcessBuilder."""
    if in_process:
        if kwargs:
            raise TypeError("in_process builder takes no LocalBuilder options: %s"
                            % ", ".join(sorted(kwargs)))
        return InProcessBuilder()
    from tvm.s_tir.meta_schedule.builder import LocalBuilder

    kwargs.setdefault("f_build", fast_build)
    return LocalBuilder(**kwargs)
