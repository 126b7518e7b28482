"""Runs that differ only by seed, grouped into configurations, and their mean ± std.

Two runs are one configuration when the configs they saved (``.hydra/config.yaml``; a W&B
run's logged config) are equal once the keys in :data:`NOT_CONFIGURATION` are left out. A run
that saved no config is grouped by its command-line overrides (``.hydra/overrides.yaml``)
with the same keys left out; a run with neither is a configuration of its own. Folder names
are never used: Hydra numbers a multirun's jobs, whatever they vary.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tinytracker.report.runs import RunResult

SEED_KEY = "seed"

# Config keys (and everything under them) that never make two runs different configurations:
# the seed itself, where a run writes its files, how it is named and recorded, and Hydra's own
# runtime fields. The one place this list lives; docs/sweeps.md and the report module name it.
NOT_CONFIGURATION = (
    SEED_KEY,
    "data.seed",            # ${seed} as saved; a resolved config (W&B) holds the seed's value
    "out_dir",              # output paths
    "paths",
    "task_name",            # only names the output folder
    "trainer.default_root_dir",
    "callbacks.model_checkpoint.dirpath",
    "data.cache_dir",       # where the (deterministic) data is cached, not which data
    "data.packed_dir",
    "logger",               # W&B/CSV run ids, names, groups, modes and save dirs
    "callbacks.progress_bar",
    "trainer.log_every_n_steps",
    "trainer.enable_model_summary",
    "tags",
    "git",                  # the commit a run's W&B config records (tinytracker.train)
    "hydra",                # runtime fields (job number, output dir) if a config holds them
)


def defines_configuration(key: str) -> bool:
    """Whether the dotted config key ``key`` can make two runs different configurations."""
    return not any(key == k or key.startswith(k + ".") for k in NOT_CONFIGURATION)


def run_seed(run: RunResult) -> Any:
    """The run's seed: from its saved config, else its ``seed=`` override; ``None`` if neither."""
    if run.config is not None and SEED_KEY in run.config:
        return run.config[SEED_KEY]
    for override in run.overrides:
        key, _, value = override.partition("=")
        if key.lstrip("+") == SEED_KEY:
            return _number(value)
    return None


def identity(run: RunResult) -> str:
    """What two runs of one configuration share (a canonical JSON string)."""
    if run.config is not None:
        kept = {k: v for k, v in run.config.items() if defines_configuration(k)}
        return json.dumps(["config", kept], sort_keys=True, default=str)
    if run.overrides:
        kept_overrides = sorted(o for o in run.overrides
                                if defines_configuration(o.partition("=")[0].lstrip("+")))
        return json.dumps(["overrides", kept_overrides])
    return json.dumps(["run", run.source])


@dataclass(frozen=True)
class Stat:
    """One metric over a configuration's runs; ``std`` (ddof=1) is ``None`` for one value."""

    mean: float
    std: float | None
    n: int
    values: tuple[float, ...]
    integers: bool = False   # every value was written as an integer (a count, bytes)

    @property
    def constant(self) -> bool:
        """Integers, all equal: a property of the configuration (params, bytes), not a
        measurement that scatters over seeds."""
        return self.integers and len(set(self.values)) == 1


@dataclass
class Configuration:
    """Runs that differ only by seed, in the order they were found."""

    runs: list[RunResult]

    @property
    def name(self) -> str:
        return " ".join(r.name for r in self.runs)

    @property
    def seeds(self) -> list[Any]:
        return [run_seed(r) for r in self.runs]

    def overrides(self, seed: bool = False) -> list[str]:
        """The first run's overrides, its ``seed=`` left out unless ``seed`` (the others are
        every run's, up to keys that define no configuration)."""
        return [o for o in self.runs[0].overrides
                if seed or o.partition("=")[0].lstrip("+") != SEED_KEY]

    def stat(self, key: str | Sequence[str], when: tuple[str, Any] | None = None
             ) -> Stat | None:
        """Mean, std (ddof=1) and n of metric ``key`` over the runs that have it (numeric);
        of several keys, each run's first present; with ``when=(key, value)``, only runs whose
        metric ``key`` is ``value``. ``None`` if no run has it."""
        keys = [key] if isinstance(key, str) else list(key)
        runs = [r for r in self.runs if when is None or r.metrics.get(when[0]) == when[1]]
        raw = [v for v in (_first_number(r.metrics, keys) for r in runs) if v is not None]
        if not raw:
            return None
        values = [float(v) for v in raw]
        std = statistics.stdev(values) if len(values) > 1 else None
        return Stat(statistics.fmean(values), std, len(values), tuple(values),
                    integers=all(isinstance(v, int) for v in raw))

    def text(self, key: str, default: str = "") -> str:
        """A non-numeric entry (``model/name``): the first run's."""
        return str(self.runs[0].metrics.get(key, default))


def group_by_seed(runs: Sequence[RunResult]) -> list[Configuration]:
    """Configurations in the order of their first run (so ties keep a stable order)."""
    groups: dict[str, Configuration] = {}
    for run in runs:
        groups.setdefault(identity(run), Configuration([])).runs.append(run)
    return list(groups.values())


def expected_seeds(configs: Sequence[Configuration]) -> int:
    """How many runs a configuration should have: the most any configuration has."""
    return max((len(c.runs) for c in configs), default=0)


def missing_seeds(config: Configuration, configs: Sequence[Configuration]) -> list[Any]:
    """Seeds the configurations with the most runs have and ``config`` lacks."""
    most = expected_seeds(configs)
    reference = {s for c in configs if len(c.runs) == most for s in c.seeds if s is not None}
    return sorted(reference - set(config.seeds), key=str)


def _first_number(metrics: dict[str, Any], keys: Sequence[str]) -> int | float | None:
    for key in keys:
        value = metrics.get(key)
        if (isinstance(value, int | float) and not isinstance(value, bool)
                and math.isfinite(value)):
            return value
    return None


def _number(text: str) -> Any:
    try:
        return int(text)
    except ValueError:
        return text
