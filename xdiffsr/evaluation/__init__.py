"""Experiments and diagnostics: metrics, plots, baselines, the OSSE suite, the sequential
experiment, the demo and the packaged datasets."""
