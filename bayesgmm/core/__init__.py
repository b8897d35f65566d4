"""The numpy/scipy core: everything that needs neither PyMC, PyTensor, JAX nor ArviZ.

Validation, the covariance-family table, the mixture engine, priors, EM, access to
posterior draws, predictions, relabelling and BIC. Modules here import only numpy,
scipy, pandas, xarray and each other (``tests/test_tiers.py`` checks it), so EM, BIC and
predictions from a saved model run without the inference stack.
"""
