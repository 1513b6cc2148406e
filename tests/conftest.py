"""Shared test set-up: the JAX persistent compilation cache, kept inside the repository."""

import pathlib

import jax

_CACHE_DIR = pathlib.Path(__file__).resolve().parent.parent / ".jax_cache"

jax.config.update("jax_compilation_cache_dir", str(_CACHE_DIR))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
