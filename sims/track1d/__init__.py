"""The 1D-signal track on the shared engine: data (MNIST-1D, simulated ECG, Gaussian mixtures), networks,
the feature classifier and one grid cell."""
