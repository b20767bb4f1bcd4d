"""The command layer: the ``memdiff`` entry point and the pipelines that read arguments and write
``runs/`` and ``paper_figs/`` (demo, theory run, figures, claims, benchmarks, notebooks). It sits on top of
``theory`` < ``sims`` < ``image_track``; no library module imports it."""
