"""Wiring shared by the Pallas BiGLA kernels: custom_vjp (no autodiff through pallas_call) and
output shapes that are valid under jax.shard_map."""
import jax


def out_struct(like, shape, dtype):
  """jax.ShapeDtypeStruct that varies over the same manual mesh axes as the input `like`, as
  shard_map's type check requires of a pallas_call's outputs."""
  return jax.ShapeDtypeStruct(shape, dtype, manual_axis_type=jax.typeof(like).mat)


def with_kernel_vjp(forward, backward):
  """BiGLA f(q, k, v, gf, gb) whose gradient is a kernel too.

  forward(q, k, v, gf, gb) -> o and backward(q, k, v, gf, gb, do) -> (dq, dk, dv, dgf, dgb).
  The residuals are the inputs alone: the backward kernel recomputes what it needs.
  """

  @jax.custom_vjp
  def bigla(q, k, v, gf, gb):
    return forward(q, k, v, gf, gb)

  def bigla_fwd(*args):
    return forward(*args), args

  def bigla_bwd(args, do):
    return backward(*args, do)

  bigla.defvjp(bigla_fwd, bigla_bwd)
  return bigla
