"""BiGLA as Pallas Triton kernels for GPUs: both directions in one launch, forward and backward.

One program per (batch, head, segment of the sequence) walks its segment in chunks of 16 tokens,
twice:
1. right to left, carrying the backward-direction state; what each chunk receives from the chunks
   to its right is staged in its output rows (Triton has no scratch memory);
2. left to right, carrying the forward-direction state; the in-chunk score matrix of both
   directions multiplies v once, and the staged rows are added in.
The backward kernel has the same shape: its right-to-left sweep carries the backward state and
the forward direction's adjoint, its left-to-right sweep the forward state and the backward
direction's adjoint, computes the in-chunk gradients and integrates the gate gradients.

A sequence is one segment unless there are too few (batch, head) pairs to fill the GPU. Then a
summary kernel first computes, per segment, what each recurrence gains across it from zero and
its total log-decay; each program combines the summaries of the other segments into the states
entering its own. The gate gradients need a prefix sum over the whole sequence: its value at a
segment's first token is a product of the states met there (see `_gate_offsets`).

Arrays stay in the caller's [batch, length, heads, d] layout: the blocks are strided views, so
there is no transpose or pad around the kernels. Ragged tails load as zeros and are not stored.
"""
import functools

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as pltriton

from pallas_kernels import pallas_chunk_math as cm
from pallas_kernels import pallas_sweeps as sweeps
from pallas_kernels.pallas_vjp import out_struct, with_kernel_vjp

C = cm.CHUNK
TARGET_PROGRAMS = 512  # two waves of the two programs per SM that fit an H100 (register-bound)
MIN_SEGMENT = 128  # shorter segments cost more in summaries than they win in parallelism


def _segment():
  """This program's segment: the last axis of the grid (batch, head, segment)."""
  return pl.program_id(2)


class _SegmentIO:
  """pallas_sweeps' view of this program's segment: chunk n's rows of each [tokens, d] block, as
  fp32, rows past the sequence's end reading as zeros. Partial results are staged in the output
  rows themselves."""

  def __init__(self, length, seg, prefix_sum, **refs):
    self.refs = refs
    self.prefix_sum = prefix_sum
    self.valid = length - _segment() * seg
    self.scale = refs["q"].shape[-1] ** -0.5

  def _at(self, name, n):
    start = pl.multiple_of(n * C, C)
    mask = (start + jnp.arange(C) < self.valid)[:, None]
    return self.refs[name].at[pl.ds(start, C), :], mask

  def load(self, name, n):
    view, mask = self._at(name, n)
    return pltriton.load(view, mask=mask, other=0).astype(jnp.float32)

  def store(self, name, n, x):
    view, mask = self._at(name, n)
    pltriton.store(view, x.astype(self.refs[name].dtype), mask=mask)

  stage, staged = store, load


def _prefix_sum(backward):
  """The in-chunk prefix sum for a kernel of one pass. The backward kernel runs out of registers,
  and Triton's fp32 dot (FMA units, [C, C] operands) costs it spills (benchmarks/
  triton_registers.py): it takes a scan. The forward kernel is 16% faster with the dot (measured
  on an H100, BENCHMARKS.md)."""
  return cm.prefix_sum_by_scan if backward else cm.prefix_sum_by_matmul


def _sync_threads(barrier):
  """Make the staged rows visible to every thread before they are read back (interpret mode
  runs one thread and has no barrier)."""
  if barrier:
    pltriton.debug_barrier()


def _entering(u_ref, t_ref, from_left):
  """The state entering this program's segment from the segments on one side.

  u_ref [segments, dk, dv]: what each segment adds to the state, from zero; t_ref [segments, dk, 1]
  its total log-decay. The nearest segment comes first, so the accumulated decay only shrinks.
  """
  p, n_seg = _segment(), u_ref.shape[0]

  def add(i, carry):
    state, log_decay = carry
    src = p - 1 - i if from_left else p + 1 + i
    return state + jnp.exp(log_decay) * u_ref[src], log_decay + t_ref[src]

  init = (jnp.zeros(u_ref.shape[1:], jnp.float32), jnp.zeros(t_ref.shape[1:], jnp.float32))
  return jax.lax.fori_loop(0, p if from_left else n_seg - 1 - p, add, init)[0]


def _summary_kernel(q_ref, k_ref, v_ref, gf_ref, gb_ref, *refs, length, seg, dtype, adjoints):
  """Per segment, from zero: the state each recurrence leaves it with, and its log-decays.

  Rightward recurrences take the chunks left to right, leftward ones right to left, in the same
  loop (independent chains: they overlap).
  """
  do_ref, *outs = refs if adjoints else (None, *refs)
  *u_refs, tf_ref, tb_ref = outs
  io = _SegmentIO(length, seg, _prefix_sum(adjoints), q=q_ref, k=k_ref, v=v_ref, gf=gf_ref,
                  gb=gb_ref, do=do_ref)
  n_chunks = seg // C

  def step(i, carry):
    states, tf, tb = carry
    left, right = i, n_chunks - 1 - i
    new = [sweeps.carry_forward_state(io, left, states[0], dtype),
           sweeps.carry_backward_state(io, right, states[1], dtype)]
    if adjoints:
      new += [sweeps.carry_forward_adjoint(io, right, states[2], dtype),
              sweeps.carry_backward_adjoint(io, left, states[3], dtype)]
    return (new, tf + jnp.sum(io.load("gf", left), axis=0)[:, None],
            tb + jnp.sum(io.load("gb", right), axis=0)[:, None])

  zero = jnp.zeros(u_refs[0].shape, jnp.float32)
  total = jnp.zeros(tf_ref.shape, jnp.float32)
  states, tf, tb = jax.lax.fori_loop(0, n_chunks, step, ([zero] * len(u_refs), total, total))
  for ref, state in zip(u_refs, states):
    ref[...] = state
  tf_ref[...], tb_ref[...] = tf, tb


def _forward_kernel(q_ref, k_ref, v_ref, gf_ref, gb_ref, *rest, length, seg, dtype, barrier):
  *summaries, o_ref = rest
  io = _SegmentIO(length, seg, _prefix_sum(backward=False), q=q_ref, k=k_ref, v=v_ref,
                  gf=gf_ref, gb=gb_ref, o=o_ref)
  n_chunks = seg // C
  if summaries:
    u_f, u_b, t_f, t_b = summaries
    state_f, state_b = _entering(u_f, t_f, from_left=True), _entering(u_b, t_b, from_left=False)
  else:
    state_f = state_b = jnp.zeros((q_ref.shape[-1], v_ref.shape[-1]), jnp.float32)

  sweeps.sweep(sweeps.forward_stage, io, n_chunks, state_b, dtype, reverse=True)
  _sync_threads(barrier)
  sweeps.sweep(sweeps.forward_output, io, n_chunks, state_f, dtype, reverse=False)


def _gate_offsets(state_f, adjoint_f, state_b, adjoint_b):
  """The gate gradients' prefix sums over the tokens before the segment, as [1, dk] rows.

  The forward one is d loss / d gf at the segment's first token, a sum over the pairs that cross
  its left boundary: sum_v S[k, v] dS[k, v] with S the forward state entering the segment and
  dS its gradient there. The backward one is d loss / d gb at the token before the segment:
  the backward state leaving the segment times the backward adjoint entering it.
  """
  off_f = jnp.sum(state_f * adjoint_f, axis=1)[None, :]
  off_b = jnp.sum(state_b * adjoint_b, axis=1)[None, :]
  return off_f, off_b


def _backward_kernel(q_ref, k_ref, v_ref, gf_ref, gb_ref, do_ref, *rest,
                     length, seg, dtype, barrier):
  *summaries, dq_ref, dk_ref, dv_ref, dgf_ref, dgb_ref = rest
  io = _SegmentIO(length, seg, _prefix_sum(backward=True), q=q_ref, k=k_ref, v=v_ref,
                  gf=gf_ref, gb=gb_ref, do=do_ref, dq=dq_ref, dk=dk_ref, dv=dv_ref, dgf=dgf_ref,
                  dgb=dgb_ref)
  n_chunks = seg // C
  if summaries:
    u_sf, u_sb, u_af, u_ab, t_f, t_b = summaries
    state_f, adjoint_b = _entering(u_sf, t_f, True), _entering(u_ab, t_b, True)
    state_b, adjoint_f = _entering(u_sb, t_b, False), _entering(u_af, t_f, False)
  else:
    state_f = adjoint_b = state_b = adjoint_f = jnp.zeros(
        (q_ref.shape[-1], v_ref.shape[-1]), jnp.float32)

  state_b, adjoint_f = sweeps.sweep(sweeps.backward_stage, io, n_chunks, (state_b, adjoint_f),
                                    dtype, reverse=True)
  _sync_threads(barrier)
  off_f, off_b = _gate_offsets(state_f, adjoint_f, state_b, adjoint_b)
  sweeps.sweep(sweeps.backward_output, io, n_chunks, (state_f, adjoint_b, -off_f, off_b), dtype,
               reverse=False)


def _segment_length(sequences, length):
  """Tokens per segment, given the programs per segment (batch x heads)."""
  n_seg = min(pl.cdiv(TARGET_PROGRAMS, sequences), pl.cdiv(length, MIN_SEGMENT))
  return pl.cdiv(pl.cdiv(length, n_seg), C) * C


def _compiler_params(dk, dv):
  # Big states and [C, C, dk] pair tensors need more threads to stay out of local memory; three
  # stages let the next chunk's loads fly during this chunk's math (measured on an H100).
  return pltriton.CompilerParams(num_warps=4 if dk * dv <= 2048 else 8, num_stages=3)


def _call(kernel, tokens, summaries, outputs, *, interpret, **params):
  """pallas_call over (batch, head, segment) with [batch, length, heads, d] token arrays."""
  batch, length, heads, dk = tokens[0].shape
  dv = tokens[2].shape[-1]
  seg = _segment_length(batch * heads, length)
  n_seg = pl.cdiv(length, seg)

  def token_spec(d):
    return pl.BlockSpec((None, seg, None, d), lambda b, h, p: (b, p, h, 0))

  def summary_spec(shape):  # all segments of one (batch, head)
    return pl.BlockSpec((None, None, *shape[2:]), lambda b, h, p: (b, h, 0, 0, 0))

  def out_spec(x):
    if x.ndim == 4:
      return token_spec(x.shape[-1])
    return pl.BlockSpec((None, None, None, *x.shape[3:]), lambda b, h, p: (b, h, p, 0, 0))

  dtype = jnp.float32 if tokens[0].dtype == jnp.float32 else jnp.bfloat16
  return pl.pallas_call(
      functools.partial(kernel, length=length, seg=seg, dtype=dtype, **params),
      grid=(batch, heads, n_seg),
      in_specs=([token_spec(x.shape[-1]) for x in tokens]
                + [summary_spec(s.shape) for s in summaries]),
      out_specs=[out_spec(x) for x in outputs],
      out_shape=[out_struct(tokens[0], x.shape, x.dtype) for x in outputs],
      compiler_params=_compiler_params(dk, dv),
      interpret=interpret,
  )(*tokens, *summaries)


def _summaries(tokens, adjoints, interpret):
  """Per-segment summaries (see _summary_kernel), or none when the sequence is one segment."""
  batch, length, heads, dk = tokens[0].shape
  dv = tokens[2].shape[-1]
  n_seg = pl.cdiv(length, _segment_length(batch * heads, length))
  if n_seg == 1:
    return ()
  states = jax.ShapeDtypeStruct((batch, heads, n_seg, dk, dv), jnp.float32)
  totals = jax.ShapeDtypeStruct((batch, heads, n_seg, dk, 1), jnp.float32)
  n_states = 4 if adjoints else 2
  return tuple(_call(_summary_kernel, tokens, (), (states,) * n_states + (totals, totals),
                     interpret=interpret, adjoints=adjoints))


def _forward(q, k, v, gf, gb, *, interpret):
  tokens = (q, k, v, gf, gb)
  summaries = _summaries(tokens, False, interpret)
  (o,) = _call(_forward_kernel, tokens, summaries, (v,), interpret=interpret,
               barrier=not interpret)
  return o


def _backward(q, k, v, gf, gb, do, *, interpret):
  tokens = (q, k, v, gf, gb, do)
  summaries = _summaries(tokens, True, interpret)
  return tuple(_call(_backward_kernel, tokens, summaries, (q, k, v, gf, gb),
                     interpret=interpret, barrier=not interpret))


def bigla_pallas_gpu(q, k, v, log_gate_fwd, log_gate_bwd, *, chunk_size=None, interpret=False):
  """BiGLA (see pallas_kernels.bigla) as Pallas Triton kernels, differentiable."""
  if chunk_size not in (None, C):
    raise ValueError(f"pallas_gpu works in chunks of {C} tokens, got chunk_size={chunk_size}")
  fn = with_kernel_vjp(functools.partial(_forward, interpret=interpret),
                       functools.partial(_backward, interpret=interpret))
  return fn(q, k, v, log_gate_fwd, log_gate_bwd)
