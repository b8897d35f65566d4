"""Exceptions and warnings raised by bayesgmm.

Every error a user can cause derives from :class:`BayesGMMError` *and* from the
builtin type a Python user would expect (``ValueError``, ``RuntimeError``), so
``except ValueError`` keeps working.
"""

from __future__ import annotations

__all__ = [
    "BayesGMMError",
    "ConfigError",
    "ConvergenceWarning",
    "DataError",
    "DegenerateFitError",
    "ExtraColumnsWarning",
    "IncompatibleVersionError",
    "NotFittedError",
    "ReportPathError",
    "SamplingWarning",
    "SavePathError",
    "SavedModelError",
    "SavedModelNotFoundError",
    "VariationalFitError",
]


class BayesGMMError(Exception):
    """Base class of every error bayesgmm raises on purpose."""


class DataError(BayesGMMError, ValueError):
    """The data cannot be fitted as given (NaN, wrong shape, constant column, ...)."""


class ConfigError(BayesGMMError, ValueError):
    """A prior, sampler or estimator setting is unknown or out of range."""


class NotFittedError(BayesGMMError, ValueError, AttributeError):
    """A method that needs a fitted model was called before ``fit``."""


class DegenerateFitError(BayesGMMError, RuntimeError):
    """A mixture component collapsed (too few points or a singular covariance).

    ``reason`` is what went wrong, without the advice that follows it in the message, so
    that a caller can give advice in terms of its own options.
    """

    def __init__(self, message: str = "", *, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason if reason is not None else message


class VariationalFitError(BayesGMMError, RuntimeError):
    """The variational (minibatch ADVI) optimisation failed: its ELBO became NaN or infinite."""


class SavedModelError(BayesGMMError, ValueError):
    """A saved model is damaged (truncated, altered, incomplete) or not a saved model."""


class IncompatibleVersionError(SavedModelError):
    """A saved model was written in a layout this version of bayesgmm cannot read."""


class SavedModelNotFoundError(BayesGMMError, FileNotFoundError):
    """No saved model at the given path."""


class SavePathError(BayesGMMError, FileExistsError):
    """A model may not be saved to the given path (nothing was written or removed)."""


class ReportPathError(BayesGMMError, FileExistsError):
    """A report may not be written where asked (nothing was written or replaced)."""


class ConvergenceWarning(UserWarning):
    """EM stopped at ``max_iter`` before its objective settled."""


class SamplingWarning(UserWarning):
    """NUTS diagnostics flagged a problem (divergences, R-hat, low ESS, ...)."""


class ExtraColumnsWarning(UserWarning):
    """New data had columns the model was not fitted on; they were left out."""
