"""ViG (Vision Gated Linear Attention) in JAX/Flax."""
from vig_jax.models import MODELS, create_model

__all__ = ["MODELS", "create_model"]
