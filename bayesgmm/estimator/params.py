"""scikit-learn's parameter protocol for bayesgmm's estimators, without scikit-learn.

``get_params``, ``set_params`` and a ``repr`` that shows the parameters changed from
their defaults, read from the constructor's signature, so that scikit-learn's ``clone``,
grid searches and pipelines work when scikit-learn is installed.
"""

from __future__ import annotations

import inspect
from typing import Any

from bayesgmm.exceptions import ConfigError

__all__ = ["Params"]


class Params:
    """Mixin: the constructor's parameters as scikit-learn reads and sets them."""

    @classmethod
    def _get_param_names(cls) -> list[str]:
        return [p for p in inspect.signature(cls.__init__).parameters if p != "self"]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Constructor parameters, as scikit-learn's ``get_params``."""
        return {name: getattr(self, name) for name in self._get_param_names()}

    def set_params(self, **params: Any):
        """Set constructor parameters; unknown names raise ``ConfigError``."""
        valid = self._get_param_names()
        for name, value in params.items():
            if name not in valid:
                raise ConfigError(
                    f"unknown parameter {name!r} for {type(self).__name__}; valid: {valid}"
                )
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        params = inspect.signature(type(self).__init__).parameters
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items()
                         if v is not params[k].default)  # fmt: skip
        return f"{type(self).__name__}({args})"
