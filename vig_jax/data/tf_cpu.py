"""TensorFlow and TFDS for the input pipeline, kept off accelerators.

Every tf-using module here imports `tf` and `tfds` from this one, and only the
pipeline's functions import those modules, so `import vig_jax` works without
tensorflow. tf.data only needs the CPU; left alone, tf would reserve GPU/TPU
memory that JAX needs.
"""
import tensorflow as tf

tf.config.set_visible_devices([], "GPU")
tf.config.set_visible_devices([], "TPU")

# tfds 4.9.10 needs the `importlib_resources` backport but declares it only for Python < 3.9
# (tensorflow/datasets#11212): requirements.txt lists it.
import tensorflow_datasets as tfds  # noqa: E402

__all__ = ["tf", "tfds"]
