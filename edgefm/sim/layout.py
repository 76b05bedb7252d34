"""How the phases of a slot go through their lists: the same semantics, two layouts.

A phase says *what* it does with the live entries of a list (a mask over a static-sized list:
completing tasks, queued core stages, assigned light stages, finished light jobs); the layout
object it is given says *how* the list is gone through. `make_step` takes one and hands it to
every phase, as brax and gymnax keep batching outside an environment's step:

- `Batched()` — the step runs under `vmap` (a batch of realisations, on an accelerator): every
  list is taken whole at its static size (`SimSizes`) and no `cond` picks a shorter one (under
  `vmap` both branches of a `cond` run);
- `Sequential()` — the step runs without a batch axis (realisations one after another, the CPU
  default): lists are taken a few entries at a time or cut short when the live entries are few, so a
  slot's work follows the live tasks, not the capacities.

The results do not depend on the layout nor on its chunk sizes (tests/test_engine_invariants.py
runs both layouts, and the sequential one with every chunk at 1).
"""

from __future__ import annotations

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
from jax import lax


class ListLayout(eqx.Module):
    """How a phase goes through a list (abstract). The chunk sizes (entries handled together) are
    the sequential layout's; the batched layout uses `completion` only.

    completion: completing tasks whose critical path is walked together (both layouts: a loop over
    chunks covers any count). enqueue: newly ready stages handled together when few. dispatch:
    queued core stages whose data-ready times are computed together. apply: light assignments
    validated and written together. execute: finished or newly started light jobs recorded
    together."""

    completion: int = 32
    enqueue: int = 256
    dispatch: int = 64
    apply: int = 256
    execute: int = 128

    def __check_init__(self):
        for name in ("completion", "enqueue", "dispatch", "apply", "execute"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{type(self).__name__}.{name}={getattr(self, name)!r}: a chunk size must be >= 1")

    @abc.abstractmethod
    def chunk(self, size: int, full: int) -> int:
        """The number of entries of a `full`-entry list taken at once, given the chunk `size`."""

    @abc.abstractmethod
    def short_when_few(self, count, size: int, full: int, build):
        """`build(n)` with lists of n entries: n >= `count` (the live entries), n = `full` if need be."""

    @abc.abstractmethod
    def first(self, mask, size: int):
        """The first chunk's indices into the 1-D `mask` (`len(mask)` for no entry), or None when the
        list is taken whole; for a phase that needs them before `in_chunks` (pass them on to it)."""

    @abc.abstractmethod
    def in_chunks(self, mask, size: int, body, carry, first=None):
        """`body(carry, sel) -> carry` over the true entries of the 1-D `mask` (``sel``: indices into
        it, ``len(mask)`` for no entry); every true entry is in exactly one call."""

    @abc.abstractmethod
    def walk(self, todo, size: int, chunk_body, carry):
        """`chunk_body((todo, carry)) -> (todo, carry)` until `todo` is all false, where each call
        takes up to `size` true entries of `todo` and clears them. Returns the final (todo, carry)."""

    @abc.abstractmethod
    def rows(self, tables, *columns):
        """`row(i)`: `tables(*(c[i] for c in columns))`, from tables computed for every row at once or
        row by row, whichever the layout keeps cheaper."""


class Batched(ListLayout):
    """Every list whole: no `cond`, no loop whose trip count depends on one realisation, except the
    critical-path walk of completing tasks (`completion` rows at a time)."""

    def chunk(self, size, full):
        return full

    def short_when_few(self, count, size, full, build):
        return build(full)

    def first(self, mask, size):
        return None

    def in_chunks(self, mask, size, body, carry, first=None):
        return body(carry, jnp.where(mask, jnp.arange(mask.shape[0]), mask.shape[0]))

    def walk(self, todo, size, chunk_body, carry):
        return lax.while_loop(lambda c: jnp.any(c[0]), chunk_body, (todo, carry))

    def rows(self, tables, *columns):
        # row by row: for a whole list the tables would take (list length x instances) per realisation
        return lambda i: tables(*(c[i] for c in columns))


class Sequential(ListLayout):
    """A few entries at a time, for a step without a batch axis."""

    def chunk(self, size, full):
        return min(size, full)

    def short_when_few(self, count, size, full, build):
        """A `cond` picks `build(size)` when `count` <= `size`, else `build(full)`."""
        K = min(size, full)
        if K < full:
            return lax.cond(count <= K, lambda: build(K), lambda: build(full))
        return build(full)

    def first(self, mask, size):
        n = mask.shape[0]
        K = min(size, n)
        return jnp.nonzero(mask, size=K, fill_value=n)[0] if K < n else None

    def in_chunks(self, mask, size, body, carry, first=None):
        """The first chunk directly (``first``: its indices, if already known), the others in a loop
        that runs only while entries remain. Writes stay out of `cond` branches (a branch that writes
        into the buffer's arrays makes XLA copy them every slot)."""
        n = mask.shape[0]
        K = min(size, n)
        if K == n:
            return body(carry, jnp.where(mask, jnp.arange(n), n))
        sel = jnp.nonzero(mask, size=K, fill_value=n)[0] if first is None else first
        carry = body(carry, sel)

        def more(c):
            todo, carry = c
            sel = jnp.nonzero(todo, size=K, fill_value=n)[0]
            return todo.at[sel].set(False, mode="drop"), body(carry, sel)

        return lax.while_loop(lambda c: jnp.any(c[0]), more, (mask.at[sel].set(False, mode="drop"), carry))[1]

    def walk(self, todo, size, chunk_body, carry):
        """One chunk when at most `size` entries are true (a `cond`: no loop that reads the state),
        else the loop over chunks."""
        if size >= todo.shape[0]:
            return lax.while_loop(lambda c: jnp.any(c[0]), chunk_body, (todo, carry))
        return lax.cond(todo.sum() <= size, lambda: chunk_body((todo, carry)),
                        lambda: lax.while_loop(lambda c: jnp.any(c[0]), chunk_body, (todo, carry)))

    def rows(self, tables, *columns):
        # a chunk's tables are small: computed for all its rows at once
        full = tables(*columns)
        return lambda i: jax.tree.map(lambda a: a[i], full)


def for_group(group: int) -> ListLayout:
    """The layout for realisations run `group` at a time: `Sequential()` for one (no batch axis),
    `Batched()` for a vmapped group."""
    return Sequential() if group == 1 else Batched()
