"""Augmentation inside the loader: Numba kernels (PixMix, salt-and-pepper, the Pillow-exact ops
PixMix draws from) and the FFCV operations that run them on each batch."""
