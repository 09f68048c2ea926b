"""The per-chunk steps of the BiGLA kernels' two sweeps, shared by the GPU and TPU kernels.

Every kernel walks a head's chunks twice. The right-to-left sweep carries the backward-direction
recurrences and stages what each chunk receives from its right; the left-to-right sweep carries
the forward-direction ones, adds the in-chunk terms and the staged values, and writes the result.

The carry_* steps only carry one recurrence across chunk n (for sweeps that stage nothing).
A step sees its kernel's memory through `io`:
  io.load(name, n)      chunk n of input `name` (q, k, v, gf, gb, do), fp32, zero past the end;
  io.stage(name, n, x)  stash a partial result of output `name` for chunk n;
  io.staged(name, n)    read it back (fp32);
  io.store(name, n, x)  write the final value of output `name` for chunk n;
  io.scale              dk^-1/2;
  io.prefix_sum(x)      the inclusive prefix sum over a chunk's tokens that suits the backend
                        (one of pallas_chunk_math's prefix_sum_by_*).
"""
import jax
import jax.numpy as jnp

from pallas_kernels import pallas_chunk_math as cm


def sweep(step, io, n_chunks, init, dtype, *, reverse):
  """Apply step(io, n, carry, dtype) to chunks 0..n_chunks-1, right to left if `reverse`."""
  def body(i, carry):
    return step(io, n_chunks - 1 - i if reverse else i, carry, dtype)
  return jax.lax.fori_loop(0, n_chunks, body, init)


def carry_forward_state(io, n, state, dtype):
  fwd, _ = cm.forward_decay(io.load("gf", n), io.prefix_sum)
  return cm.carry_state(state, io.load("k", n), io.load("v", n), fwd, dtype)


def carry_backward_state(io, n, state, dtype):
  bwd, _ = cm.backward_decay(io.load("gb", n), io.prefix_sum)
  return cm.carry_state(state, io.load("k", n), io.load("v", n), bwd, dtype)


def carry_forward_adjoint(io, n, adjoint, dtype):
  fwd, _ = cm.forward_decay(io.load("gf", n), io.prefix_sum)
  return cm.carry_adjoint(adjoint, io.load("q", n) * io.scale, io.load("do", n) / 2, fwd, dtype)


def carry_backward_adjoint(io, n, adjoint, dtype):
  bwd, _ = cm.backward_decay(io.load("gb", n), io.prefix_sum)
  return cm.carry_adjoint(adjoint, io.load("q", n) * io.scale, io.load("do", n) / 2, bwd, dtype)


def forward_stage(io, n, state_b, dtype):
  """Stage chunk n's read of the backward state entering from its right; carry that state."""
  q = io.load("q", n) * io.scale
  bwd, _ = cm.backward_decay(io.load("gb", n), io.prefix_sum)
  io.stage("o", n, cm.state_output(q, bwd, state_b, dtype))
  return cm.carry_state(state_b, io.load("k", n), io.load("v", n), bwd, dtype)


def forward_output(io, n, state_f, dtype):
  """Chunk n's output: in-chunk scores of both directions, forward state, staged backward read."""
  q, k, v = io.load("q", n) * io.scale, io.load("k", n), io.load("v", n)
  fwd, cf = cm.forward_decay(io.load("gf", n), io.prefix_sum)
  _, cb = cm.backward_decay(io.load("gb", n), io.prefix_sum)
  a = cm.scores(q, k, cm.pair_decays(cf, cb))
  o = cm.dot(a, v, dtype) + cm.state_output(q, fwd, state_f, dtype) + io.staged("o", n)
  io.store("o", n, o / 2)
  return cm.carry_state(state_f, k, v, fwd, dtype)


def _load_for_grads(io, n):
  # g is the cotangent of the unhalved sum of the two directions.
  return (io.load("q", n), io.load("k", n), io.load("v", n), io.load("do", n) / 2,
          io.load("gf", n), io.load("gb", n))


def backward_stage(io, n, carry, dtype):
  """Stage chunk n's gradients from its right (dq from the backward state, dk and dv from the
  forward adjoint); carry both against the sequence."""
  state_b, adjoint_f = carry
  q, k, v, g, gf, gb = _load_for_grads(io, n)
  fwd, _ = cm.forward_decay(gf, io.prefix_sum)
  bwd, _ = cm.backward_decay(gb, io.prefix_sum)
  io.stage("dq", n, io.scale * cm.state_dq(g, bwd, state_b, dtype))
  io.stage("dk", n, cm.adjoint_dk(v, fwd, adjoint_f, dtype))
  io.stage("dv", n, cm.adjoint_dv(k, fwd, adjoint_f, dtype))
  return (cm.carry_state(state_b, k, v, bwd, dtype),
          cm.carry_adjoint(adjoint_f, q * io.scale, g, fwd, dtype))


def backward_output(io, n, carry, dtype):
  """Chunk n's five gradients. carry: the forward state, the backward adjoint and the running
  sums of the gate gradients' integrands ([1, dk] each), all entering from the left."""
  state_f, adjoint_b, dgf_sum, dgb_sum = carry
  q, k, v, g, gf, gb = _load_for_grads(io, n)
  scale = io.scale
  qs = q * scale
  fwd, cf = cm.forward_decay(gf, io.prefix_sum)
  bwd, cb = cm.backward_decay(gb, io.prefix_sum)
  # The state terms first, so that the entering state and adjoint are dead before the
  # [C, C, dk] pair tensors (fewer registers live at once in the GPU kernel).
  dq_state = cm.state_dq(g, fwd, state_f, dtype)
  dk_adjoint = cm.adjoint_dk(v, bwd, adjoint_b, dtype)
  dv_adjoint = cm.adjoint_dv(k, bwd, adjoint_b, dtype)
  carried = (cm.carry_state(state_f, k, v, fwd, dtype),
             cm.carry_adjoint(adjoint_b, qs, g, bwd, dtype))
  pair = cm.pair_decays(cf, cb)
  a = cm.scores(qs, k, pair)
  intra = cm.intra_grads(qs, k, pair, cm.dot(g, v.T, dtype))

  dq_f = scale * (intra.dq_f + dq_state)
  dq_b = scale * intra.dq_b + io.staged("dq", n)
  dk_f = intra.dk_f + io.staged("dk", n)
  dk_b = intra.dk_b + dk_adjoint
  dv = cm.dot(a.T, g, dtype) + dv_adjoint + io.staged("dv", n)
  io.store("dq", n, dq_f + dq_b + scale * intra.dq_diag)
  io.store("dk", n, dk_f + dk_b + intra.dk_diag)
  io.store("dv", n, dv)

  # d(log-decay) per direction: the forward one is minus the exclusive prefix sum of
  # q dq_f - k dk_f (equal to its suffix sum: the whole sum is zero), the backward one the
  # inclusive prefix sum of q dq_b - k dk_b.
  r_f = q * dq_f - k * dk_f
  r_b = q * dq_b - k * dk_b
  io.store("dgf", n, -(dgf_sum + io.prefix_sum(r_f) - r_f))
  io.store("dgb", n, dgb_sum + io.prefix_sum(r_b))
  return (*carried,
          dgf_sum + jnp.sum(r_f, axis=0)[None, :],
          dgb_sum + jnp.sum(r_b, axis=0)[None, :])
