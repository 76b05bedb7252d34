"""How the phases of a slot lay out their lists: the same semantics, two layouts.

- batched (``compact=False``): the step runs under `vmap` (a batch of realisations, on an
  accelerator): every list has its full static size (`SimSizes`) and no `cond` picks a shorter one
  (under `vmap` both branches of a `cond` run);
- sequential (``compact=True``): the step runs without a batch axis (realisations one after another,
  the CPU default): lists are taken a few entries at a time (`in_chunks`) or cut short when the live
  entries are few (`short_when_few`), so a slot's work follows the live tasks, not the capacities.

The chunk sizes below say how many entries the sequential layout handles together; the results
do not depend on them (tests/test_engine_invariants.py runs both layouts).
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax


def short_when_few(compact: bool, count, chunk: int, full: int, build):
    """`build(n)` with lists of n entries: n = `chunk` when ``compact`` (no batch axis) and `count`
    (the live entries) is at most `chunk`, else the `full` static size; a `cond` picks at run time.
    With a batch axis both branches of a `cond` would run, so the full lists are used directly."""
    K = min(chunk, full)
    if compact and K < full:
        return lax.cond(count <= K, lambda: build(K), lambda: build(full))
    return build(full)


def in_chunks(compact: bool, mask, chunk: int, body, carry, first=None):
    """`body(carry, sel) -> carry` over the true entries of the 1-D ``mask`` (``sel``: indices into
    it, ``len(mask)`` for no entry). With ``compact`` (no batch axis), `chunk` entries at a time:
    the first chunk directly (``first``: its indices, if already known), the others in a loop that
    runs only while entries remain; else one call over the whole list. Writes stay out of `cond`
    branches (a branch that writes into the buffer's arrays makes XLA copy them every slot)."""
    n = mask.shape[0]
    K = min(chunk, n)
    if not compact or K == n:
        return body(carry, jnp.where(mask, jnp.arange(n), n))
    sel = jnp.nonzero(mask, size=K, fill_value=n)[0] if first is None else first
    carry = body(carry, sel)

    def more(c):
        todo, carry = c
        sel = jnp.nonzero(todo, size=K, fill_value=n)[0]
        return todo.at[sel].set(False, mode="drop"), body(carry, sel)

    return lax.while_loop(lambda c: jnp.any(c[0]), more, (mask.at[sel].set(False, mode="drop"), carry))[1]


COMPLETION_CHUNK = 32  # tasks whose critical path is walked together (a loop over chunks covers any count)


ENQUEUE_CHUNK = 256  # newly ready stages handled together when few (the engine's sequential layout)


DISPATCH_CHUNK = 64  # queued core stages whose data-ready times are computed together (sequential layout)


APPLY_CHUNK = 256  # assignments validated and written together (the engine's sequential layout)


EXECUTE_CHUNK = 128  # finished or newly started light jobs recorded together (sequential layout)
