"""Record what a controller saw and decided at every boundary of an engine run.

    from edgefm.testing.recording import RecordingController, recorded
    rec = RecordingController(ProposedController())
    out = simulate(keys, arrays, params, sizes, channel, workload, rec)
    obs, act = recorded(out)           # dicts of arrays [I,R,T,...]

The wrapper runs the inner controller unchanged and adds the observation and the action to the
per-slot diagnostics (`Action.info`), which the engine stacks over slots. This is meant for tests and
debugging on short runs: the observation holds the whole light queue (`[Lw,V]` data-ready times per
slot), so a long run on a big scenario records a lot.
"""

from __future__ import annotations

import equinox as eqx

from edgefm.interfaces import AbstractController

OBS_PREFIX, ACT_PREFIX = "rec_obs_", "rec_act_"
ACTION_FIELDS = ("alive", "assign", "rank", "parallelism")


class _RecordingName:
    """``name``: ``"recording"`` on the class, ``"recording(<inner name>)"`` on an instance."""

    def __get__(self, obj, cls):
        return "recording" if obj is None else f"recording({obj.inner.name})"


class RecordingController(AbstractController):
    """Wraps a controller; its decisions are the inner controller's, its info adds `rec_obs_*` and
    `rec_act_*` entries (every `Observation` field and the action's arrays) to the inner info.

    The inner controller is a pytree field: its traced options stay traced (a sweep over them reuses
    the compiled program) and its static options key the program, as they would unwrapped."""

    name = _RecordingName()
    description = "records what the inner controller saw and decided (tests, debugging)"

    inner: AbstractController

    def for_engine(self) -> RecordingController:
        inner = self.inner.for_engine()
        return self if inner is self.inner else RecordingController(inner)

    def init(self, ctx):
        return self.inner.init(ctx)

    def act(self, state, obs, ctx, params, key):
        action, state = self.inner.act(state, obs, ctx, params, key)
        info = dict(action.info)
        for name in obs.__dataclass_fields__:
            if getattr(obs, name) is not None:  # optional fields (node_up without failures) are absent
                info[OBS_PREFIX + name] = getattr(obs, name)
        for name in ACTION_FIELDS:
            info[ACT_PREFIX + name] = getattr(action, name)
        return eqx.tree_at(lambda a: a.info, action, info), state


def recorded(out: dict) -> tuple[dict, dict]:
    """(observations, actions) of an engine output, keyed by field name without prefix; arrays keep
    their leading `[I,R,T]` axes. The inner controller's own info stays in `out` under its names."""
    obs = {k[len(OBS_PREFIX):]: v for k, v in out.items() if k.startswith(OBS_PREFIX)}
    act = {k[len(ACT_PREFIX):]: v for k, v in out.items() if k.startswith(ACT_PREFIX)}
    return obs, act
