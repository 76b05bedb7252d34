"""The horizon: `lax.scan` over slots, then realisations (split over devices, vmapped in groups, the
groups in a loop) and sampled instances (vmapped, or in a loop when the realisations run one at a
time). The programs are `equinox.filter_jit` functions of the components themselves: a component's
array fields (its traced options) are arguments, its class and static fields key the compiled
program, so a sweep over a traced option reuses the program and any other change compiles another
(cached for the life of the process, and on disk by JAX's persistent compilation cache)."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from edgefm.sim.keys import STREAM_ARRIVALS, STREAM_CONTROLLER, STREAM_FAILURES, draw_slot, init_key, uplink_rates
from edgefm.sim.reduce import summarise
from edgefm.sim.completions import observe_completions
from edgefm.sim.failures import draw_failures, failing
from edgefm.sim.layout import Batched, ListLayout, for_group
from edgefm.sim.state import init_state, upload_schedule
from edgefm.sim.step import make_step
from edgefm.sim.types import ControllerContext, ScenarioArrays, SimParams, SimSizes

# counted at trace time: "step" per traced step function, "program" per traced whole program
TRACE_COUNTER = {"step": 0, "program": 0}


def engine_components(channel, workload, controller, failure=None) -> tuple:
    """(channel, workload, controller, failure) as the programs take them: without their host-side
    options, and a failure model that fails nothing as None (no failure code at all)."""
    return (channel.for_engine(), workload.for_engine(), controller.for_engine(),
            failure.for_engine() if failing(failure) else None)


def _initial_state(key, arrays: ScenarioArrays, params: SimParams, sizes: SimSizes, comps):
    channel, workload, controller, failure = comps
    wstate = workload.init(init_key(key, STREAM_ARRIVALS), arrays.arrival_rate)
    fstate = failure.init(init_key(key, STREAM_FAILURES), arrays.random_nodes) if failing(failure) else ()
    upload = upload_schedule(uplink_rates(key, arrays, sizes, channel)) if channel.fading_mode() == "per_slot" else ()
    return init_state(sizes, wstate, controller.init(ControllerContext.of(sizes, arrays)), fstate, upload)


def _rollout_one(key, arrays: ScenarioArrays, params: SimParams, comps, sizes: SimSizes, lists: ListLayout):
    st = _initial_state(key, arrays, params, sizes, comps)
    step = make_step(sizes, *comps, layout=lists, trace_counter=TRACE_COUNTER)
    (st, _, _, _), series = lax.scan(step, (st, key, arrays, params), jnp.arange(sizes.T))
    return _final_results(st, series, arrays, params, sizes, comps[3])


def _final_results(st, series, arrays: ScenarioArrays, params: SimParams, sizes: SimSizes, failure):
    """The completions at the end of the horizon, then the summary of one realisation."""
    end = sizes.T * params.slot_ms
    st = observe_completions(st, arrays, sizes, end, params.slot_ms if failing(failure) else None, layout=Batched())
    return summarise(st, series, arrays, params, sizes)


def default_batch() -> int:
    """Realisations vmapped together when the caller does not say: all of them on an accelerator, one
    on the CPU. On the CPU a realisation run alone is faster than in a vmapped batch (each
    `while_loop` stops when its own realisation is done, gathers and scatters carry no batch indices,
    the state stays in cache; BENCHMARKS.md), and the cores are used by sharding realisations over
    CPU devices."""
    return 1 if jax.default_backend() == "cpu" else 0


def realisation_layout(R: int, batch: int | None = None, devices: int | None = None) -> tuple[int, int]:
    """(group, shards) for R realisations: `shards` devices (the most, up to `devices` or all those of
    the default backend, that divide R) each take R / shards realisations and work through them
    `group` at a time, vmapped, the groups one after another. `batch` None: `default_batch()`; 0:
    all at once. A group is the largest divisor of the per-device count that is at most `batch`, so
    every group has the same shape (the step traces once). The results do not depend on the layout."""
    R = int(R)
    avail = len(jax.devices()) if devices is None else max(1, int(devices))
    shards = max(d for d in range(1, min(avail, R) + 1) if R % d == 0)
    per = R // shards
    b = default_batch() if batch is None else int(batch)
    group = per if b <= 0 or b >= per else max(d for d in range(1, b + 1) if per % d == 0)
    return group, shards


def _batched(fn, group: int, instance_axes: tuple, shards: int, n_realisation: int):
    """`fn(*args)` (one realisation) over [I,R,...] arguments: the first `n_realisation` have both
    axes, the others an instance axis (0) or none (None) as `instance_axes` says. The realisations
    go `group` at a time (vmap), the groups in a loop (`lax.map`), and R is split over `shards`
    devices (`shard_map`; every output has leading axes [I,R]). Called inside a jitted program."""

    def per_instance(*args):
        mapped, shared = args[:n_realisation], args[n_realisation:]
        one = lambda m: fn(*m, *shared)  # noqa: E731
        R = jax.tree.leaves(mapped)[0].shape[0]
        if group == 1:  # no vmap at all: a plain loop over realisations
            return lax.map(one, mapped)
        if group >= R:
            return jax.vmap(one)(mapped)
        return lax.map(one, mapped, batch_size=group)

    axes = (0,) * n_realisation + tuple(instance_axes)
    if group == 1:  # instances in a loop too, so that the step runs without any batch axis

        def run(*args):
            over = [i for i, a in enumerate(axes) if a is not None]

            def one_instance(xs):
                full = list(args)
                for i, x in zip(over, xs):
                    full[i] = x
                return per_instance(*full)

            return lax.map(one_instance, tuple(args[i] for i in over))
    else:
        run = jax.vmap(per_instance, in_axes=axes)
    if shards > 1:
        mesh = Mesh(np.array(jax.devices()[:shards]), ("r",))
        specs = (P(None, "r"),) * n_realisation + (P(),) * len(instance_axes)
        run = jax.shard_map(run, mesh=mesh, in_specs=specs, out_specs=P(None, "r"), check_vma=False)
    return run


def _whole(keys, arrays, params, comps, sizes: SimSizes, layout: tuple[int, int], lists: ListLayout):
    """Every realisation of every instance over the whole horizon ((group, shards) = `layout`; the
    step goes through its lists as `lists` says)."""
    TRACE_COUNTER["program"] += 1
    group, shards = layout

    def one(key, arrays, params, comps):
        return _rollout_one(key, arrays, params, comps, sizes, lists)

    return _batched(one, group, (0, None, None), shards, 1)(keys, arrays, params, comps)


def _start(keys, arrays, params, comps, sizes: SimSizes, layout: tuple[int, int]):
    """The initial states [I,R] of the chunked horizon."""
    TRACE_COUNTER["program"] += 1
    group, shards = layout

    def one(key, arrays, params, comps):
        return _initial_state(key, arrays, params, sizes, comps)

    return _batched(one, group, (0, None, None), shards, 1)(keys, arrays, params, comps)


def _advance(st, keys, arrays, params, t0, comps, sizes: SimSizes, layout: tuple[int, int], lists: ListLayout,
             chunk: int):
    """`chunk` slots from slot t0 on: (states, per-slot outputs) [I,R,...]."""
    TRACE_COUNTER["program"] += 1
    group, shards = layout
    step = make_step(sizes, *comps, layout=lists, trace_counter=TRACE_COUNTER)

    def one(st, key, arrays, params, t0, comps):
        (st, _, _, _), series = lax.scan(step, (st, key, arrays, params), t0 + jnp.arange(chunk))
        return st, series

    return _batched(one, group, (0, None, None, None), shards, 2)(st, keys, arrays, params, t0, comps)


def _finish(st, series, arrays, params, comps, sizes: SimSizes, layout: tuple[int, int]):
    """The end of the chunked horizon: completions and summaries [I,R,...]."""
    TRACE_COUNTER["program"] += 1
    group, shards = layout

    def one(st, series, arrays, params, comps):
        return _final_results(st, series, arrays, params, sizes, comps[3])

    return _batched(one, group, (0, None, None), shards, 2)(st, series, arrays, params, comps)


# the jitted programs (cached by their arguments: the components' classes and static fields, the sizes)
_whole_program = eqx.filter_jit(_whole)
_start_program = eqx.filter_jit(_start)
_advance_program = eqx.filter_jit(_advance)
_finish_program = eqx.filter_jit(_finish)


def chunk_length(T: int, chunk_slots: int) -> int:
    """The piece length for `chunk_slots` (0: the whole horizon): the largest divisor of T that is
    at most `chunk_slots`, so every piece has the same shape (one compiled program)."""
    if chunk_slots <= 0 or chunk_slots >= T:
        return T
    return max(d for d in range(1, chunk_slots + 1) if T % d == 0)


def simulate(keys, arrays: ScenarioArrays, params: SimParams, sizes: SimSizes, channel, workload, controller,
             *, chunk_slots: int = 0, progress=None, failure=None, batch: int | None = None,
             devices: int | None = None, lists: ListLayout | None = None):
    """Run every realisation of every instance.

    keys: [I,R] typed keys; arrays: ScenarioArrays with a leading instance axis [I,...]; params are
    shared. Returns a dict of device arrays with leading axes [I,R]. With `chunk_slots` > 0 the
    horizon runs in pieces of at most that many slots (see `chunk_length`) and `progress(done, T)`,
    if given, is called after each piece: the results are the same. ``failure`` is the failure model
    (None: nothing fails; docs/SEMANTICS.md §12). ``batch``: realisations vmapped together (None: one
    on the CPU, all on an accelerator) and ``devices`` the most devices to split them over (None: all
    of the default backend's); see `realisation_layout`. ``lists``: how the step goes through its
    lists (`edgefm.sim.layout`; None: `for_group` of the realisations run together). None of these
    changes the results.
    """
    layout = realisation_layout(keys.shape[1], batch, devices)
    lists = for_group(layout[0]) if lists is None else lists
    comps = engine_components(channel, workload, controller, failure)
    chunk = chunk_length(sizes.T, int(chunk_slots))
    if chunk == sizes.T:
        out = _whole_program(keys, arrays, params, comps, sizes, layout, lists)
        if progress is not None:
            progress(sizes.T, sizes.T)
        return out
    st = _start_program(keys, arrays, params, comps, sizes, layout)
    pieces = []
    for t0 in range(0, sizes.T, chunk):
        st, series = _advance_program(st, keys, arrays, params, jnp.asarray(t0), comps, sizes, layout, lists, chunk)
        pieces.append(series)
        if progress is not None:
            jax.block_until_ready(st)
            progress(t0 + chunk, sizes.T)
    series = jax.tree.map(lambda *xs: jnp.concatenate(xs, axis=2), *pieces)  # [I,R,T,...]
    return _finish_program(st, series, arrays, params, comps, sizes, layout)


def compile_simulation(keys, arrays: ScenarioArrays, params: SimParams, sizes: SimSizes, channel, workload, controller,
                       failure=None, batch: int | None = None):
    """Ahead-of-time compile `simulate` for these arguments: returns the compiled callable
    ``f(keys, arrays, params)`` (used by the benchmarks to time compilation apart from running)."""
    layout = realisation_layout(keys.shape[1], batch)
    lists = for_group(layout[0])
    comps = engine_components(channel, workload, controller, failure)
    compiled = _whole_program.lower(keys, arrays, params, comps, sizes, layout, lists).compile()
    return lambda keys, arrays, params: compiled(keys, arrays, params, comps, sizes, layout, lists)


def exogenous_samples(key, arrays: ScenarioArrays, params: SimParams, sizes: SimSizes, channel, workload):
    """The exogenous samples one realisation sees: arrivals [T,U,N], uplink_rate [T,U], light_rate
    [T,V,Ml,X]; the same draws as inside `simulate`, for the reference simulator."""

    @eqx.filter_jit
    def draws(key, arrays, params, channel, workload):
        def body(wstate, t):
            counts, uplink, rates, wstate = draw_slot(key, t, wstate, arrays, params, sizes, channel, workload)
            return wstate, (counts, uplink, rates)

        wstate = workload.init(init_key(key, STREAM_ARRIVALS), arrays.arrival_rate)
        return lax.scan(body, wstate, jnp.arange(sizes.T))[1]

    return draws(key, arrays, params, channel, workload)


def failure_samples(key, arrays: ScenarioArrays, params: SimParams, sizes: SimSizes, failure):
    """[T,V] bool: the nodes up in each slot of one realisation (one instance's arrays), the same
    as inside `simulate`, for the reference simulator (docs/SEMANTICS.md §12). The link states are
    host-side: the failure model's `schedule`."""
    if not failing(failure):
        return jnp.ones((sizes.T, arrays.node_sched.shape[-1]), bool)

    @eqx.filter_jit
    def run(fstate, failure):
        def body(fstate, t):
            up, fstate = draw_failures(key, t, fstate, arrays, params, failure)
            return fstate, up

        return lax.scan(body, fstate, jnp.arange(sizes.T))[1]

    return run(failure.init(init_key(key, STREAM_FAILURES), arrays.random_nodes), failure)


__all__ = ["simulate", "exogenous_samples", "failure_samples", "STREAM_CONTROLLER"]
