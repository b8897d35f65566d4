"""Settings of the estimator: the sampler, minibatch ADVI and the EM start, as records.

Each record is a frozen dataclass with a declared table of constraints (the vocabulary of
:mod:`bayesgmm.core.checks`), merged over its defaults by ``from_dict`` with unknown keys
rejected, and serialisable by ``to_dict``. Nothing here imports PyMC or JAX: a spec, the
command line and a saved model read and check these settings without them.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, ClassVar

import numpy as np

from bayesgmm.core.checks import (
    Constraint,
    check_keys,
    check_settings,
    choice,
    integer,
    is_real,
    optional,
    real,
    violations,
)
from bayesgmm.core.em_init import INIT_METHODS
from bayesgmm.exceptions import ConfigError

__all__ = [
    "ADVI_METHODS",
    "DENSE_MAX_PARAMETERS",
    "EM_SETTINGS",
    "INFERENCE_METHODS",
    "MASS_MATRICES",
    "MULTIMODAL",
    "NUTS_SAMPLERS",
    "RHAT_OK",
    "RHAT_WARN",
    "ADVIConfig",
    "SamplerConfig",
    "available_cores",
    "available_samplers",
    "config_from_mapping",
    "em_settings",
    "resolve_seed",
]

NUTS_SAMPLERS = ("auto", "pymc", "nutpie", "numpyro", "blackjax")
MASS_MATRICES = ("auto", "diag", "dense")
MULTIMODAL = ("stack", "report")
#: R-hat "ok" and "warn" bounds of the diagnostics; ``target_ess`` also asks R-hat <= RHAT_OK.
RHAT_OK, RHAT_WARN = 1.01, 1.05
#: ``mass_matrix="auto"`` adapts a dense mass matrix up to this many unconstrained
#: parameters (bench/bench_sampling.py: see bench/README.md).
DENSE_MAX_PARAMETERS = 200
ADVI_METHODS = ("advi", "fullrank_advi")
INFERENCE_METHODS = ("nuts", "advi")
_MODULE_OF = {"pymc": "pymc", "nutpie": "nutpie", "numpyro": "numpyro", "blackjax": "blackjax"}
# Preference order for "auto", from bench/bench_sampling.py (N=1,000, K=3, D=2, 4 chains x
# 1,000 tune + 1,000 draws, one process, 2 shared cores, compile included): ESS/s numpyro
# 56.2, pymc 33.4, nutpie 9.2 (wall 56 s, 91 s, 363 s; min bulk ESS 3,120 / 3,035 / 3,328;
# R-hat <= 1.003 for all). The model compiles in seconds with JAX; numba took minutes.
_AUTO_ORDER = ("numpyro", "pymc", "nutpie")
_SEED = optional(integer(0)).says("a non-negative integer or None")
_BOOL = Constraint(lambda v: isinstance(v, bool) or type(v).__name__ == "bool_", "True or False")


def available_samplers() -> list[str]:
    """NUTS backends importable in this environment (found, not imported).

    Examples
    --------
    >>> "pymc" in available_samplers()
    True
    """
    return [s for s, mod in _MODULE_OF.items() if importlib.util.find_spec(mod) is not None]


def available_cores() -> int:
    """CPU cores this process may run on (its affinity, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


def resolve_seed(settings):
    """``settings`` (a :class:`SamplerConfig` or :class:`ADVIConfig`) with a seed that
    reproduces the fit: its own ``random_seed``, or one drawn from the operating system's
    entropy (numpy's ``SeedSequence``) when it is None, so that a fit always records the
    seed it used.

    Examples
    --------
    >>> resolve_seed(SamplerConfig(random_seed=3)).random_seed
    3
    >>> seed = resolve_seed(SamplerConfig()).random_seed
    >>> isinstance(seed, int) and 0 <= seed < 2**32
    True
    """
    if settings.random_seed is not None:
        return settings
    drawn = int(np.random.SeedSequence().generate_state(1, dtype=np.uint32)[0])
    return replace(settings, random_seed=drawn)


def config_from_mapping(cls, d, what: str):
    """``cls`` (a settings dataclass with ``validate()``) from a mapping merged over its
    defaults; unknown keys and bad values raise ConfigError naming ``what`` settings."""
    check_keys(d, [f.name for f in fields(cls)], what)
    cfg = cls(**{**asdict(cls()), **dict(d)})
    cfg.validate()
    return cfg


class _Settings:
    """What the settings records share: ``from_dict`` (merged over the defaults, checked
    against ``CONSTRAINTS``) and ``to_dict``."""

    WHAT: ClassVar[str]
    CONSTRAINTS: ClassVar[dict[str, Constraint]]

    @classmethod
    def from_dict(cls, d):
        """Merge ``d`` over the defaults, rejecting unknown keys and bad values (a record of
        this type is checked and returned as it is; None gives the defaults)."""
        if d is None:
            return cls()
        if isinstance(d, cls):
            d.validate()
            return d
        return config_from_mapping(cls, d, cls.WHAT)

    def to_dict(self) -> dict[str, Any]:
        """Plain serialisable form."""
        return asdict(self)

    def _errors(self) -> list[str]:
        return violations(asdict(self), self.CONSTRAINTS)

    def validate(self) -> None:
        """Raise ConfigError listing every out-of-range setting."""
        errors = self._errors()
        if errors:
            raise ConfigError(f"invalid {self.WHAT} settings:\n  - " + "\n  - ".join(errors))


@dataclass(frozen=True)
class SamplerConfig(_Settings):
    """Sampler settings.

    Parameters
    ----------
    draws, tune : int
        Posterior draws kept and tuning (warm-up) draws discarded, per chain.
    chains : int
    target_accept : float in (0, 1)
    nuts_sampler : {"auto", "pymc", "nutpie", "numpyro", "blackjax"}
        ``"auto"`` picks the fastest installed backend, in the order NumPyro, PyMC's
        own NUTS, nutpie (measured by ``bench/bench_sampling.py``, see ``_AUTO_ORDER``).
    random_seed : int, optional
    progressbar : bool
    cores : int, optional
        Chains run at the same time. Default: one per available core, at most ``chains``
        (the ``numpyro`` backend runs them as threads over one compiled program; the
        ``pymc`` backend as processes). 1 runs them one after the other.
    jitter : float
        Standard deviation of the per-chain Gaussian jitter around the EM start, on the
        unconstrained scale. 0 starts every chain exactly at the EM solution.
    mass_matrix : {"auto", "diag", "dense"}
        The mass matrix adapted during tuning (``numpyro`` backend). ``"dense"`` learns the
        posterior's correlations (fewer leapfrog steps per draw, at a cost quadratic in
        the number of parameters); ``"auto"`` chooses dense up to
        ``DENSE_MAX_PARAMETERS`` unconstrained parameters, diagonal above.
    target_ess : int, optional
        Keep drawing, in rounds of ``draws``, until the smallest bulk and tail ESS of the
        relabelled weights, means, sds and correlations reach this (and R-hat is at most
        1.01) over the chains of the best mode, or ``max_time`` has passed (at most 20
        rounds; ``numpyro`` backend). None: ``draws`` only.
    max_time : float, optional
        Seconds after which no further round of draws starts (with ``target_ess``).
    multimodal : {"stack", "report"}
        When chains settle in different posterior modes: ``"stack"`` combines the chains
        by stacking (Yao, Vehtari & Gelman 2022) and says so; ``"report"`` only names the
        modes. Chains are never dropped.

    Examples
    --------
    >>> SamplerConfig.from_dict({"draws": 500, "chains": 2}).draws
    500
    """

    draws: int = 1000
    tune: int = 1000
    chains: int = 4
    target_accept: float = 0.9
    nuts_sampler: str = "auto"
    random_seed: int | None = None
    progressbar: bool = True
    cores: int | None = None
    jitter: float = 0.05
    mass_matrix: str = "auto"
    target_ess: int | None = None
    max_time: float | None = None
    multimodal: str = "stack"

    CONSTRAINTS: ClassVar[dict[str, Constraint]] = {
        "draws": integer(1),
        "tune": integer(0),
        "chains": integer(1),
        "target_accept": real(0, 1, lo_open=True, hi_open=True).says("in (0, 1)"),
        "nuts_sampler": choice(NUTS_SAMPLERS),
        "random_seed": _SEED,
        "cores": optional(integer(1)).says("a positive integer or None"),
        "jitter": real(0, 1).says("in [0, 1]"),
        "mass_matrix": choice(MASS_MATRICES),
        "target_ess": optional(integer(1)).says("a positive integer or None"),
        "max_time": optional(real(0, lo_open=True)).says("positive seconds or None"),
        "multimodal": choice(MULTIMODAL),
    }

    WHAT = "sampler"

    def workers(self) -> int:
        """Chains run at the same time: ``cores``, else the available cores, at most
        ``chains``."""
        cores = self.cores if self.cores is not None else available_cores()
        return max(1, min(int(cores), int(self.chains)))

    def resolved_sampler(self) -> str:
        """The backend that will actually run (ConfigError if it is not installed here).

        Checked when sampling, not when the settings are read: a saved model's settings
        load wherever it is used, with or without its sampling backend.
        """
        have = available_samplers()
        if self.nuts_sampler == "auto":
            return next(s for s in _AUTO_ORDER if s in have)
        if self.nuts_sampler not in have:
            raise ConfigError(
                f"invalid sampler settings:\n  - nuts_sampler={self.nuts_sampler!r} is not "
                f"installed here; installed: {have} (pip install 'bayesgmm[jax]' or "
                "'bayesgmm[nutpie]')"
            )
        return self.nuts_sampler


@dataclass(frozen=True)
class ADVIConfig(_Settings):
    """Settings of the minibatch ADVI fit.

    Parameters
    ----------
    n_steps : int
        Optimisation steps (one minibatch each).
    batch_size : int
        Rows per minibatch. When the data have no more rows than this, every step uses
        all of them (no ``pm.Minibatch``).
    draws : int
        Independent draws taken from the fitted approximation (one chain).
    learning_rate : float in (0, 1]
        Adam's initial step size.
    final_learning_rate : float in (0, learning_rate]
        Step size reached at the last step; it decays geometrically from
        ``learning_rate``. Equal to ``learning_rate`` for a constant step size.
    method : {"advi", "fullrank_advi"}
        Mean-field (independent Gaussians on the unconstrained scale) or full-rank
        (one correlated Gaussian; quadratic in the number of parameters).
    random_seed : int, optional
    progressbar : bool

    Examples
    --------
    >>> ADVIConfig.from_dict({"n_steps": 5000, "batch_size": 512}).n_steps
    5000
    >>> ADVIConfig.from_dict({"steps": 5000})
    Traceback (most recent call last):
    ...
    bayesgmm.exceptions.ConfigError: unknown ADVI setting(s) ['steps']; valid: ['n_steps', ...
    """

    n_steps: int = 20_000
    batch_size: int = 1024
    draws: int = 1000
    learning_rate: float = 0.01
    final_learning_rate: float = 1e-4
    method: str = "advi"
    random_seed: int | None = None
    progressbar: bool = True

    CONSTRAINTS: ClassVar[dict[str, Constraint]] = {
        "n_steps": integer(1),
        "batch_size": integer(1),
        "draws": integer(1),
        "learning_rate": real(0, 1, lo_open=True).says("in (0, 1]"),
        "method": choice(ADVI_METHODS),
        "random_seed": _SEED,
        "progressbar": _BOOL,
    }

    WHAT = "ADVI"

    def _errors(self) -> list[str]:
        errors = super()._errors()
        lr, final = self.learning_rate, self.final_learning_rate
        if self.CONSTRAINTS["learning_rate"](lr) and not (is_real(final) and 0 < final <= lr):
            errors.append(
                f"final_learning_rate must be in (0, learning_rate={lr!r}]; got {final!r}"
            )
        return errors


#: The EM start's settings in ``BayesianGMM(em={...})`` and specs, with what they may be.
EM_SETTINGS: dict[str, Constraint] = {
    "n_init": integer(1),
    "init": choice(INIT_METHODS),
    "max_iter": integer(1),
    "tol": real(0, lo_open=True),
}


def em_settings(em: Mapping[str, Any] | None) -> dict[str, Any]:
    """The EM start's settings with defaults (``n_init=10``), checked.

    Examples
    --------
    >>> em_settings({"max_iter": 200})
    {'max_iter': 200, 'n_init': 10}
    """
    em = dict(em or {})
    check_keys(em, EM_SETTINGS, "em")
    check_settings(em, EM_SETTINGS, "em")
    em.setdefault("n_init", 10)
    return em
