"""The image track: data, U-Net, training, evaluation and paired theory-versus-trained runs, built on the
engine (``sims``) and its method registry."""
