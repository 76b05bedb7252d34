"""Placement `milp`: the network-aware, sparsity-constrained integer program of MODEL.md §5 on SCIP.

See docs/PLACEMENT.md for the program, the closures and the options.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edgefm.errors import ConfigError, SolverError
from edgefm.interfaces import AbstractPlacementSolver, PlacementResult, host
from edgefm.scenario.hostable import Fit, check_plan, check_plan_fit, fit_growth, fit_info, not_even_at_1
from edgefm_milp_scip import scip
from edgefm_milp_scip.program import Program, build_program, reserve_by_kind, reserve_info, to_placement, with_demand

KAPPA_MODES = ("retention", "fixed", "off")
# the light reserve of the default closures (`paper`): a quarter of every edge server, nothing on devices
DEFAULT_RESERVE = {"server": 0.25, "device": 0.0}


def finite(value) -> bool:
    """Whether ``value`` is one finite number (False for anything else: a string, a list, a config
    passed positionally, ...), so a bad option is a ConfigError rather than a TypeError."""
    try:
        return bool(np.ndim(value) == 0 and np.isfinite(value))
    except (TypeError, ValueError):
        return False


def validate_common(config, solver: str) -> None:
    """Checks shared by `milp` and `milp_relaxed` (the names are those of the placement group).
    ``config``: anything with their options as attributes (the placement itself, or its ``Config``)."""
    reserve_by_kind(config.reserve)
    check_plan(config.plan_load, config.target_utilisation)
    check_plan_fit(config.plan_fit)
    for name in ("xi", "rho"):
        value = getattr(config, name)
        if not (finite(value) and value >= 0):
            raise ConfigError(f"placement.{name}", value, "a finite number >= 0")
    if not finite(config.q_min):
        raise ConfigError("placement.q_min", config.q_min, "a finite number")
    if config.sparsity not in scip.FORMS:
        raise ConfigError("placement.sparsity", config.sparsity, "one of: " + ", ".join(scip.FORMS))
    if config.kappa_mode not in KAPPA_MODES:
        raise ConfigError("placement.kappa_mode", config.kappa_mode, "one of: " + ", ".join(KAPPA_MODES))
    if config.kappa < 0:
        raise ConfigError("placement.kappa", config.kappa, "an integer >= 0")
    if not (0 < config.retention <= 1):
        raise ConfigError("placement.retention", config.retention, "a number in (0, 1]")
    if not (config.time_limit_s > 0):
        raise ConfigError("placement.time_limit_s", config.time_limit_s, "a number of seconds > 0")


def model_folder(config) -> Path:
    """Where write_model puts its files: ``model_dir``, else the Hydra run folder, else the cwd."""
    if config.model_dir:
        return Path(config.model_dir)
    try:
        from hydra.core.hydra_config import HydraConfig

        if HydraConfig.initialized():
            return Path(HydraConfig.get().runtime.output_dir)
    except Exception:  # noqa: BLE001 - outside a Hydra job
        pass
    return Path(os.getcwd())


def program_of(config, scenario, slot_ms: float, uplink_rate=None) -> Program:
    """The program of ``scenario`` under the options ``config`` (a placement, or its ``Config``);
    ``uplink_rate`` [U] MB/ms (the channel's mean-value rate, inf: no uplink time) or None: no
    uplink time."""
    return build_program(
        scenario, slot_ms=slot_ms, xi=config.xi, rho=config.rho, q_min=config.q_min, reserve=config.reserve,
        uplink_rate=uplink_rate, plan_load=config.plan_load, target_utilisation=config.target_utilisation,
    )  # fmt: skip


def fitted_program(config, scenario, slot_ms: float, uplink_rate, options: scip.SolverOptions,
                   solver: str) -> tuple[Program, Fit, np.ndarray | None]:
    """The program to solve, the fit of its demand (`edgefm.scenario.hostable.fit_growth`,
    docs/PLACEMENT.md §1) and, when the demand was lowered, the κ-free placement [V,J] the check
    found for it (else None). With ``plan_fit = exact``, or ``largest`` and a demand that fits, the
    program of `program_of` itself; else the same program with the demand at the largest growth
    factor α' in [1, α] whose capacity and demand rows are feasible (`scip.demand_diagnosis` as a
    quick filter, then an exact κ-free SCIP solve, `scip.feasible`). No α' ≥ 1 fits: the usual
    one-line SolverError of that demand, with a note."""
    program = program_of(config, scenario, slot_ms, uplink_rate)
    checks: dict[tuple, tuple[Program, str | None, scip.Solve | None]] = {}

    def fits(demand) -> bool:
        p = with_demand(program, demand)
        reason = scip.demand_diagnosis(p, config.reserve, solver)
        result = None if reason else scip.feasible(p, options)
        checks[tuple(int(d) for d in demand)] = (p, reason, result)
        return reason is None and result.has_solution

    fit = fit_growth(scenario, plan_fit=config.plan_fit, plan_load=config.plan_load,
                     target_utilisation=config.target_utilisation, fits=fits)
    if not fit.fits:
        p, reason, result = checks[tuple(int(d) for d in fit.demand)]
        if reason is None:
            try:
                scip.ensure_solution(result, p, "global", config.reserve, options, solver)  # κ-free: the form is unused
            except SolverError as err:
                reason = str(err)
            else:  # not reached: a check without a solution has a reason
                reason = f"{solver}: infeasible: no placement of the demand req_m"
        raise SolverError(not_even_at_1(reason, fit))
    if np.array_equal(fit.demand, fit.requested):
        return program, fit, None
    p, _, result = checks[tuple(int(d) for d in fit.demand)]
    return p, fit, result.x


class ProgramPlacement(AbstractPlacementSolver):
    """The options of the integer program of MODEL.md §5, shared by `milp` and `milp_relaxed`
    (each solves it its own way; `milp_relaxed` applies the κ rule to its repaired objective)."""

    xi: float = host(3.0)  # weight of the QoS score Q against the cost
    rho: float = host(0.01)  # 1/ms: decay of the load estimate z̃ (Eq. 15)
    q_min: float = host(-1.0)  # floor of each (user, type) term of Q
    reserve: Any = host(DEFAULT_RESERVE)  # light reserve: a fraction, [cpu, ram, gpu, vram], or {server: ..., device: ...} of either
    plan_load: float = host(1.0)  # the demand req_m is sized for plan_load times the load-1x arrival rates
    target_utilisation: float = host(1.0)  # ρ* in (0, 1]: the mean utilisation the demand is sized for
    plan_fit: str = host("exact")  # exact: a demand that does not fit is an error | largest: the largest growth in [1, plan_load / ρ*] that fits
    sparsity: str = host("global")  # global: Σ 1{x ≥ 1} ≥ κ over (node, service) pairs | per_service: each service on ≥ κ nodes
    kappa_mode: str = host("retention")  # retention: largest κ within (1 - retention)|J*| | fixed: placement.kappa | off
    kappa: int = host(0)  # κ when kappa_mode = fixed
    retention: float = host(0.95)  # share of the κ-free optimum the retention rule keeps

    def __check_init__(self):
        validate_common(self, self.name)


class MilpPlacement(ProgramPlacement):
    """Core placement by the integer program of MODEL.md §5, solved exactly by SCIP."""

    name = "milp"
    description = "network-aware integer program with a sparsity constraint (MODEL.md §5), SCIP"

    time_limit_s: float = host(60.0)  # SCIP time limit per solve (s)
    gap: float = host(0.0)  # relative gap at which SCIP stops (0 = proven optimal)
    threads: int = host(1)  # SCIP threads (> 1: concurrent solve)
    seed: int = host(0)  # SCIP random seed shift
    heuristics: str = host("default")  # SCIP primal heuristics emphasis: default | aggressive | fast | off
    scip_params: Any = host(None)  # any SCIP parameters, set last (e.g. {limits/nodes: 1000})
    write_model: bool = host(False)  # write the program solved last as MPS and LP
    model_dir: str = host("")  # folder for write_model ("" = the Hydra run folder, else the working directory)
    verbose: bool = host(False)  # SCIP log on stdout

    def __check_init__(self):  # the program's options: ProgramPlacement.__check_init__
        if not (0 <= self.gap < 1):
            raise ConfigError("placement.gap", self.gap, "a relative gap in [0, 1)")
        if self.threads < 1:
            raise ConfigError("placement.threads", self.threads, "an integer >= 1")
        if self.heuristics not in scip.HEURISTICS:
            raise ConfigError("placement.heuristics", self.heuristics, "one of: " + ", ".join(scip.HEURISTICS))
        params = self.scip_params
        if params is not None and not isinstance(params, Mapping):
            raise ConfigError("placement.scip_params", params, "a mapping of SCIP parameter names to values, e.g. {limits/nodes: 1000}")
        scip.check_params(dict(params or {}), "placement.scip_params")

    def options(self) -> scip.SolverOptions:
        return scip.SolverOptions(
            time_limit_s=self.time_limit_s, gap=self.gap, threads=self.threads, seed=self.seed, verbose=self.verbose,
            heuristics=self.heuristics, params=dict(self.scip_params or {}),
        )  # fmt: skip

    # ------------------------------------------------------------------------------------------
    def reusable(self) -> bool:
        # the same program gives the same placement; writing the model files is an effect of its own
        return not self.write_model

    def solve(self, scenario, *, slot_ms: float, uplink_rate=None) -> PlacementResult:
        """The placement of ``scenario``. ``uplink_rate`` [U] MB/ms is the channel's mean-value
        uplink rate (the runner passes it; inf: no uplink time); None (a direct call without a
        channel): the embedding counts no uplink time."""
        program, fit, _ = fitted_program(self, scenario, slot_ms, uplink_rate, self.options(), self.name)
        x, info, final = self.solve_program(program)
        info.update(fit_info(self.plan_fit, self.plan_load, self.target_utilisation, fit))
        if self.write_model:
            instance = scenario.meta.get("instance", 0) if isinstance(scenario.meta, dict) else 0
            paths = scip.write_model(final.model, model_folder(self), f"placement_{self.name}_instance{instance}")
            info["model_files"] = " ".join(paths)
        return PlacementResult(x_core=to_placement(program, x, scenario.num_services), info=info)

    def solve_program(self, program: Program) -> tuple[np.ndarray, dict, scip.Solve]:
        """Solve ``program`` with the configured κ mode; returns (x[V,J], info, the last solve)."""
        form, opts = self.sparsity, self.options()
        reason = scip.demand_diagnosis(program, self.reserve, self.name)
        if reason:
            raise SolverError(reason)
        solves: list[scip.Solve] = []

        def run(kappa):
            result = scip.solve(program, kappa, form, opts)
            solves.append(result)
            return result

        info: dict[str, Any] = {}
        if self.kappa_mode == "off":
            final = scip.ensure_solution(run(None), program, form, self.reserve, opts, self.name)
        elif self.kappa_mode == "fixed":
            reason = scip.kappa_diagnosis(program, self.kappa, form, self.name)
            if reason:
                raise SolverError(reason)
            final = scip.ensure_solution(run(self.kappa), program, form, self.reserve, opts, self.name)
        else:
            final, free = retention_rule(program, form, self.retention, run, self.reserve, opts, self.name)
            info["kappa_free_objective"] = free.objective
            info["kappa_free_status"] = free.status
        if final.status != "optimal":
            warnings.warn(
                f"{self.name}: SCIP stopped ({final.status}) before proving optimality; the placement is the best "
                f"found, relative gap {final.gap:.3g} (raise placement.time_limit_s for an optimal one)",
                RuntimeWarning,
                stacklevel=3,
            )
        x = final.x
        info = {
            "solver_name": f"scip {pyscipopt_version()}",
            "solver_status": final.status,
            "solver_objective": float(final.objective),
            "solver_gap": float(final.gap),
            "solver_kappa": int(final.kappa) if final.kappa is not None else 0,
            "solver_num_solves": len(solves),
            "solver_time_s": float(sum(s.seconds for s in solves)),
            "kappa_mode": self.kappa_mode,
            "sparsity": form,
            **info,
            **reserve_info(self.reserve),
            "occupied": scip.occupied(x, form),
            "instances": int(x.sum()),
        }
        return x, info, final


MilpConfig = MilpPlacement.Config  # the options as a dataclass (the Hydra schema): MilpPlacement.from_config(MilpConfig(...))


def retention_rule(program: Program, form: str, retention: float, run, reserve, opts, solver: str):
    """κ by the retention rule: the largest κ whose optimum J(κ) ≤ J* + (1 - retention)|J*|, J* the
    κ-free optimum. J(κ) is non-decreasing in κ (the feasible set shrinks), so bisection over
    [κ of the κ-free solution, κ_max] is exact; each step is one exact solve."""
    free = scip.ensure_solution(run(None), program, form, reserve, opts, solver)
    target = free.objective + (1.0 - retention) * abs(free.objective) + 1e-9 * max(1.0, abs(free.objective))
    lo, hi = scip.occupied(free.x, form), scip.kappa_max(program, form)
    results: dict[int, scip.Solve] = {}
    while lo < hi:
        mid = (lo + hi + 1) // 2
        result = run(mid)
        results[mid] = result
        if result.has_solution and result.objective <= target:
            lo = mid
        else:
            hi = mid - 1
    final = results.get(lo)
    if final is None:  # κ = what the κ-free optimum already holds: solve that program itself
        final = run(lo)
    return scip.ensure_solution(final, program, form, reserve, opts, solver), free


def pyscipopt_version() -> str:
    import pyscipopt

    try:
        return str(pyscipopt.Model().version())
    except Exception:  # noqa: BLE001
        return pyscipopt.__version__
