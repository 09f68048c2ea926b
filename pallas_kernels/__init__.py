"""Bidirectional gated linear attention (BiGLA) kernels behind one API."""
from pallas_kernels.api import IMPLS, bigla, default_impl

__all__ = ["IMPLS", "bigla", "default_impl"]
