"""README.rst is the contract with a new user: keep it true."""

from __future__ import annotations

import inspect
import pathlib
import re

import docutils.core
import pytest

from flask_openai_webhooks import make_blueprint
from flask_openai_webhooks.models import EVENT_TYPES
from flask_openai_webhooks.signals import signal_name
from flask_openai_webhooks.state import CONFIG_KEYS

pytest_plugins = ["pytester"]

ROOT = pathlib.Path(__file__).parent.parent
README = (ROOT / "README.rst").read_text()


def test_readme_renders_without_warnings() -> None:
    docutils.core.publish_doctree(
        README,
        settings_overrides={"report_level": 2, "halt_level": 2},
    )


def test_signal_table_covers_every_type() -> None:
    for event_type, model in EVENT_TYPES.items():
        row = re.search(rf"^``{re.escape(event_type)}``\s+(.*)$", README, re.M)
        assert row is not None, event_type
        assert f"``{signal_name(event_type)}``" in row.group(1)
        assert f"``{model.__name__}``" in row.group(1)


def test_config_table_lists_every_key_the_blueprint_reads() -> None:
    """Every setting, read from app.config as OPENAI_WEBHOOK_<KEY> and
    given to make_blueprint as its lower-case argument, has a row."""
    parameters = inspect.signature(make_blueprint).parameters
    assert "SECRET" in CONFIG_KEYS and len(CONFIG_KEYS) >= 7
    for key, argument in CONFIG_KEYS.items():
        assert argument in parameters, argument
        assert f"``OPENAI_WEBHOOK_{key}``" in README, key


def test_ci_runs_the_readme_test_command() -> None:
    assert "    make test " in README
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test$", ci, re.M)


def test_readme_example_command_exists_in_makefile() -> None:
    makefile = (ROOT / "Makefile").read_text()
    for target in ("example", "send-sample", "test", "bench"):
        assert f"    make {target}" in README
        assert re.search(rf"^{re.escape(target)}:", makefile, re.M)


def test_testing_section_example_passes(pytester: pytest.Pytester) -> None:
    """The pytest example of "Testing your receivers" runs as written."""
    section = README[README.index("Testing your receivers") :]
    block = section[section.index(".. code-block:: python") :]
    lines = block.splitlines()[2:]
    code = []
    for line in lines:
        if line and not line.startswith("    "):
            break
        code.append(line[4:])
    pytester.makepyfile(test_receivers="\n".join(code))
    pytester.syspathinsert(ROOT)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-W", "error")
    result.assert_outcomes(passed=3)
