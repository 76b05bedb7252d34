"""The README stays true: generated output reference, two quick-start commands, runnable plugin example."""

import re
from pathlib import Path

from edgefm.io.variables import markdown_table

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_output_reference_is_generated_from_the_variable_table():
    block = README.split("<!-- variables:begin -->\n", 1)[1].split("<!-- variables:end -->", 1)[0]
    assert block.strip() == markdown_table().strip()


def test_quick_start_has_exactly_two_commands_install_run_and_install_test():
    section = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```bash\n(.*?)\n```", section, flags=re.S)
    assert len(commands) == 2
    run, test = commands
    assert "pip install" in run and run.rstrip().endswith("edgefm")
    assert "pip install" in test and "pytest" in test


def test_plugin_example_defines_a_valid_controller():
    code = README.split("# my_pkg/__init__.py\n", 1)[1].split("```", 1)[0]
    namespace: dict = {}
    exec(compile(code, "README-example", "exec"), namespace)
    from edgefm.interfaces import AbstractController

    cls = namespace["KeepOne"]
    assert issubclass(cls, AbstractController) and cls.name == "keep_one"
    assert namespace["edgefm_register_controllers"]() == [cls]
