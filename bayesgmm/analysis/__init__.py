"""The analysis tier: diagnostics, posterior predictive checks, plots, summaries, reports.

Imports ArviZ and matplotlib; builds on :mod:`bayesgmm.core` only (never PyMC or JAX), so
a loaded model can be diagnosed and reported without the inference stack.
"""
