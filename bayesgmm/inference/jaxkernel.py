"""A compiled kernel for the likelihood's value and gradient, through JAX's foreign
function interface, when a C++ compiler is at hand.

:func:`bayesgmm.inference.jaxlik.mixture_loglik` sums ``logsumexp_k (coef_k . f_i)`` over
the points and, for the gradient, the memberships times the features. As an XLA program
that is six passes over (K, N) arrays; ``jaxkernel.cc`` does it in one pass over blocks
of 64 points that stay in registers and L1 cache (the log terms, their maxima, one
``exp`` each, the memberships and the block's share of the gradient). Measured on
N=10,000, K=5, D=4 (``bench/bench_gradient.py``; bench/README.md), it takes a value
and gradient from about 300 to about 200 microseconds, one chain per core.

The kernel is compiled for each number of components ``K`` and of point features ``F``
(it unrolls over both) and for this machine (``-march=native``), once: the shared
library is kept in ``$XDG_CACHE_HOME/bayesgmm/native`` (``~/.cache/bayesgmm/native``),
under a key of the source, the compiler, its flags, jaxlib's version and the CPU. It
serves the likelihoods without frequency weights or known labels, with ``K * F`` up to
:data:`MAX_TERMS` and on the CPU; everything else, and any machine without a working
compiler (``$CXX``, ``c++``, ``g++`` or ``clang++``), uses the XLA program, which
computes the same numbers (``tests/inference/test_jaxkernel.py``: to 1e-12).
``BAYESGMM_NATIVE=0`` turns the kernel off.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

from bayesgmm._logging import logger

__all__ = ["MAX_TERMS", "NATIVE_ENV", "kernel", "native_available"]

#: Environment variable: "0" (or "off", "false", "no") keeps the compiled kernel off.
NATIVE_ENV = "BAYESGMM_NATIVE"
#: The kernel unrolls over components and features: up to this many coefficients.
MAX_TERMS = 512
#: Up to this many components (the totals' product over a block stays finite).
MAX_COMPONENTS = 64

_SOURCE = Path(__file__).with_name("jaxkernel.cc")
_FLAGS = ("-O3", "-march=native", "-fno-math-errno", "-std=c++17", "-shared", "-fPIC", "-w")
_LOCK = threading.Lock()
_TARGETS: dict[tuple[int, int], str | None] = {}  # (K, F) -> FFI target name, or None
_LIBRARIES: list[ctypes.CDLL] = []  # loaded kernels, kept alive for the process


def _disabled() -> bool:
    return os.environ.get(NATIVE_ENV, "").strip().lower() in ("0", "off", "false", "no")


def _compiler() -> str | None:
    for name in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _cpu() -> str:
    """What ``-march=native`` depends on: the processor's name and feature flags."""
    try:
        text = Path("/proc/cpuinfo").read_text()
        lines = [ln for ln in text.splitlines() if ln.startswith(("model name", "flags"))]
        return "\n".join(sorted(set(lines)))
    except OSError:
        return platform.processor() or platform.machine()


def _folder(compiler: str) -> Path:
    import jaxlib

    version = subprocess.run(
        [compiler, "--version"], capture_output=True, text=True, timeout=60
    ).stdout
    key = hashlib.sha256(
        "\n".join(
            [_SOURCE.read_text(), version, " ".join(_FLAGS), jaxlib.__version__, _cpu()]
        ).encode()
    ).hexdigest()[:16]
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "bayesgmm" / "native" / key


def _build(K: int, F: int) -> Path:
    """The kernel's shared library for ``K`` components and ``F`` features: from the
    cache, or compiled into it (to a temporary name first, so concurrent processes never
    load a half-written file)."""
    import jax

    compiler = _compiler()
    if compiler is None:
        raise RuntimeError("no C++ compiler ($CXX, c++, g++ or clang++) on the PATH")
    folder = _folder(compiler)
    target = folder / f"lse_k{K}_f{F}.so"
    if target.exists():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        built = Path(tmp) / target.name
        command = [
            compiler, *_FLAGS, f"-DBGMM_K={K}", f"-DBGMM_F={F}",
            "-I", jax.ffi.include_dir(), str(_SOURCE), "-o", str(built),
        ]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, timeout=300)
        if done.returncode:
            raise RuntimeError(done.stderr.strip()[-2000:])
        os.replace(built, target)
    return target


def _target(K: int, F: int) -> str | None:
    with _LOCK:
        if (K, F) in _TARGETS:
            return _TARGETS[(K, F)]
        name = None
        try:
            import jax

            library = ctypes.CDLL(str(_build(K, F)))
            name = f"bayesgmm_lse_k{K}_f{F}"
            jax.ffi.register_ffi_target(
                name, jax.ffi.pycapsule(library.BayesgmmLse), platform="cpu"
            )
            _LIBRARIES.append(library)
        except Exception as err:  # any failure: the XLA program serves instead
            said = any(v is None for v in _TARGETS.values())  # said once per process
            (logger.debug if said else logger.info)(
                "the compiled likelihood kernel is unavailable (%s); the XLA program "
                "serves instead (slower; see bayesgmm.inference.jaxkernel)",
                str(err).splitlines()[0][:200] if str(err) else type(err).__name__,
            )
            name = None
        _TARGETS[(K, F)] = name
        return name


def native_available(K: int, F: int) -> bool:
    """Whether the compiled kernel serves ``K`` components and ``F`` features here
    (compiling it on first use)."""
    return kernel(K, F) is not None


def kernel(K: int, F: int) -> Callable | None:
    """``f(coef, rows) -> (value, grad)``: ``sum_i logsumexp_k (coef_k . rows[:, i])`` and
    its gradient with respect to ``coef`` (K, F), for float64 ``rows`` (F, N); or None
    where the kernel does not serve (see the module's docstring).

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> jax.config.update("jax_enable_x64", True)
    >>> call = kernel(2, 3)  # None without a C++ compiler: then plain JAX says the same
    >>> coef, rows = jnp.zeros((2, 3)), jnp.ones((3, 5))
    >>> def plain(c, x):
    ...     return jax.value_and_grad(lambda c: jax.nn.logsumexp(c @ x, axis=0).sum())(c)
    >>> value, grad = (call or plain)(coef, rows)
    >>> print(round(float(value), 4), grad[0].tolist())  # 5 log 2; half of each feature
    3.4657 [2.5, 2.5, 2.5]
    """
    if _disabled() or K < 1 or K > MAX_COMPONENTS or K * F > MAX_TERMS:
        return None
    import jax
    import jax.numpy as jnp

    if jax.default_backend() != "cpu" or not jax.config.jax_enable_x64:
        return None
    name = _target(K, F)
    if name is None:
        return None
    call = jax.ffi.ffi_call(
        name,
        (jax.ShapeDtypeStruct((), jnp.float64), jax.ShapeDtypeStruct((K, F), jnp.float64)),
        vmap_method="sequential",
    )
    return call
