"""The README and docs/ stay true: the two quick-start commands, the generated output reference,
links and cited files that exist in the repository, and no citation of anything outside it."""

import re
from pathlib import Path

import pytest

from edgefm.io.variables import markdown_table

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
TEST_COMMAND = 'python3.11 -m venv .venv && .venv/bin/pip install -e ".[test]" && .venv/bin/python -m pytest -q'

FENCE = re.compile(r"^```.*?^```", flags=re.S | re.M)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
# a path inside the repository in backticks: a top-level folder, then path characters (* as a glob)
CITED_PATH = re.compile(r"`((?:edgefm|plugins|conf|docs|tests|benchmarks|results)/[\w./*-]*)`")
DOC_NAME = re.compile(r"\b([A-Z][A-Z_]+\.md)\b")


def prose(text: str) -> str:
    """The text outside fenced code blocks."""
    return FENCE.sub("", text)


def page_id(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def test_quick_start_has_exactly_two_commands_install_run_and_install_test():
    section = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```bash\n(.*?)\n```", section, flags=re.S)
    assert len(commands) == 2
    run, test = commands
    assert run.startswith("python3.11 -m venv .venv && .venv/bin/pip install -e . && ")
    assert run.rstrip().endswith("edgefm") and "\n" not in run
    assert test == TEST_COMMAND  # CI extracts this line as the test command
    assert len(re.findall(r"^```", section, flags=re.M)) == 4  # no other fenced block in the section


def test_the_readme_is_a_front_door():
    lines = README.count("\n")
    assert 120 <= lines <= 220, lines
    for heading in ("## Quick start", "### 1. Run", "### 2. Sweep", "### 3. Analyse", "### 4. Swap a plugin",
                    "### 5. Write a plugin", "## Documentation"):
        assert heading in README, heading
    assert "<!-- variables:begin -->" not in README  # the reference lives in docs/OUTPUT.md
    for page in ("docs/MODEL.md", "docs/OUTPUT.md", "docs/PLUGINS.md", "docs/SCENARIOS.md", "docs/EXPERIMENTS.md",
                 "docs/ENGINE.md", "docs/SEMANTICS.md"):
        assert f"]({page})" in README, page


def test_output_reference_is_generated_from_the_variable_table():
    text = (ROOT / "docs" / "OUTPUT.md").read_text()
    assert text.count("<!-- variables:begin -->") == 1 and text.count("<!-- variables:end -->") == 1
    block = text.split("<!-- variables:begin -->\n", 1)[1].split("<!-- variables:end -->", 1)[0]
    assert block.strip() == markdown_table().strip()


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_every_relative_link_points_to_a_file_of_the_repository(page):
    for target in LINK.findall(prose(page.read_text())):
        if re.match(r"^[a-z][a-z+.-]*:", target) or target.startswith("#"):
            continue  # https:, mailto:, an anchor on the same page
        path = (page.parent / target.split("#", 1)[0]).resolve()
        assert path.is_relative_to(ROOT), (page_id(page), target)
        assert path.exists(), (page_id(page), target)


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_every_file_a_page_cites_exists(page):
    text = page.read_text()
    for cited in CITED_PATH.findall(text):
        assert list(ROOT.glob(cited.rstrip("/"))), (page_id(page), cited)
    # a page named bare (MODEL.md §5, RESULTS.md) is a page of docs/ or of the repository's root
    for name in DOC_NAME.findall(prose(text)):
        assert (ROOT / "docs" / name).is_file() or (ROOT / name).is_file(), (page_id(page), name)


def test_nothing_cites_a_file_outside_the_repository():
    offenders = []
    for path in [ROOT / "README.md", *(ROOT / "docs").rglob("*"), *(ROOT / "edgefm").rglob("*")]:
        if path.is_file() and path.suffix in (".md", ".py", ".yaml", ".json", ".txt", ".toml"):
            for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
                if "shared/" in line:
                    offenders.append(f"{page_id(path)}:{number}: {line.strip()}")
    assert offenders == []


def test_the_model_keeps_the_section_numbers_the_code_cites():
    text = (ROOT / "docs" / "MODEL.md").read_text()
    sections = re.findall(r"^## (\d+)\. ", text, flags=re.M)
    assert sections == [str(i) for i in range(1, 12)]
    assert re.findall(r"^### (7\.\d) ", text, flags=re.M) == ["7.1", "7.2", "7.3", "7.4"]
    for equation in ("Eq. 1", "Eq. 4", "Eqs. 6–7", "Eq. 8", "Eq. 10", "Eq. 11", "Eq. 14", "Eq. 15"):
        assert equation in text, equation
    # every closure names the option that sets it, and the presets' values are tabled
    assert text.count("[closure") >= 20
    for option in ("sim.root_ready", "sim.core_dispatch", "sim.light_order", "channel.fading", "placement.reserve",
                   "placement.plan_load", "placement.plan_fit", "controller.instance_ready", "controller.candidates",
                   "sim.arrival_ms"):
        assert f"`{option}" in text, option
