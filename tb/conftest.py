"""pytest configuration: simulator choice, seeds and slow tests.

Options (each also has an environment variable, so that plain ``pytest`` takes them too):

  --sim LIST      TESSERA_SIM    simulators to run on: verilator, icarus, a comma list, or all
                                 (default: all that are installed)
  --seed N        TESSERA_SEED   seed of every randomized test (default: a fresh one, printed)
  --run-slow      TESSERA_SLOW=1 also run long regressions marked ``slow``

Tests run in parallel, one pytest-xdist worker per core (``-n auto`` in pyproject.toml; ``-n 0``
runs them in this process). The seed is drawn once, by the controlling process, and handed to
every worker, so one seed replays the whole run.
"""

import os
import random

import pytest

from tessera.tb import simulators


def pytest_addoption(parser):
    group = parser.getgroup("tessera")
    group.addoption("--sim", default=None, help="simulators: verilator, icarus, list, or all")
    group.addoption("--seed", type=int, default=None, help="seed for randomized tests")
    group.addoption("--run-slow", action="store_true", help="run tests marked slow")


def _seed(config):
    seed = config.getoption("--seed")
    if seed is None:
        seed = int(os.environ.get("TESSERA_SEED", random.SystemRandom().randrange(1 << 31)))
    return seed


def pytest_configure(config):
    worker = getattr(config, "workerinput", None)       # set in pytest-xdist workers
    if worker is not None and "tessera_seed" in worker:
        config._tessera_seed = worker["tessera_seed"]
    else:
        config._tessera_seed = _seed(config)
    os.environ["TESSERA_SEED"] = str(config._tessera_seed)
    if config.getoption("--sim"):
        os.environ["TESSERA_SIM"] = config.getoption("--sim")


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node):
    """pytest-xdist: give each worker the controlling process's seed."""
    node.workerinput["tessera_seed"] = node.config._tessera_seed


def pytest_report_header(config):
    try:
        sims = ", ".join(simulators.selected())
    except (RuntimeError, ValueError) as exc:
        sims = f"error: {exc}"
    return [f"tessera: simulators: {sims} (installed: {', '.join(simulators.available()) or 'none'})",
            f"tessera: seed: {config._tessera_seed} (replay with --seed {config._tessera_seed})"]


def pytest_collection_modifyitems(config, items):
    if config.getoption("--run-slow") or os.environ.get("TESSERA_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow regression: run with --run-slow or TESSERA_SLOW=1")
    for item in items:
        params = getattr(item, "callspec", None)
        on_icarus = params is not None and params.params.get("sim") == "icarus"
        if "slow" in item.keywords or ("slow_on_icarus" in item.keywords and on_icarus):
            item.add_marker(skip)


def pytest_generate_tests(metafunc):
    if "sim" in metafunc.fixturenames:
        metafunc.parametrize("sim", simulators.selected())


@pytest.fixture
def seed(request):
    value = request.config._tessera_seed
    print(f"seed={value}")
    return value
