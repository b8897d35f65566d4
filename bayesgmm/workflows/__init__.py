"""Workflows of many fits: choosing K by PSIS-LOO, sparse mixtures, SBC, Dask.

Built on the estimator and the tiers below it.
"""
