"""Where one engine slot spends its time: the compiled program's operations, by phase of the step.

Runs the benchmark scenario (`engine_throughput.py`: the paper scenario at load 1x, `least_loaded` +
the controller named) for a few realisations, once to compile and warm up, once under
`jax.profiler` (a Perfetto trace), and adds up the self time of every XLA operation by the phase of
the step it belongs to (`jax.named_scope` in `edgefm.sim.step.make_step`: completions, draws,
arrivals, enqueue, dispatch_core, observation, controller, apply, execute_light). Operations that
XLA adds itself (copies, the loop's bookkeeping) have no phase; they are listed by name, the largest
first, so that a buffer copied every slot shows up.

    python benchmarks/profile_engine.py                        # lbrr, 2 realisations, one device
    python benchmarks/profile_engine.py --controller proposed --top 30

Profiling slows the run down (each operation is timed); read the shares, not the total.
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import re
import sys
import tempfile
import time

PHASES = ("completions", "draws", "arrivals", "enqueue", "dispatch_core", "observation", "controller",
          "apply", "execute_light")


def op_phases(hlo_text: str) -> dict[str, str]:
    """Operation name -> phase (or 'other'), from the op_name metadata of the optimised HLO."""
    out = {}
    for line in hlo_text.splitlines():
        m = re.match(r"\s*(?:ROOT )?%?([\w.\-]+) = .*?metadata=\{([^}]*)\}", line)
        if not m:
            continue
        op = re.search(r'op_name="([^"]*)"', m.group(2))
        path = "/" + (op.group(1) if op else "") + "/"
        found = [p for p in PHASES if f"/{p}/" in path]
        out[m.group(1)] = found[-1] if found else "other"
    return out


def self_times(trace_file: str) -> dict[str, float]:
    """Event name -> summed self time (µs): its duration less that of the events nested in it."""
    events = json.load(gzip.open(trace_file))
    events = events["traceEvents"] if isinstance(events, dict) else events
    threads = collections.defaultdict(list)
    for e in events:
        if e.get("ph") == "X" and "dur" in e:
            threads[(e["pid"], e["tid"])].append(e)
    total = collections.Counter()
    for evs in threads.values():
        evs.sort(key=lambda e: (e["ts"], -e["dur"]))
        stack, child = [], collections.Counter()
        for i, e in enumerate(evs):
            while stack and evs[stack[-1]]["ts"] + evs[stack[-1]]["dur"] <= e["ts"]:
                stack.pop()
            if stack:
                child[stack[-1]] += e["dur"]
            stack.append(i)
        for i, e in enumerate(evs):
            total[e["name"]] += e["dur"] - child[i]
    return total


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--realisations", type=int, default=2)
    ap.add_argument("--controller", default="lbrr")
    ap.add_argument("--load", type=float, default=1.0)
    ap.add_argument("--top", type=int, default=15, help="operations without a phase to list")
    args = ap.parse_args(argv)
    os.environ.setdefault("EDGEFM_CPU_DEVICES", "1")
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import engine_throughput as et
    import jax

    from edgefm.sim.rollout import compile_simulation

    _, _, _, comps, sizes, arrays, params, keys = et.setup(args.realisations, args.load, args.controller)
    fn = compile_simulation(keys, arrays, params, sizes, *comps)
    phase = op_phases(fn.as_text())
    jax.block_until_ready(fn(keys, arrays, params))
    t0 = time.perf_counter()
    jax.block_until_ready(fn(keys, arrays, params))
    plain = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as d:
        jax.profiler.start_trace(d, create_perfetto_trace=True)
        jax.block_until_ready(fn(keys, arrays, params))
        jax.profiler.stop_trace()
        files = glob.glob(os.path.join(d, "**", "*.json.gz"), recursive=True)
        if not files:
            print("no Perfetto trace was written (jax.profiler)", file=sys.stderr)
            return 1
        times = self_times(files[0])
    # XLA operations only (not the executor's own events); "end: x" is the tail of an operation x
    ops = collections.Counter()
    for n, v in times.items():
        if not n.startswith(("ThunkExecutor", "SlinkyThreadPool", "$")):
            ops[n.removeprefix("end: ")] += v
    total = sum(ops.values())
    slots = args.realisations * sizes.T
    print(f"{args.controller}, {args.realisations} realisations x {sizes.T} slots: {plain:.2f} s without the "
          f"profiler ({1e3 * plain / slots:.2f} ms per realisation-slot)\n")
    by_phase = collections.Counter()
    for n, v in ops.items():
        by_phase[phase.get(n, "other")] += v
    print("| phase | share | ms per slot (profiled) |\n|---|---:|---:|")
    for p, v in by_phase.most_common():
        print(f"| {p} | {100 * v / total:.1f} % | {v / 1e3 / slots:.3f} |")
    print(f"\nlargest operations without a phase (top {args.top}):")
    other = sorted(((v, n) for n, v in ops.items() if phase.get(n, "other") == "other"), reverse=True)
    for v, n in other[: args.top]:
        print(f"  {100 * v / total:5.1f} %  {n}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
