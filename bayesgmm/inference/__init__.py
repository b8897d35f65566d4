"""The inference tier: the PyMC model, NUTS backends (NumPyro, PyMC, nutpie) and ADVI.

Imports PyMC, PyTensor and JAX; builds on :mod:`bayesgmm.core` only.
"""
