"""Channel models, workload generators and `edgefm.random.gamma` against closed forms.

Sample moments are compared with their exact values within Z = 5 standard errors of the estimator
(a false alarm rate below 1e-6 per check for a normal estimator); the standard errors are computed
from the exact law, not from the sample. Every sample is drawn from fixed keys, so the tests are
deterministic.
"""

from __future__ import annotations


import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, stats

import edgefm  # noqa: F401  (turns on x64)
from edgefm.errors import ConfigError
from edgefm.random import gamma
from edgefm_channels import NakagamiChannel, OffChannel, RayleighChannel
from edgefm_workloads import MMPPWorkload, PoissonWorkload

Z = 5.0


def within(estimate, exact, se, what=""):
    estimate, exact, se = (np.asarray(x, float) for x in (estimate, exact, se))
    err = np.abs(estimate - exact) / se
    assert np.all(err < Z), f"{what}: estimate {estimate} vs exact {exact}, {err} standard errors"


def gamma_var_se(k, theta, n):
    """Standard error of the sample variance of n Gamma(k, theta) draws: (mu4 - sigma^4) / n with
    mu4 = (3 + 6/k) sigma^4."""
    sigma2 = k * theta**2
    return np.sqrt((2.0 + 6.0 / k) * sigma2**2 / n)


# ------------------------------------------------------------------------------------------------
# channels
N_SLOTS = 40_000
USERS = {"nakagami_m": jnp.array([0.75, 1.5, 3.0]), "nakagami_omega": jnp.array([0.5, 1.0, 2.0])}


@eqx.filter_jit
def _rates(channel, keys):
    return jax.vmap(lambda k: channel.uplink_rate(k, USERS))(keys)


def draw_rates(channel, n=N_SLOTS, seed=0):
    """[n, U] rates of n independent slots; one compilation per channel class and static options."""
    return np.asarray(_rates(channel, jax.random.split(jax.random.key(seed), n))), channel


def gain_of(rates, channel):
    """Invert rate = B log2(1 + snr0 g)."""
    return (np.exp2(rates / float(channel.bandwidth)) - 1.0) / float(channel.snr0)


NAKAGAMI = NakagamiChannel(bandwidth=0.25, snr0=4.0)


@pytest.fixture(scope="module")
def nakagami():
    return draw_rates(NAKAGAMI)


@pytest.fixture(scope="module")
def rayleigh():
    return draw_rates(RayleighChannel(bandwidth=0.125, snr0=1.0), seed=1)


def test_nakagami_power_gain_has_mean_omega_and_variance_omega2_over_m(nakagami):
    rates, params = nakagami
    assert rates.shape == (N_SLOTS, 3) and np.all(np.isfinite(rates)) and np.all(rates >= 0)
    g = gain_of(rates, params)
    m, omega = np.asarray(USERS["nakagami_m"]), np.asarray(USERS["nakagami_omega"])
    var = omega**2 / m
    within(g.mean(0), omega, np.sqrt(var / N_SLOTS), "mean power gain")
    within(g.var(0, ddof=1), var, gamma_var_se(m, omega / m, N_SLOTS), "variance of the power gain")


def test_nakagami_power_gain_follows_its_gamma_law(nakagami):
    rates, params = nakagami
    g = gain_of(rates, params)
    for u, (m, omega) in enumerate(zip(np.asarray(USERS["nakagami_m"]), np.asarray(USERS["nakagami_omega"]))):
        p = stats.kstest(g[:, u], "gamma", args=(m, 0.0, omega / m)).pvalue
        assert p > 1e-4, f"user {u}: KS p-value {p}"


def test_nakagami_mean_rate_matches_the_integral_over_the_gamma_law(nakagami):
    rates, params = nakagami
    B, snr0 = float(params.bandwidth), float(params.snr0)
    for u, (m, omega) in enumerate(zip(np.asarray(USERS["nakagami_m"]), np.asarray(USERS["nakagami_omega"]))):
        law = stats.gamma(m, scale=omega / m)

        def moment(power):
            f = lambda g: (B * np.log2(1.0 + snr0 * g)) ** power * law.pdf(g)  # noqa: E731
            return integrate.quad(f, 0.0, np.inf, limit=200)[0]

        mean, second = moment(1), moment(2)
        se = np.sqrt((second - mean**2) / N_SLOTS)
        within(rates[:, u].mean(), mean, se, f"mean rate of user {u}")


def test_rayleigh_is_nakagami_with_m_one(rayleigh):
    rates, params = rayleigh
    g = gain_of(rates, params)
    omega = np.asarray(USERS["nakagami_omega"])  # the users' m are ignored: exponential gain
    within(g.mean(0), omega, np.sqrt(omega**2 / N_SLOTS), "mean power gain")
    within(g.var(0, ddof=1), omega**2, gamma_var_se(1.0, omega, N_SLOTS), "variance of the power gain")
    for u in range(3):
        assert stats.kstest(g[:, u], "expon", args=(0.0, omega[u])).pvalue > 1e-4


def test_off_channel_is_infinite_rate():
    rates, _ = draw_rates(OffChannel(), n=4)
    assert rates.shape == (4, 3) and np.all(np.isinf(rates)) and np.all(rates > 0)


def test_channel_draws_depend_on_the_key_only():
    a, _ = draw_rates(NAKAGAMI, seed=3)
    b, _ = draw_rates(NAKAGAMI, seed=3)
    c, _ = draw_rates(NAKAGAMI, seed=4)
    np.testing.assert_array_equal(a, b)
    assert not np.any(a == c)


# ------------------------------------------------------------------------------------------------
# workloads
RATE = jnp.array([[0.2, 0.5], [1.0, 3.0]])  # tasks/ms, [U,N]


@eqx.filter_jit
def _poisson_counts(keys, load, slot_ms):
    workload = PoissonWorkload(load=load)  # the load is a traced option: one compilation for every load
    state = workload.init(jax.random.key(0), RATE)
    return jax.vmap(lambda k: workload.sample(state, k, RATE, slot_ms)[0])(keys)


@pytest.mark.parametrize("load, slot_ms", [(1.0, 1.0), (0.7, 0.5)])
def test_poisson_counts_have_mean_and_variance_lambda_load_dt(load, slot_ms):
    n = 40_000
    keys = jax.random.split(jax.random.key(5), n)
    counts = np.asarray(_poisson_counts(keys, jnp.asarray(load), jnp.asarray(slot_ms)), float)
    assert counts.shape == (n, 2, 2)
    mu = np.asarray(RATE) * load * slot_ms
    within(counts.mean(0), mu, np.sqrt(mu / n), "mean count")
    within(counts.var(0, ddof=1), mu, np.sqrt((mu + 2 * mu**2) / n), "variance of the count")  # mu4 - s^4


MMPP = MMPPWorkload(load=0.8, burst_factor=4.0, burst_fraction=0.2, mean_burst_ms=10.0)
MMPP_SLOT_MS = 0.5
MMPP_CHAINS, MMPP_SLOTS = 6_000, 50


@pytest.fixture(scope="module")
def mmpp_paths():
    """States [C,T+1,U] (state before each slot, and after the last) and counts [C,T,U,N] of
    MMPP_CHAINS independent chains."""
    wl = MMPP

    def chain(key):
        k0, k1 = jax.random.split(key)

        def body(state, t):
            counts, new = wl.sample(state, jax.random.fold_in(k1, t), RATE, MMPP_SLOT_MS)
            return new, (state, counts)

        s0 = wl.init(k0, RATE)
        last, (states, counts) = jax.lax.scan(body, s0, jnp.arange(MMPP_SLOTS))
        return jnp.concatenate([states, last[None]]), counts

    keys = jax.random.split(jax.random.key(11), MMPP_CHAINS)
    states, counts = jax.jit(jax.vmap(chain))(keys)
    return np.asarray(states, bool), np.asarray(counts, float)


def mmpp_factors():
    """MMPPWorkload's docstring: f_high = burst_factor, f_low = (1 - p f_high) / (1 - p)."""
    p, hi = MMPP.burst_fraction, MMPP.burst_factor
    return p, hi, (1.0 - p * hi) / (1.0 - p)


def test_mmpp_starts_and_stays_in_its_stationary_law(mmpp_paths):
    states, _ = mmpp_paths
    p, _, _ = mmpp_factors()
    se = np.sqrt(p * (1 - p) / (MMPP_CHAINS * states.shape[2]))  # chains and users independent
    for t in (0, 1, MMPP_SLOTS // 2, MMPP_SLOTS):
        within(states[:, t].mean(), p, se, f"burst fraction at slot {t}")


def test_mmpp_counts_have_the_mixed_poisson_mean_and_variance(mmpp_paths):
    _, counts = mmpp_paths
    p, hi, lo = mmpp_factors()
    assert lo >= 0
    var_factor = p * hi**2 + (1 - p) * lo**2 - 1.0  # E factor = 1
    assert var_factor == pytest.approx(p * (1 - p) * (hi - lo) ** 2)
    mu = np.asarray(RATE) * MMPP.load * MMPP_SLOT_MS
    var = mu + mu**2 * var_factor
    # exact fourth central moment of the count is tedious; bound the SE of the sample variance with
    # the moments of the mixture: Var(s^2) ~ (E(X-mu)^4 - var^2) / n, E(X-mu)^4 computed exactly
    n = MMPP_CHAINS
    ks = np.arange(0, 200)
    for t in (0, MMPP_SLOTS // 3, MMPP_SLOTS - 1):  # independent chains: one slot, many chains
        x = counts[:, t]
        within(x.mean(0), mu, np.sqrt(var / n), f"mean count at slot {t}")
        mu4 = np.zeros_like(mu)
        for f, w in ((hi, p), (lo, 1 - p)):
            pmf = stats.poisson.pmf(ks[:, None, None], mu[None] * f)
            mu4 += w * np.sum(pmf * (ks[:, None, None] - mu[None]) ** 4, axis=0)
        within(x.var(0, ddof=1), var, np.sqrt((mu4 - var**2) / n), f"variance of the count at slot {t}")


def test_mmpp_mean_burst_sojourn(mmpp_paths):
    states, _ = mmpp_paths
    before, after = states[:, :-1], states[:, 1:]
    in_burst = before.sum()
    leaves = (before & ~after).sum()
    q = MMPP_SLOT_MS / MMPP.mean_burst_ms  # per-slot exit probability
    within(leaves / in_burst, q, np.sqrt(q * (1 - q) / in_burst), "exit probability per slot")
    # mean sojourn = slot_ms / q ms (geometric number of slots)
    rel = Z * np.sqrt((1 - q) / (q * in_burst))  # relative SE of the exit probability
    assert MMPP_SLOT_MS * in_burst / leaves == pytest.approx(MMPP.mean_burst_ms, rel=rel)
    p = MMPP.burst_fraction
    enter = q * p / (1 - p)
    out_burst = (~before).sum()
    within((~before & after).sum() / out_burst, enter, np.sqrt(enter * (1 - enter) / out_burst), "entry probability")


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"burst_factor": 10.5, "burst_fraction": 0.1}, "workload.burst_factor"),  # > 1/burst_fraction
        ({"burst_factor": 0.5}, "workload.burst_factor"),
        ({"burst_fraction": 0.0}, "workload.burst_fraction"),
        ({"burst_fraction": 1.0}, "workload.burst_fraction"),
        ({"mean_burst_ms": 0.0}, "workload.mean_burst_ms"),
        ({"load": -1.0}, "workload.load"),
        ({"load": float("nan")}, "workload.load"),
    ],
)
def test_mmpp_validation_names_the_field(changes, field):
    with pytest.raises(ConfigError, match=rf"^{field} = ") as err:
        MMPPWorkload(**changes)
    with pytest.raises(ConfigError, match=rf"^{field} = "):  # the schema path of a config group
        MMPPWorkload.from_config(MMPPWorkload.Config(**changes))
    assert err.value.field == field


def test_mmpp_burst_factor_at_its_bound_is_accepted():
    MMPPWorkload(burst_factor=10.0, burst_fraction=0.1)  # f_low = 0


@pytest.mark.parametrize("load", [-0.5, float("inf"), float("nan")])
def test_poisson_validation_names_the_field(load):
    with pytest.raises(ConfigError, match=r"^workload\.load = "):
        PoissonWorkload(load=load)


# ------------------------------------------------------------------------------------------------
# edgefm.random.gamma
GAMMA = jax.jit(gamma)  # the shape parameter is traced: one compilation for every shape

@pytest.mark.parametrize("shape", [0.5, 1.0, 1.5, 3.0])
def test_gamma_moments_and_law(shape):
    n = 40_000
    x = np.asarray(GAMMA(jax.random.key(int(shape * 10)), jnp.full(n, shape)))
    assert x.dtype == np.float64 and np.all(x > 0) and np.all(np.isfinite(x))
    within(x.mean(), shape, np.sqrt(shape / n), "mean")
    within(x.var(ddof=1), shape, gamma_var_se(shape, 1.0, n), "variance")
    p = stats.kstest(x, "gamma", args=(shape,)).pvalue
    assert p > 1e-4, f"KS p-value {p}"


def test_mmpp_at_the_largest_burst_factor_never_draws_negative_counts():
    """burst_factor = 1/burst_fraction (accepted by the check) puts the whole rate in the burst state:
    the normal state's factor is 0 exactly (compiled, 1 - p·hi may be fused into one multiply-add
    that leaves about -6e-17, and a Poisson draw at a negative mean is -1), so no count is negative
    and normal slots have none."""
    wl = MMPPWorkload(load=1.0, burst_factor=5.0, burst_fraction=0.2, mean_burst_ms=10.0)
    state = jnp.array([False, True, False, True])
    rate = jnp.full((4, 3), 2.0)
    sample = eqx.filter_jit(lambda w, k: w.sample(state, k, rate, 1.0)[0])  # compiled, as in the engine
    counts = jnp.stack([sample(wl, jax.random.fold_in(jax.random.key(3), t)) for t in range(50)])  # [50,U,N]
    assert int(counts.min()) >= 0
    assert int(counts[:, ~np.asarray(state)].sum()) == 0 and int(counts[:, np.asarray(state)].sum()) > 0
