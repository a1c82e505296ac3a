"""The documentation stays true to the code: the configuration reference, links and the index.

The variables the code reads are found by scanning the source (the calls that read the
environment, and the ``StrategySettings`` / ``ExecutionCosts`` fields by the naming rule of
live/engine/settings.py), independently of docs/gen_config.py, which writes the reference.
"""

from __future__ import annotations

import importlib.util
import json
import re
from dataclasses import fields
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

DOCS = REPO_ROOT / "docs"
CONFIGURATION = DOCS / "configuration.md"
SOURCES = ("ats_assets", "ats_resources", "ats_sensors", "live")
NAME = r"([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)"
# Each pattern's group 1 is a variable read from the environment.
READS = [
    # os.environ.get("X"), env.get("X"), os.getenv("X"), os.environ["X"], env["X"]
    rf"\b(?:environ|env|getenv)\s*(?:\.get\s*\(|\(|\[)\s*[\"']{NAME}[\"']",
    rf"\bEnvVar\(\s*[\"']{NAME}[\"']",
    # _int(env, "X", ...), _float, _bool, _choice, _secret(settings, "X")
    rf"\b_(?:int|float|bool|choice|secret)\(\s*[\w.]+(?:\s+or\s+\{{\}})?\s*,\s*[\"']{NAME}[\"']",
    rf"\bsettings\.get\(\s*[\"']{NAME}[\"']",
    # module constants naming a variable: ENV_API_KEY = "ALPACA_API_KEY"
    rf"^\s*ENV_\w+\s*=\s*[\"']{NAME}[\"']",
]
YAML_ENV = rf"^\s*env:\s*{NAME}\s*$"
# Named in the docs, read by libraries rather than by ATS itself.
EXTERNAL = {"HTTPS_PROXY", "PGSSLMODE"}


def _gen_config():
    spec = importlib.util.spec_from_file_location("gen_config", DOCS / "gen_config.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _notebook_source() -> str:
    cells = json.loads((REPO_ROOT / "notebooks" / "explore.ipynb").read_text())["cells"]
    return "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")


def variables_read_by_the_code() -> set[str]:
    names: set[str] = set()
    texts = [p.read_text() for package in SOURCES for p in (REPO_ROOT / package).rglob("*.py")]
    for text in [*texts, _notebook_source()]:
        for pattern in READS:
            names.update(re.findall(pattern, text, flags=re.MULTILINE))
    for instance in (REPO_ROOT / "dagster.yaml", REPO_ROOT / "deployment" / "dagster.yaml"):
        names.update(re.findall(YAML_ENV, instance.read_text(), flags=re.MULTILINE))
    from live.engine.settings import _ENV_NAMES, ExecutionCosts, StrategySettings

    names.update(_ENV_NAMES.get(f.name, f"ATS_{f.name.upper()}") for f in fields(StrategySettings))
    names.update(f"ATS_{f.name.upper()}" for f in fields(ExecutionCosts))
    return names


def env_sample_variables() -> set[str]:
    text = (REPO_ROOT / ".env.sample").read_text()
    return set(re.findall(rf"^#?\s*{NAME}=", text, flags=re.MULTILINE))


def documented_variables() -> set[str]:
    """Every variable-like name in backticks in configuration.md."""
    return set(re.findall(rf"`{NAME}`", CONFIGURATION.read_text()))


def test_the_scan_finds_the_variables_each_kind_of_read_names():
    found = variables_read_by_the_code()
    for name in (
        "ATS_DATA_DIR",  # env.get in Settings
        "ATS_SIM_SEED",  # _int(env, ...)
        "TIMESCALEDB_HOST",  # settings.get(...) and dagster.yaml env:
        "POLYGON_API_KEY",  # _secret(settings, ...)
        "ALPACA_TRADING_URL",  # ENV_TRADING_URL = "..."
        "ATS_TRADING_MODE",  # env.get in live/brokers/base.py
        "ATS_DRIFT_PSI_SHARE",  # _float(env, ...) in the sensor
        "ATS_DEVICE",  # os.environ.get
        "MAX_POSITION_SIZE",  # StrategySettings field, seed name
        "ATS_SEC_FEE_RATE",  # ExecutionCosts field
        "ATS_NOTEBOOK_WEEK",  # the notebook
    ):
        assert name in found, name


def test_configuration_reference_is_what_gen_config_prints_from_the_code():
    gen = _gen_config()
    text = CONFIGURATION.read_text()
    assert gen.BEGIN in text and gen.END in text
    block = text[text.index(gen.BEGIN) : text.index(gen.END) + len(gen.END)]
    assert block == gen.generated(), (
        "docs/configuration.md is stale: run .venv/bin/python docs/gen_config.py --write"
    )


def test_every_variable_the_code_reads_is_documented():
    missing = sorted(variables_read_by_the_code() - documented_variables())
    assert not missing, f"add these to docs/gen_config.py (then --write): {missing}"


def test_every_env_sample_variable_is_documented():
    missing = sorted(env_sample_variables() - documented_variables())
    assert not missing, f"documented in .env.sample but not in configuration.md: {missing}"


def test_every_documented_variable_exists():
    known = variables_read_by_the_code() | env_sample_variables() | EXTERNAL
    unknown = sorted(documented_variables() - known)
    assert not unknown, f"configuration.md documents variables nothing reads: {unknown}"


def _markdown_files() -> list[Path]:
    return [REPO_ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


def _relative_links(text: str) -> list[str]:
    # [text](target) outside code spans; fenced blocks hold no links worth checking
    text = re.sub(r"```.*?```", "", text, flags=re.DOTALL)
    text = re.sub(r"``.*?``|`[^`\n]*`", "", text)
    targets = re.findall(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", text)
    return [t for t in targets if not re.match(r"^(?:[a-z]+:|#)", t)]


@pytest.mark.parametrize("page", _markdown_files(), ids=lambda p: p.name)
def test_relative_links_point_at_files_that_exist(page):
    broken = [
        target
        for target in _relative_links(page.read_text())
        if not (page.parent / target.split("#", 1)[0]).exists()
    ]
    assert not broken, f"{page.relative_to(REPO_ROOT)} links to missing files: {broken}"


def test_the_docs_index_lists_every_page():
    index = (DOCS / "README.md").read_text()
    linked = set(_relative_links(index))
    missing = [p.name for p in DOCS.glob("*.md") if p.name != "README.md" and p.name not in linked]
    assert not missing, f"docs/README.md does not link to {missing}"
