"""The horizon: `lax.scan` over slots, then `vmap` over realisations and sampled instances; jitted once
per (sizes, components) and cached across the jobs of a multirun in one process."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from jax import lax

from edgefm.sim.keys import STREAM_ARRIVALS, STREAM_CONTROLLER, STREAM_FAILURES, draw_slot, init_key
from edgefm.sim.reduce import summarise
from edgefm.sim.step import draw_failures, failing, init_state, make_step, observe_completions
from edgefm.sim.types import ScenarioArrays, SimParams, SimSizes

_COMPILED: dict = {}
TRACE_COUNTER = {"step": 0}


def _initial_state(key, arrays: ScenarioArrays, sizes: SimSizes, workload, controller, failure):
    wstate = workload.init(init_key(key, STREAM_ARRIVALS), arrays.arrival_rate)
    fstate = failure.init(init_key(key, STREAM_FAILURES), arrays.random_nodes) if failing(failure) else ()
    return init_state(sizes, wstate, controller.init((sizes, arrays)), fstate)


def _rollout_one(key, arrays: ScenarioArrays, params: SimParams, sizes: SimSizes, channel, workload, controller,
                 failure=None):
    st = _initial_state(key, arrays, sizes, workload, controller, failure)
    step = make_step(sizes, channel, workload, controller, TRACE_COUNTER, failure)
    (st, _, _, _), series = lax.scan(step, (st, key, arrays, params), jnp.arange(sizes.T))
    return _final_results(st, series, arrays, params, sizes, failure)


def _final_results(st, series, arrays: ScenarioArrays, params: SimParams, sizes: SimSizes, failure):
    """The completions at the end of the horizon, then the summary of one realisation."""
    end = sizes.T * params.slot_ms
    st = observe_completions(st, arrays, sizes, end, params.slot_ms if failing(failure) else None)
    return summarise(st, series, arrays, params, sizes)


def _component_key(c):
    """What of a component changes the compiled program: its class and its non-traced options
    (numeric options listed in `params()`, and the workload's load, are traced leaves). A failure
    model's other options act only through its host-side `schedule` (traced arrays)."""
    if c is None or getattr(c, "kind", None) == "failure":  # a model that fails nothing: no failure code
        return c.static_key() if failing(c) else None
    traced = set(c.params()) | {"load"}
    config = c.config
    if dataclasses.is_dataclass(config):
        static = tuple((f.name, repr(getattr(config, f.name))) for f in dataclasses.fields(config) if f.name not in traced)
    else:
        static = (repr(config),)
    return (c.static_key(), static)


def _program(sizes: SimSizes, channel, workload, controller, failure=None):
    """The jitted program for these sizes and components, cached for the life of the process."""
    cache_key = (sizes, _component_key(channel), _component_key(workload), _component_key(controller),
                 _component_key(failure))
    fn = _COMPILED.get(cache_key)
    if fn is None:

        def run(keys, arrays, params):
            per_real = jax.vmap(
                lambda k, a: _rollout_one(k, a, params, sizes, channel, workload, controller, failure),
                in_axes=(0, None),
            )
            return jax.vmap(per_real, in_axes=(0, 0))(keys, arrays)

        fn = jax.jit(run)
        _COMPILED[cache_key] = fn
    return fn


def _chunk_programs(sizes: SimSizes, chunk: int, channel, workload, controller, failure=None):
    """(start, advance, finish), jitted and cached: the horizon in pieces of `chunk` slots, with the
    state carried between calls on the device (the same step, so the same results as one piece)."""
    cache_key = ("chunked", chunk, sizes, _component_key(channel), _component_key(workload), _component_key(controller),
                 _component_key(failure))
    programs = _COMPILED.get(cache_key)
    if programs is None:
        step = make_step(sizes, channel, workload, controller, TRACE_COUNTER, failure)

        def batched(fn, in_axes):  # over realisations, then instances
            return jax.vmap(jax.vmap(fn, in_axes=in_axes[0]), in_axes=in_axes[1])

        def start_one(key, arrays):
            return _initial_state(key, arrays, sizes, workload, controller, failure)

        def advance_one(st, key, arrays, params, t0):
            (st, _, _, _), series = lax.scan(step, (st, key, arrays, params), t0 + jnp.arange(chunk))
            return st, series

        def finish_one(st, series, arrays, params):
            return _final_results(st, series, arrays, params, sizes, failure)

        programs = (
            jax.jit(batched(start_one, ((0, None), (0, 0)))),
            jax.jit(batched(advance_one, ((0, 0, None, None, None), (0, 0, 0, None, None)))),
            jax.jit(batched(finish_one, ((0, 0, None, None), (0, 0, 0, None)))),
        )
        _COMPILED[cache_key] = programs
    return programs


def chunk_length(T: int, chunk_slots: int) -> int:
    """The piece length for `chunk_slots` (0: the whole horizon): the largest divisor of T that is
    at most `chunk_slots`, so every piece has the same shape (one compiled program)."""
    if chunk_slots <= 0 or chunk_slots >= T:
        return T
    return max(d for d in range(1, chunk_slots + 1) if T % d == 0)


def simulate(keys, arrays: ScenarioArrays, params: SimParams, sizes: SimSizes, channel, workload, controller,
             *, chunk_slots: int = 0, progress=None, failure=None):
    """Run every realisation of every instance.

    keys: [I,R] typed keys; arrays: ScenarioArrays with a leading instance axis [I,...]; params are
    shared. Returns a dict of device arrays with leading axes [I,R]. With `chunk_slots` > 0 the
    horizon runs in pieces of at most that many slots (see `chunk_length`) and `progress(done, T)`,
    if given, is called after each piece: the results are the same. ``failure`` is the failure model
    (None: nothing fails; docs/SEMANTICS.md §12).
    """
    chunk = chunk_length(sizes.T, int(chunk_slots))
    if chunk == sizes.T:
        out = _program(sizes, channel, workload, controller, failure)(keys, arrays, params)
        if progress is not None:
            progress(sizes.T, sizes.T)
        return out
    start, advance, finish = _chunk_programs(sizes, chunk, channel, workload, controller, failure)
    st = start(keys, arrays)
    pieces = []
    for t0 in range(0, sizes.T, chunk):
        st, series = advance(st, keys, arrays, params, jnp.asarray(t0))
        pieces.append(series)
        if progress is not None:
            jax.block_until_ready(st)
            progress(t0 + chunk, sizes.T)
    series = jax.tree.map(lambda *xs: jnp.concatenate(xs, axis=2), *pieces)  # [I,R,T,...]
    return finish(st, series, arrays, params)


def compile_simulation(keys, arrays: ScenarioArrays, params: SimParams, sizes: SimSizes, channel, workload, controller,
                       failure=None):
    """Ahead-of-time compile `simulate` for these arguments: returns the compiled callable
    ``f(keys, arrays, params)`` (used by the benchmarks to time compilation apart from running)."""
    return _program(sizes, channel, workload, controller, failure).lower(keys, arrays, params).compile()


def exogenous_samples(key, arrays: ScenarioArrays, params: SimParams, sizes: SimSizes, channel, workload):
    """The exogenous samples one realisation sees: arrivals [T,U,N], uplink_rate [T,U], light_rate
    [T,V,Ml,X]; the same draws as inside `simulate`, for the reference simulator."""

    def body(wstate, t):
        counts, uplink, rates, wstate = draw_slot(key, t, wstate, arrays, params, sizes, channel, workload)
        return wstate, (counts, uplink, rates)

    wstate = workload.init(init_key(key, STREAM_ARRIVALS), arrays.arrival_rate)
    _, (counts, uplink, rates) = jax.jit(lambda w: lax.scan(body, w, jnp.arange(sizes.T)))(wstate)
    return counts, uplink, rates


def failure_samples(key, arrays: ScenarioArrays, params: SimParams, sizes: SimSizes, failure):
    """[T,V] bool: the nodes up in each slot of one realisation (one instance's arrays), the same
    as inside `simulate`, for the reference simulator (docs/SEMANTICS.md §12). The link states are
    host-side: the failure model's `schedule`."""
    if not failing(failure):
        return jnp.ones((sizes.T, arrays.node_sched.shape[-1]), bool)

    def body(fstate, t):
        up, fstate = draw_failures(key, t, fstate, arrays, params, failure)
        return fstate, up

    fstate = failure.init(init_key(key, STREAM_FAILURES), arrays.random_nodes)
    return jax.jit(lambda f: lax.scan(body, f, jnp.arange(sizes.T))[1])(fstate)


__all__ = ["simulate", "exogenous_samples", "failure_samples", "STREAM_CONTROLLER"]
