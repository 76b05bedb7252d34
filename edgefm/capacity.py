"""Effective capacity of a Gamma-rate light instance and the parallelism -> delay map (MODEL.md §7.1–7.2).

A light instance of microservice m serves f·Δt MB in a slot of Δt ms, with the rate f (MB/ms) drawn
i.i.d. per slot from Gamma(shape k, scale β), E f = kβ. Its effective capacity (Wu & Negi, 2003) at
QoS exponent θ (1/MB) is

    EC(θ) = −ln E[e^{−θ f Δt}] / (θ Δt) = k ln(1 + θβΔt) / (θ Δt)   MB/ms,   EC(0⁺) = kβ,

decreasing in θ from kβ to 0. Everything here is written in the dimensionless variable u = θβΔt:
EC = kβ·h(u) with h(u) = ln(1+u)/u, so the QoS exponent θ* of a rate r ∈ (0, kβ) is u*/(βΔt) where
h(u*) = ρ = r/(kβ). That root is found by a safeguarded Newton iteration in s = ln u with a static
number of steps; for ρ ≤ 1/2 it solves ln h(u) = ln ρ, for ρ > 1/2 it solves ln(1 − h(u)) = ln(1 − ρ)
with 1 − h(u) summed as a series for small u, so both tiny rates and rates a few ulps below E f keep
full relative precision (about 1e-15 in θ*).

All functions are pure ``jax.numpy``, broadcast their arguments, work under ``jit``/``vmap`` and return
no NaN for finite arguments in their domain (k, β, Δt, W, a > 0, 0 < ε < 1): where a quantity does not
exist they return ``inf`` (θ* of an inadmissible rate, the delay of an inadmissible parallelism) as
documented per function. Gradients are not supported (θ* comes from a fixed number of Newton
steps). The public functions are ``jax.jit``-wrapped; they compose with an outer ``jit``/``vmap``.

Units: θ in 1/MB, work a in MB, rates in MB/ms, times (Δt, W, delays) in ms.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

__all__ = ["effective_capacity", "qos_exponent", "delay_bound", "mean_delay"]

# Below this u, 1 - h(u) and h(u) - 1/(1+u) come from their Taylor series (18 terms: truncation
# < 1e-17 relative at u = 0.1); above it the direct formulas lose at most ~eps/0.047 ≈ 2e-15.
_U_SERIES = 0.1
_N_SERIES = 18
# Safeguarded Newton steps in s = ln u. From the initial guesses below, 3 steps and the final polish
# reach ~2e-15 for every rho in [1e-300, 1 - 1e-16] (tests/test_capacity.py); 6 leave a margin.
_NEWTON_STEPS = 6
_LN_U_HALF = 0.9162907318741551  # ln 2.5; h(2.5) = 0.5005 > 1/2, so the root of h = 1/2 lies above
_LN_2 = 0.6931471805599453
_LN_3 = 1.0986122886681098


def _float(x):
    return jnp.asarray(x, dtype=jnp.result_type(float))


def _h(u):
    """h(u) = ln(1+u)/u for u >= 0 (h(0) = 1, h(inf) = 0); inf for u <= -1."""
    small = jnp.abs(u) < 1e-8
    safe = jnp.where(small | ~jnp.isfinite(u) | (u <= -1.0), 1.0, u)
    direct = jnp.log1p(safe) / safe
    series = 1.0 - u / 2.0 + u * u / 3.0
    out = jnp.where(small, series, direct)
    out = jnp.where(u == jnp.inf, 0.0, out)
    return jnp.where(u <= -1.0, jnp.inf, out)


def _poly(u, coeffs):
    acc = jnp.zeros_like(u)
    for c in reversed(coeffs):
        acc = acc * u + c
    return acc * u


# 1 - h(u) = sum_{n>=1} (-1)^{n+1} u^n/(n+1);  h(u) - 1/(1+u) = sum_{n>=1} (-1)^{n+1} n u^n/(n+1)
_PHI_COEFFS = [(-1.0) ** (n + 1) / (n + 1) for n in range(1, _N_SERIES + 1)]
_PSI_COEFFS = [(-1.0) ** (n + 1) * n / (n + 1) for n in range(1, _N_SERIES + 1)]


def _log1p_exp(s):
    """(u, ln(1+u)) at u = e^s; u is capped at e^40 (ln(1+u) = s beyond, to 4e-18 relative)."""
    u = jnp.exp(jnp.minimum(s, 40.0))
    return u, jnp.where(s > 40.0, s, jnp.log1p(u))


def _phi_psi(u, lp):
    """(1 - h(u), h(u) - 1/(1+u)) to full relative precision, given lp = ln(1+u)."""
    small = u < _U_SERIES
    ub = jnp.where(small, 1.0, u)
    hb = lp / ub
    phi = jnp.where(small, _poly(u, _PHI_COEFFS), 1.0 - hb)
    psi = jnp.where(small, _poly(u, _PSI_COEFFS), hb - 1.0 / (1.0 + ub))
    return phi, psi


def _solve_u(rho, delta):
    """u* > 0 with h(u*) = rho, given rho in (0, 1) and delta = 1 - rho computed by the caller.

    Lanes outside (0, 1) must be masked by the caller (any value in (0, 1) is safe here). The number
    of transcendental calls is kept small: they dominate the XLA compile time of the callers.
    """
    upper = rho <= 0.5  # branch A: solve ln h(u) = ln rho (decreasing in s); else branch B
    ln_rho = jnp.log(rho)
    ln_delta = jnp.log(delta)
    # Branch A bracket: 1/rho <= u <= 1/rho^2 (ln(1+u) >= 1 for u >= e - 1, and
    # ln(1+u) <= u/sqrt(1+u)), and u >= 2.5; the guess u = ln(1/rho)/rho is a lower bound too
    # (ln(1+u) >= u/(1+u)).
    ell = -ln_rho
    lo_a = jnp.maximum(_LN_U_HALF, ell)
    hi_a = jnp.maximum(2.0 * ell, lo_a)
    guess_a = ell + jnp.log(jnp.maximum(ell, 1e-300))
    # Branch B bracket: 2δ <= u <= 2δ/(1-2δ) (from u/(2(1+u)) <= 1 - h(u) <= u/2), relaxed to 4δ for
    # δ <= 1/4, and u <= 3 (h(3) < 1/2).
    lo_b = _LN_2 + ln_delta
    hi_b = jnp.where(delta <= 0.25, _LN_2 + lo_b, _LN_3)
    x = 4.0 * delta / 3.0
    guess_b = lo_b + x - 0.5 * x * x  # u ≈ 2δ + 8δ²/3
    lo = jnp.where(upper, lo_a, lo_b)
    hi = jnp.where(upper, hi_a, hi_b)
    s0 = jnp.clip(jnp.where(upper, guess_a, guess_b), lo, hi)

    def step(_, carry):
        s, lo, hi = carry
        u, lp = _log1p_exp(s)
        phi, psi = _phi_psi(u, lp)
        # A: G = s + ln rho - ln ln(1+u)   (increasing), G' = 1 - (u/(1+u))/ln(1+u)
        # B: G = ln(1 - h(u)) - ln delta   (increasing), G' = (h - 1/(1+u))/(1 - h)
        log_term = jnp.log(jnp.where(upper, lp, phi))
        g = jnp.where(upper, s + ln_rho - log_term, log_term - ln_delta)
        d = jnp.where(upper, 1.0 - u / ((1.0 + u) * lp), psi / phi)
        lo = jnp.where(g <= 0.0, s, lo)
        hi = jnp.where(g >= 0.0, s, hi)
        newton = s - g / jnp.where(d > 0.0, d, 1.0)
        ok = (d > 0.0) & (newton >= lo) & (newton <= hi) & jnp.isfinite(newton)
        return jnp.where(ok, newton, 0.5 * (lo + hi)), lo, hi

    s, _, _ = lax.fori_loop(0, _NEWTON_STEPS, step, (s0, lo, hi))
    # One Newton polish in u itself: exp(s) inherits the absolute error of s, a relative error
    # |s|·eps in u (7e-14 at u = 1e280); the linear-space step brings it back to ~eps.
    # A: F = ln(1+u) - rho·u, F' = 1/(1+u) - rho;  B: F = (1 - h(u)) - delta, F' = psi/u.
    u = jnp.exp(s)
    _, lp = _log1p_exp(s)
    phi, psi = _phi_psi(jnp.minimum(u, 1e300), lp)
    corr_a = (lp - rho * u) / (1.0 / (1.0 + u) - rho)
    corr_b = u * (phi - delta) / jnp.where(psi > 0.0, psi, 1.0)
    polished = u - jnp.where(upper, corr_a, corr_b)
    ok = jnp.isfinite(polished) & (jnp.abs(polished - u) <= 1e-6 * u)
    return jnp.where(ok, polished, u), ln_rho


def _rho_delta(rate, mean_rate):
    """(rho, delta, admissible, positive) with rho = rate/E f, delta = (E f - rate)/E f."""
    positive = rate > 0.0
    admissible = positive & (rate < mean_rate)
    safe_mean = jnp.where(mean_rate > 0.0, mean_rate, 1.0)
    rho = jnp.where(admissible, rate / safe_mean, 0.5)
    delta = jnp.where(admissible, (mean_rate - rate) / safe_mean, 0.5)
    # rate/mean and (mean-rate)/mean are each correctly rounded; guard the extremes
    tiny = jnp.finfo(rho.dtype).tiny
    rho = jnp.clip(rho, tiny, 1.0)
    delta = jnp.clip(delta, tiny, 1.0)
    return rho, delta, admissible, positive


@jax.jit
def effective_capacity(theta, shape, scale, dt):
    """Effective capacity EC(θ) in MB/ms of a Gamma(shape k, scale β) rate server, MODEL §7.1.

    EC(θ) = k ln(1 + θβΔt)/(θΔt) for θ > 0 (1/MB); EC(0) = kβ = E f (the θ → 0 limit, taken by a
    series for θβΔt < 1e-8); EC(inf) = 0. ``scale`` is in MB/ms, ``dt`` in ms. Broadcasts; jit/vmap-able.
    For negative θ the formula is continued while θβΔt > -1 and is ``inf`` beyond (E e^{-θfΔt} = ∞).
    """
    theta, shape, scale, dt = (_float(x) for x in (theta, shape, scale, dt))
    return shape * scale * _h(theta * scale * dt)


@jax.jit
def qos_exponent(rate, shape, scale, dt):
    """QoS exponent θ* (1/MB) with EC(θ*) = ``rate`` (MB/ms), MODEL §7.2.

    Returns ``inf`` where the rate is inadmissible (rate >= E f = kβ: no finite θ gives EC = rate) and
    0 where rate <= 0. Otherwise θ* = u*/(βΔt) with u* the root of ln(1+u)/u = rate/(kβ), solved to
    ~1e-15 relative precision with a static number of safeguarded Newton steps; θ* → 0 as rate → E f
    and grows like ln(E f/rate)·E f/(rate·βΔt) as rate → 0 (it overflows to inf only for rates below
    ~1e-300·E f). Broadcasts; jit/vmap-able.
    """
    rate, shape, scale, dt = (_float(x) for x in (rate, shape, scale, dt))
    rate, shape, scale, dt = jnp.broadcast_arrays(rate, shape, scale, dt)
    rho, delta, admissible, positive = _rho_delta(rate, shape * scale)
    u, _ = _solve_u(rho, delta)
    theta = u / (scale * dt)
    return jnp.where(admissible, theta, jnp.where(positive, jnp.inf, 0.0))


@jax.jit
def delay_bound(y, work, shape, scale, eps, dt, window):
    """Statistical delay g^EC(y) in ms of a light instance admitting y jobs at once, MODEL §7.2.

    Offered rate r = y·a/W (``work`` a in MB, ``window`` W in ms). If r >= E f = kβ the parallelism is
    inadmissible and the result is ``inf``. Otherwise θ* solves EC(θ*) = r and the Wu–Negi tail
    P{delay > d} ≈ η e^{−θ* r d}, η = r/E f, gives d_tail = ln(r/(E f·ε))/(θ* r);
    g = max(Δt, y·a/E f, d_tail), and g = 0 for y <= 0. θ* r is evaluated as k ρ u*/Δt
    (= k ln(1+u*)/Δt, the identity EC(θ*) = r, ρ = r/E f, u* = θ*βΔt), which stays finite and
    accurate for tiny r and for r just below E f. g is non-decreasing in y.
    ``y`` may be an integer or float array; all arguments broadcast. jit/vmap-able, no NaN.
    """
    y = _float(y)
    work, shape, scale, eps, dt, window = (_float(x) for x in (work, shape, scale, eps, dt, window))
    y, work, shape, scale, eps, dt, window = jnp.broadcast_arrays(
        y, work, shape, scale, eps, dt, window)
    mean_rate = shape * scale
    rate = y * work / window
    rho, delta, admissible, positive = _rho_delta(rate, mean_rate)
    u, ln_rho = _solve_u(rho, delta)
    # θ* r d_tail = ln(ρ/ε) with θ* r = k ln(1+u*)/Δt = k ρ u*/Δt (u* is the root of ln(1+u) = ρu)
    decay = shape * rho * u / dt  # θ* r, 1/ms
    log_ratio = ln_rho - jnp.log(eps)
    d_tail = jnp.where(log_ratio > 0.0, log_ratio / jnp.where(decay > 0.0, decay, 1.0), -jnp.inf)
    d_tail = jnp.where((log_ratio > 0.0) & ~(decay > 0.0), jnp.inf, d_tail)
    mean_part = y * work / jnp.where(mean_rate > 0.0, mean_rate, 1.0)
    g = jnp.maximum(jnp.maximum(dt, mean_part), d_tail)
    g = jnp.where(admissible, g, jnp.inf)
    g = jnp.where(positive, g, jnp.maximum(dt, mean_part))  # r <= 0 with y > 0 (a = 0): no tail
    return jnp.where(y > 0.0, g, 0.0)


@jax.jit
def mean_delay(y, work, shape, scale, dt):
    """Mean-only delay g^avg(y) = max(Δt, y·a/E f) in ms (the PropAvg ablation), 0 for y <= 0.

    ``work`` a in MB, E f = kβ in MB/ms, ``dt`` in ms. No tail term and no admissibility check: it
    stays finite for any y. Broadcasts; jit/vmap-able.
    """
    y = _float(y)
    work, shape, scale, dt = (_float(x) for x in (work, shape, scale, dt))
    g = jnp.maximum(dt, y * work / (shape * scale))
    return jnp.where(y > 0.0, g, jnp.zeros_like(g))
