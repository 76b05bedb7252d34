"""On-device summaries of one realisation: counts, rates, costs and latency quantiles."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from edgefm.sim.light import BOUND_TOL


def known_late_light_stages(st, arrays, params, sizes):
    """[2,Ml] int: light stages not finished at the end of the horizon that are already past the
    bound the controller stated (SEMANTICS §11): each is counted, and a violation (row 0: root
    stages, row 1: the others)."""
    end = sizes.T * params.slot_ms
    svc = jnp.clip(arrays.stage_service[st.ttype], 0)  # [B,S]
    light = (arrays.stage_service[st.ttype] >= 0) & ~arrays.service_is_core[svc]
    t0 = jnp.maximum(st.disp, st.rdy)
    late = (st.alive[:, None] & light & (st.node >= 0) & jnp.isinf(st.finish)
            & jnp.isfinite(st.bound) & (end - t0 > st.bound + BOUND_TOL))
    ml = jnp.clip(arrays.light_index[svc], 0)
    row = jnp.where(arrays.num_parents[st.ttype] == 0, 0, 1)  # [B,S]
    count = jnp.zeros((2, sizes.Ml), st.bounded.dtype).at[row.reshape(-1), ml.reshape(-1)].add(
        late.reshape(-1).astype(st.bounded.dtype))
    return count


def summarise(st, series, arrays, params, sizes):
    """Reduce the final state and the per-slot series of one realisation to the run's variables."""
    J, N = sizes.J, sizes.N
    recorded = jnp.arange(J) < st.next_id
    latency = st.out_finish - st.out_arrival  # nan if unfinished
    finished = recorded & ~jnp.isnan(latency)
    deadline = arrays.deadline[st.out_type]
    ontime = finished & (latency <= deadline)
    late = finished & ~ontime
    dropped = recorded & st.out_dropped
    by_type = jax.nn.one_hot(st.out_type, N, dtype=jnp.int32)  # [J,N]

    def per_type(mask):
        return (mask[:, None] * by_type).sum(0)

    arrived = st.arrived_by_type.sum()
    n_ontime, n_late, n_dropped = ontime.sum(), late.sum(), dropped.sum()
    qs = jnp.asarray(sizes.quantiles)

    def quantiles(n):
        sel = finished & (st.out_type == n)
        return jnp.nanquantile(jnp.where(sel, latency, jnp.nan), qs)

    def mean_latency(n):
        sel = finished & (st.out_type == n)
        return jnp.where(sel.any(), jnp.sum(jnp.where(sel, latency, 0.0)) / jnp.maximum(sel.sum(), 1), jnp.nan)

    ontime_by_type = per_type(ontime)
    known_late = known_late_light_stages(st, arrays, params, sizes)
    counts = jnp.stack([n_ontime, n_late]).astype(st.breakdown.dtype)
    breakdown = jnp.where(counts[:, None] > 0, st.breakdown / jnp.maximum(counts, 1)[:, None], jnp.nan)
    cost_light = series["cost_light_slot"].sum()
    info = series.get("controller_info", {})  # per-slot diagnostics of the controller, by name
    return {
        **info,
        "tasks_arrived": arrived,
        "tasks_ontime": n_ontime,
        "tasks_late": n_late,
        "tasks_dropped": n_dropped,
        "tasks_unfinished": arrived - n_ontime - n_late - n_dropped,
        "ontime_rate": n_ontime / jnp.maximum(arrived, 1),
        "cost_core": arrays.core_cost_total,
        "cost_light": cost_light,
        "cost_total": arrays.core_cost_total + cost_light,
        "list_overflow": st.overflow,
        "invalid_actions": st.invalid,
        "capacity_violations": st.violations,
        "buffer_peak": st.buffer_peak,
        "tasks_arrived_by_type": st.arrived_by_type,
        "tasks_ontime_by_type": ontime_by_type,
        "ontime_rate_by_type": ontime_by_type / jnp.maximum(st.arrived_by_type, 1),
        "latency_mean": jax.vmap(mean_latency)(jnp.arange(N)),
        "latency_quantile": jax.vmap(quantiles)(jnp.arange(N)),
        "latency_quantile_all": jnp.nanquantile(jnp.where(finished, latency, jnp.nan), qs),
        "latency_breakdown": breakdown,
        "light_bounded": (st.bounded + known_late).sum(0),
        "light_violations": (st.bound_violations + known_late).sum(0),
        "light_bounded_root": (st.bounded + known_late)[0],
        "light_violations_root": (st.bound_violations + known_late)[0],
        "cost_light_slot": series["cost_light_slot"],
        "tasks_in_flight": series["tasks_in_flight"],
        "x_light": series["x_light"],
        "parallelism": series["parallelism"],
        "arrivals": series["arrivals"],
        "uplink_rate": series["uplink_rate"],
        "node_up": series["node_up"],
        "jobs_lost": series["jobs_lost"],
        "task_finish": st.out_finish,
        "task_arrival": st.out_arrival,
        "task_type": st.out_type,
        "task_dropped": st.out_dropped,
        "num_tasks": st.next_id,
    }
