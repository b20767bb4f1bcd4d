"""The diffusion engine shared by both tracks (schedules, noise-level laws, preconditioning, losses, the
method registry, corruption, samplers, trainer, metrics, readout, artifacts, typed configs, the grid runner)
and, in ``sims.track1d``, the 1D-signal track. Imports ``theory`` only."""
