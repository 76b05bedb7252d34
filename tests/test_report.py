"""`edgefm report`: tables, figures and summary of synthetic run and sweep datasets (no engine run).

The datasets are built with xarray directly, with values chosen so that the statistics can be checked
against hand computation.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import xarray as xr
import yaml

from edgefm.analysis import group_dims, open_results
from edgefm.analysis.open import atomic_path
from edgefm.analysis.plots import category_dim, curve_dims
from edgefm.analysis.report import write_report
from edgefm.analysis.tables import (
    ALL_SERVICES,
    EPSILON,
    breakdown_table,
    compact_headline,
    describe,
    epsilon_per_cell,
    headline_table,
    to_markdown,
    type_table,
    violation_table,
)
from edgefm.cli_report import main
from edgefm.errors import ConfigError

RUN_GROUP = {
    "controller": ["proposed"], "placement": ["milp"], "channel": ["nakagami"],
    "workload": ["poisson"], "load": [1.0], "seed": [0],
}
QUANTILES = [0.5, 0.9, 0.95, 0.99]
TYPES = ["qa", "drive"]
SERVICES = ["pre", "enc", "post"]
COMPONENTS = ["uplink", "core_queue", "light_service"]
T95 = 4.302652729911275  # scipy.stats.t.ppf(0.975, 2)


def config_yaml(epsilon: float | None) -> str:
    controller = {"name": "proposed"} if epsilon is None else {"name": "proposed", "epsilon": epsilon}
    return yaml.safe_dump({"seed": 0, "controller": controller})


def make_dataset(group: dict[str, list], instances: int = 2, realisations: int = 3, slots: int = 4) -> xr.Dataset:
    """Random but complete data over `group` (the swept dims, in order) and the run dims."""
    rng = np.random.default_rng(0)
    gdims, gshape = list(group), [len(v) for v in group.values()]

    def var(extra: dict[str, int] | None = None, low=0.0, high=1.0):
        extra = extra or {}
        dims = [*gdims, "instance", "realisation", *extra]
        return dims, rng.uniform(low, high, [*gshape, instances, realisations, *extra.values()])

    arrived = rng.integers(50, 100, [*gshape, instances, realisations]).astype(float)
    ontime = np.floor(arrived * 0.6)
    base = [*gdims, "instance", "realisation"]
    ds = xr.Dataset(
        {
            "ontime_rate": (base, ontime / arrived),
            "tasks_arrived": (base, arrived),
            "tasks_ontime": (base, ontime),
            "tasks_late": (base, arrived - ontime),
            "cost_total": var(low=100, high=200),
            "cost_light": var(low=10, high=50),
            "cost_core": var(low=90, high=150),
            "ontime_rate_by_type": var({"task_type": len(TYPES)}),
            "tasks_arrived_by_type": var({"task_type": len(TYPES)}, low=10, high=40),
            "latency_quantile": var({"task_type": len(TYPES), "quantile": len(QUANTILES)}, low=20, high=90),
            "latency_quantile_all": var({"quantile": len(QUANTILES)}, low=20, high=90),
            "light_bounded": var({"service": len(SERVICES)}, low=10, high=20),
            "light_violations": var({"service": len(SERVICES)}, low=0, high=5),
            "latency_breakdown": var({"outcome": 2, "component": len(COMPONENTS)}, low=1, high=10),
            "vq_sum": var({"slot": slots}, low=0, high=100),
        },
        coords={
            **group,
            "instance": np.arange(instances), "realisation": np.arange(realisations),
            "task_type": TYPES, "quantile": QUANTILES, "service": SERVICES,
            "service_kind": ("service", ["light", "core", "light"]),
            "outcome": ["ontime", "late"], "component": COMPONENTS, "slot": np.arange(slots),
        },
        attrs={"title": "synthetic", "config": config_yaml(0.2)},
    )
    core = ds["service_kind"] == "core"
    ds["light_bounded"] = ds["light_bounded"].where(~core, 0.0)
    ds["light_violations"] = ds["light_violations"].where(~core, 0.0)
    ds["violation_rate"] = (ds["light_violations"] / ds["light_bounded"]).where(~core)
    return ds


def row(table, **labels):
    mask = np.ones(len(table), bool)
    for key, value in labels.items():
        mask &= (table[key] == value).to_numpy()
    (index,) = np.flatnonzero(mask)
    return table.iloc[index]


# ----------------------------------------------------------------------------------------------
# Statistics


def test_describe_matches_hand_computation():
    out = describe(np.array([[0.5, 0.7, 0.9, np.nan], [1.0, np.nan, np.nan, np.nan], [np.nan] * 4]))
    assert list(out["n"]) == [3, 1, 0]
    assert out["mean"][0] == pytest.approx(0.7)
    assert out["std"][0] == pytest.approx(0.2)
    half = T95 * 0.2 / math.sqrt(3)
    assert out["ci_low"][0] == pytest.approx(0.7 - half)
    assert out["ci_high"][0] == pytest.approx(0.7 + half)
    assert out["mean"][1] == 1.0 and np.isnan(out["std"][1]) and np.isnan(out["ci_low"][1])
    assert np.isnan(out["mean"][2])


def test_group_dims_are_the_non_run_dims():
    ds = make_dataset(RUN_GROUP)
    assert group_dims(ds) == list(RUN_GROUP)
    assert category_dim(ds) == "controller"


def test_headline_of_a_run():
    ds = make_dataset(RUN_GROUP, instances=1, realisations=3)
    ds["ontime_rate"][...] = np.array([0.5, 0.7, 0.9]).reshape(ds["ontime_rate"].shape)
    p95 = ds["latency_quantile_all"].sel(quantile=0.95)
    ds["latency_quantile_all"].loc[{"quantile": 0.95}] = np.array([40.0, 50.0, 60.0]).reshape(p95.shape)
    table = headline_table(ds)
    assert list(table["metric"]) == ["on-time rate", "p95 latency (ms)", "total cost", "light cost"]
    assert list(table["controller"]) == ["proposed"] * 4
    ontime = row(table, metric="on-time rate")
    assert (ontime["n"], ontime["mean"], ontime["std"]) == (3, pytest.approx(0.7), pytest.approx(0.2))
    assert ontime["ci_high"] == pytest.approx(0.7 + T95 * 0.2 / math.sqrt(3))
    latency = row(table, metric="p95 latency (ms)")
    assert (latency["mean"], latency["std"]) == (pytest.approx(50.0), pytest.approx(10.0))
    compact = compact_headline(table)
    assert len(compact) == 1 and compact["n"][0] == 3
    assert compact["on-time rate"][0] == "0.7 ± 0.5"  # half-width 0.4968 to 2 digits


def test_p95_falls_back_to_the_largest_type_quantile():
    ds = make_dataset(RUN_GROUP).drop_vars("latency_quantile_all")
    table = headline_table(ds)
    (label,) = [m for m in table["metric"] if m.startswith("p95")]
    assert "max over task types" in label
    expected = ds["latency_quantile"].sel(quantile=0.95).max("task_type").mean()
    assert row(table, metric=label)["mean"] == pytest.approx(float(expected))


def test_failed_cell_and_nan_values_are_left_out_of_n():
    ds = make_dataset({"strategy": ["proposed", "lbrr"], "load": [1.0, 1.5]})
    ds["ontime_rate"].loc[{"strategy": "lbrr", "load": 1.5}] = np.nan  # a failed job
    ds["ontime_rate"][0, 0, 0, 0] = np.nan
    table = headline_table(ds)
    ontime = table[table["metric"] == "on-time rate"]
    assert list(ontime["n"]) == [5, 6, 6, 0]
    assert np.isnan(row(table, metric="on-time rate", strategy="lbrr", load=1.5)["mean"])
    expected = np.nanmean(ds["ontime_rate"].sel(strategy="proposed", load=1.0).values)
    assert row(table, metric="on-time rate", strategy="proposed", load=1.0)["mean"] == pytest.approx(expected)


def test_type_table_pools_over_tasks():
    ds = make_dataset(RUN_GROUP, instances=1, realisations=2)
    ds["ontime_rate_by_type"].loc[{"task_type": "qa"}] = np.array([0.5, 1.0]).reshape(1, 1, 1, 1, 1, 1, 1, 2)
    ds["tasks_arrived_by_type"].loc[{"task_type": "qa"}] = np.array([10.0, 30.0]).reshape(1, 1, 1, 1, 1, 1, 1, 2)
    qa = row(type_table(ds), task_type="qa")
    assert qa["mean"] == pytest.approx(0.75)
    assert qa["pooled"] == pytest.approx((5 + 30) / 40)
    assert qa["tasks arrived"] == 40


# ----------------------------------------------------------------------------------------------
# Violations and ε


def test_violation_rate_is_pooled_over_counts():
    ds = make_dataset(RUN_GROUP, instances=1, realisations=2)
    shape = ds["light_bounded"].sel(service="pre").shape
    ds["light_bounded"].loc[{"service": "pre"}] = np.array([10.0, 20.0]).reshape(shape)
    ds["light_violations"].loc[{"service": "pre"}] = np.array([1.0, 5.0]).reshape(shape)
    ds["light_bounded"].loc[{"service": "post"}] = np.array([0.0, 10.0]).reshape(shape)
    ds["light_violations"].loc[{"service": "post"}] = np.array([0.0, 4.0]).reshape(shape)
    table = violation_table(ds)
    assert list(table["service"]) == ["pre", "post", ALL_SERVICES]  # the core service has no bound
    pre = row(table, service="pre")
    assert (pre["bounded"], pre["violations"]) == (30, 6)
    assert pre["violation rate"] == pytest.approx(6 / 30)  # not the mean of the rates, 0.175
    assert row(table, service=ALL_SERVICES)["violation rate"] == pytest.approx(10 / 40)
    assert list(table[EPSILON]) == [0.2] * 3


def test_violation_rates_of_root_and_other_stages_are_pooled_apart():
    ds = make_dataset(RUN_GROUP, instances=1, realisations=2)
    shape = ds["light_bounded"].sel(service="pre").shape
    for name in ("light_bounded_root", "light_violations_root"):
        ds[name] = xr.zeros_like(ds["light_bounded"])
    for name, values in (("light_bounded", [10, 20]), ("light_violations", [1, 5]),
                         ("light_bounded_root", [4, 6]), ("light_violations_root", [1, 3])):
        ds[name].loc[{"service": "pre"}] = np.array(values, dtype=float).reshape(shape)
    ds["light_bounded"].loc[{"service": "post"}] = np.array([0.0, 10.0]).reshape(shape)
    ds["light_violations"].loc[{"service": "post"}] = np.array([0.0, 4.0]).reshape(shape)
    table = violation_table(ds)
    pre, post, both = (row(table, service=s) for s in ("pre", "post", ALL_SERVICES))
    assert pre["root violation rate"] == pytest.approx(4 / 10)
    assert pre["non-root violation rate"] == pytest.approx(2 / 20)  # (6 - 4) / (30 - 10)
    assert math.isnan(post["root violation rate"]) and post["non-root violation rate"] == pytest.approx(4 / 10)
    assert both["root violation rate"] == pytest.approx(4 / 10)
    assert both["non-root violation rate"] == pytest.approx(6 / 30)
    assert both["violation rate"] == pytest.approx(10 / 40)
    assert "root violation rate" not in violation_table(ds.drop_vars(["light_bounded_root"]))


def test_controllers_without_bounds_have_no_violation_rows():
    ds = make_dataset({"strategy": ["proposed", "lbrr"]})
    for name in ("light_bounded", "light_violations"):
        ds[name].loc[{"strategy": "lbrr"}] = 0.0
    table = violation_table(ds)
    assert set(table["strategy"]) == {"proposed"}


def test_epsilon_from_job_config_or_dim():
    ds = make_dataset({"strategy": ["proposed", "lbrr"]})
    ds["job_config"] = ("strategy", [config_yaml(0.1), config_yaml(None)])
    eps = epsilon_per_cell(ds)
    assert eps[0] == 0.1 and np.isnan(eps[1])
    swept = make_dataset({"epsilon": [0.05, 0.2]})
    assert list(epsilon_per_cell(swept)) == [0.05, 0.2]


# ----------------------------------------------------------------------------------------------
# Latency breakdown


def test_breakdown_weights_by_task_counts():
    ds = make_dataset(RUN_GROUP, instances=1, realisations=2)
    shape = ds["tasks_ontime"].shape
    ds["tasks_ontime"][...] = np.array([1.0, 3.0]).reshape(shape)
    ds["latency_breakdown"].loc[{"outcome": "ontime", "component": "uplink"}] = np.array([10.0, 30.0]).reshape(shape)
    table = breakdown_table(ds)
    ontime = row(table, outcome="ontime")
    assert ontime["uplink"] == pytest.approx((10 * 1 + 30 * 3) / 4)  # unweighted: 20
    assert ontime["tasks"] == 4
    assert ontime["total"] == pytest.approx(sum(ontime[c] for c in COMPONENTS))
    assert list(table.columns[-len(COMPONENTS) - 1:-1]) == COMPONENTS


# ----------------------------------------------------------------------------------------------
# Markdown, files, report


def test_markdown_table():
    text = to_markdown(headline_table(make_dataset(RUN_GROUP)))
    lines = text.splitlines()
    assert lines[0].startswith("| controller |") and lines[1].startswith("|---|")
    assert len(lines) == 2 + 4 and all(line.count("|") == lines[0].count("|") for line in lines)


def test_atomic_path_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "x.md"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError
    assert list(tmp_path.iterdir()) == []


def test_open_results_finds_the_data_file(tmp_path):
    make_dataset(RUN_GROUP).to_netcdf(tmp_path / "results.nc", engine="netcdf4")
    assert "ontime_rate" in open_results(tmp_path)
    with pytest.raises(ConfigError, match="neither sweep.nc nor results.nc"):
        open_results(tmp_path / "..")
    (tmp_path / "bad.nc").write_text("not netCDF")
    with pytest.raises(ConfigError, match="not a readable netCDF"):
        open_results(tmp_path / "bad.nc")
    xr.Dataset({"x": ("a", [1.0])}).to_netcdf(tmp_path / "other.nc", engine="netcdf4")
    with pytest.raises(ConfigError, match="not an edgefm dataset"):
        open_results(tmp_path / "other.nc")


def test_report_of_a_run(tmp_path):
    make_dataset(RUN_GROUP).to_netcdf(tmp_path / "results.nc", engine="netcdf4")
    written = write_report(tmp_path)
    assert set(written) == {"summary", "violins", "violation"}  # load has a single value: no Fig. 4
    assert written["summary"] == tmp_path / "report" / "summary.md"
    assert all(p.is_file() and p.stat().st_size > 0 for p in written.values())
    assert not (tmp_path / "report" / "fig4_load.png").exists()
    text = written["summary"].read_text()
    headings = ("## Headline", "## On-time rate by task type", "## Delay-bound violations", "## Latency breakdown")
    assert all(heading in text for heading in headings)
    assert "![violins](fig3_violins.png)" in text
    assert not [p for p in (tmp_path / "report").iterdir() if p.name.startswith(".")]


def test_report_of_a_sweep(tmp_path):
    ds = make_dataset({"strategy": ["proposed", "propavg", "lbrr"], "load": [1.0, 1.5, 2.0], "epsilon": [0.1, 0.2]})
    ds = ds.assign_coords(controller=("strategy", ["proposed", "propavg", "lbrr"]))
    ds["ontime_rate"].loc[{"strategy": "lbrr", "load": 2.0}] = np.nan  # a failed job
    ds.to_netcdf(tmp_path / "sweep.nc", engine="netcdf4")
    assert curve_dims(ds) == ["epsilon"]
    written = write_report(tmp_path / "sweep.nc", tmp_path / "out")
    assert set(written) == {"summary", "violins", "load", "ontime_vs_epsilon", "violation"}
    assert all(p.parent == tmp_path / "out" and p.is_file() for p in written.values())
    text = written["summary"].read_text()
    assert "Cells without any on-time value (failed jobs?): 2." in text
    assert "| strategy | load | epsilon | controller | n |" in text


def test_report_of_a_v_sweep(tmp_path):
    ds = make_dataset({"strategy": ["proposed", "propavg"], "V": [0.1, 10.0]}, instances=1)
    ds.to_netcdf(tmp_path / "sweep.nc", engine="netcdf4")
    written = write_report(tmp_path)
    assert set(written) == {"summary", "violins", "v_tradeoff", "violation"}


def test_report_without_a_category_dim(tmp_path):
    ds = make_dataset({"load": [1.5, 1.0], "reserve": [0, 1]}, instances=1, realisations=2)  # labels in job order
    ds.to_netcdf(tmp_path / "sweep.nc", engine="netcdf4")
    assert category_dim(ds) is None and curve_dims(ds) == ["reserve"]
    assert set(write_report(tmp_path)) == {"summary", "violins", "load", "ontime_vs_reserve", "violation"}


# ----------------------------------------------------------------------------------------------
# CLI


def test_cli_writes_and_prints(tmp_path, capsys):
    make_dataset(RUN_GROUP).to_netcdf(tmp_path / "results.nc", engine="netcdf4")
    assert main([str(tmp_path / "results.nc"), "--out", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert "on-time rate" in out and f"summary: {tmp_path / 'r' / 'summary.md'}" in out
    assert main([str(tmp_path), "--quiet"]) == 0
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("name", ["missing", "bad.nc"])
def test_cli_bad_input_is_one_line(tmp_path, capsys, name):
    (tmp_path / "bad.nc").write_text("not netCDF")
    assert main([str(tmp_path / name)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("edgefm: error: PATH = ") and err.count("\n") == 1


def test_cli_help(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    assert "edgefm report" in capsys.readouterr().out



def test_the_report_names_the_closures_preset():
    """docs/SEMANTICS.md §13: the preset of a run, its changes, or the closures dimension of a sweep."""
    import xarray as xr

    from edgefm.analysis.report import closures_line

    run = xr.Dataset(attrs={"closures": "paper", "closures_changed": ""})
    assert closures_line(run) == "Closures: `paper` (unchanged)."
    run.attrs["closures_changed"] = "sim.light_order=dispatch"
    assert closures_line(run) == "Closures: `paper`, changed: sim.light_order=dispatch."
    mixed = xr.Dataset(attrs={"closures": "paper"})  # the merge dropped differing changes
    assert "differ between cells" in closures_line(mixed)
    sweep = xr.Dataset(coords={"closures": ["paper", "authors_code"]})
    assert closures_line(sweep) == "Closures: per cell, the `closures` dimension (paper, authors_code)."
    assert "not recorded" in closures_line(xr.Dataset())


# ----------------------------------------------------------------------------------------------
# Which tier binds; presets side by side


def with_tiers(ds: xr.Dataset, labels: np.ndarray) -> xr.Dataset:
    """`ds` with binding_tier = `labels` (shape of ontime_rate) and the three numeric diagnostics
    (light_starved: 1 in the first realisation of every instance, 0 elsewhere)."""
    ds = ds.copy()
    base = ds["ontime_rate"].dims
    ds["binding_tier"] = (base, labels.astype(str))
    ds["light_instances_mean"] = (base, np.full(ds["ontime_rate"].shape, 3.0))
    ds["light_starved"] = (base, (ds["realisation"] == 0).broadcast_like(ds["ontime_rate"]).values.astype(np.int64))
    ds["core_utilisation_max"] = ds["ontime_rate"].isel(realisation=0, drop=True) * 0 + 1.5
    return ds


def test_tier_table_counts_the_binding_tier_of_each_cell():
    from edgefm.analysis.tables import tier_table

    ds = make_dataset({"strategy": ["proposed", "lbrr"]}, instances=2, realisations=3)
    labels = np.array([[["core", "core", "light"], ["core", "uplink", "core"]],
                       [["light", "light", "uplink"], ["none", "light", "uplink"]]], dtype=object)
    table = tier_table(with_tiers(ds, labels))
    proposed, lbrr = row(table, strategy="proposed"), row(table, strategy="lbrr")
    assert proposed["binding tier"] == "core" and proposed["tiers (values)"] == "core 4, light 1, uplink 1"
    assert lbrr["binding tier"] == "light" and lbrr["tiers (values)"] == "light 3, uplink 2, none 1"
    assert proposed["light instances"] == 3.0 and proposed["max core rho"] == 1.5
    assert proposed["light starved"] == lbrr["light starved"] == 1 / 3
    assert tier_table(ds) is None  # a dataset made before the diagnostics


def test_presets_side_by_side_and_figures_per_preset(tmp_path):
    from edgefm.analysis.tables import presets_table

    ds = make_dataset({"closures": ["paper", "authors_code"], "strategy": ["proposed", "lbrr"], "load": [1.0, 2.0]},
                      instances=1, realisations=2)
    labels = np.full(ds["ontime_rate"].shape, "light", dtype=object)
    labels[:, :, 1] = "core"  # 2x: the core tier binds
    ds = with_tiers(ds, labels)
    table = presets_table(ds)
    assert list(table.columns[:2]) == ["strategy", "load"] and list(table.columns[2:]) == ["paper", "authors_code"]
    cell = ds["ontime_rate"].sel(closures="authors_code", strategy="lbrr", load=2.0).values.ravel()
    half = describe(cell[None])["ci_high"].item() - cell.mean()
    text = row(table, strategy="lbrr", load=2.0)["authors_code"]
    assert text == f"{cell.mean():.4g} ± {half:.2g} [core]"
    assert row(table, strategy="proposed", load=1.0)["paper"].endswith("[light]")
    assert presets_table(ds.sel(closures=["paper"])) is None
    ds.to_netcdf(tmp_path / "sweep.nc", engine="netcdf4")
    written = write_report(tmp_path / "sweep.nc", tmp_path / "out")
    for preset in ("paper", "authors_code"):
        assert written[f"violins_{preset}"].name == f"fig3_violins_{preset}.png" and written[f"violins_{preset}"].is_file()
        assert written[f"load_{preset}"].name == f"fig4_load_{preset}.png" and written[f"load_{preset}"].is_file()
    text = written["summary"].read_text()
    assert "## Presets side by side" in text and "| strategy | load | paper | authors_code |" in text
    assert "## Which tier binds" in text


def test_the_load_plot_marks_the_binding_tier():
    import matplotlib

    matplotlib.use("Agg")
    from edgefm.analysis import plots

    ds = make_dataset({"strategy": ["proposed"], "load": [1.0, 2.0]}, instances=1, realisations=2)
    labels = np.array([[[["light", "light"]], [["core", "uplink"]]]], dtype=object)
    ds = with_tiers(ds, labels)
    marks = []
    original = plots._mark_tiers

    def spy(ax, sub):
        original(ax, sub)
        marks.extend((t.get_text(), t.xy) for t in ax.texts)
        marks.append(("title", ax.get_title()))

    plots._mark_tiers = spy
    try:
        import tempfile
        from pathlib import Path

        with tempfile.TemporaryDirectory() as tmp:
            assert plots.load_curves(ds, Path(tmp) / "fig4.png").is_file()
    finally:
        plots._mark_tiers = original
    letters = {xy[0]: text for text, xy in marks if text != "title"}
    assert letters == {1.0: "L", 2.0: "C"}  # 2x: core and uplink tie, the first by name wins
    assert ("title", "binding tier: C = core, L = light") in marks
    from edgefm.results import TIERS

    assert set(plots.TIER_MARKS) == set(TIERS) and len(set(plots.TIER_MARKS.values())) == len(TIERS)  # one letter each


# ----------------------------------------------------------------------------------------------
# The experiments of issue 18 in a shrunken form, end to end through the CLI and `edgefm report`

SHRINK = ["scenario=small", "scenario.instances=1", "sim.realisations=2", "sim.arrival_ms=20",
          "sim.drain_ms=40", "sim.max_light_instances=4", "output.print_summary=false"]


@pytest.mark.parametrize("experiment,sweep,dims", [
    # the ladder: two rungs (authors_code, then the uplink on) and the closures they set in force
    pytest.param("ladder", ["strategy=proposed", "variant=ladder_0_authors_code,ladder_1_uplink", "workload.load=1"],
                 {"variant": 2}, marks=pytest.mark.slow),
    # the breaking point: the backbone sized for each load (closures.plan_load = workload.load)
    ("breaking_point", ["strategy=lbrr", "workload.load=0.5,1.0"], {"load": 2}),
    # the light-tier ladder: its first rung and the 16x light work, each with the scenario it names
    pytest.param("light_tier", ["strategy=propavg", "variant=light_tier_0_base,light_tier_4_work_16x"],
                 {"variant": 2}, marks=pytest.mark.slow),
])
def test_a_shrunken_experiment_runs_merges_and_reports(tmp_path, experiment, sweep, dims):
    from pathlib import Path

    from edgefm.cli import main as edgefm_main
    from edgefm.io import open_run

    folder = tmp_path / experiment
    assert edgefm_main(["-m", f"experiment={experiment}", *SHRINK, *sweep, f"hydra.sweep.dir={folder}"]) == 0
    ds = open_run(folder / "sweep.nc")
    assert {d: ds.sizes[d] for d in dims} == dims and ds["ontime_rate"].dims == (*dims, "instance", "realisation")
    assert not np.isnan(ds["ontime_rate"].values).any()
    for name in ("light_instances_mean", "light_starved", "core_utilisation_max", "binding_tier"):
        assert name in ds, name
    if experiment == "light_tier":
        heavy = yaml.safe_load(ds["job_config"].sel(variant="light_tier_4_work_16x").item())
        assert heavy["scenario"]["service_kinds"]["light"]["work"] == [8.0, 32.0]
        assert (heavy["workload"]["name"], heavy["controller"]["epsilon"]) == ("mmpp", 0.05)
        light = [s for s in ds["service"].values if np.isnan(ds["core_rate"].sel(service=s)).all()]
        work = ds["work"].sel(service=light, variant="light_tier_4_work_16x").values
        assert ((work >= 8.0) & (work <= 32.0)).all()  # the scenario drawn with the variant's work
    elif experiment == "ladder":
        configs = {v: yaml.safe_load(ds["job_config"].sel(variant=v).item()) for v in ds["variant"].values}
        assert configs["ladder_0_authors_code"]["channel"]["name"] == "off"
        assert configs["ladder_1_uplink"]["channel"]["name"] == "nakagami"
    else:
        for load in (0.5, 1.0):
            config = yaml.safe_load(ds["job_config"].sel(load=load).item())
            assert config["placement"]["plan_load"] == load and config["closures"]["name"] == "realistic"
    paths = write_report(folder / "sweep.nc")
    text = Path(paths["summary"]).read_text()
    assert "## Which tier binds" in text
    if experiment == "breaking_point":
        assert (folder / "report" / "fig4_load.png").is_file()
