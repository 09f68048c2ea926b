"""BiGLA as Pallas Mosaic TPU kernels: both directions in one kernel, forward and backward.

Verified in interpret mode on the CPU (pltpu.InterpretParams) and by lowering to Mosaic through
jax.export; never compiled by libtpu, run or timed on a TPU (we have none).

Layout: [batch, length, heads, d] arrays are viewed (a free reshape) as [batch, length, heads*d].
A block holds T tokens of a group of G heads whose G*d lanes are a multiple of 128 (else all the
heads), so that DMAs and stores are lane-dense. Grid (batch, head group, phase, T-block), the last
two "arbitrary" (sequential):
- phase 0 walks the T-blocks right to left, carrying the backward-direction recurrences (the
  backward state; in the backward pass also the forward adjoint) in VMEM scratch, and records
  what enters each T-block;
- phase 1 walks them left to right. Per head, a right-to-left sweep over the block's 16-token
  chunks, starting from the recorded values, stages their reads from the right in VMEM; the
  left-to-right sweep then finishes each chunk with the forward-direction recurrences, which
  are carried across grid steps in VMEM scratch. Both sweeps are those of pallas_sweeps.
Outputs map to block 0 throughout phase 0, so nothing is written back before phase 1 fills it.
"""
import functools

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import tpu as pltpu

from pallas_kernels import pallas_chunk_math as cm
from pallas_kernels import pallas_sweeps as sweeps
from pallas_kernels.pallas_vjp import out_struct, with_kernel_vjp

C = cm.CHUNK
DEFAULT_BLOCK = 128  # tokens per grid step


class _HeadIO:
  """pallas_sweeps' view of one head in the current T-block: lanes [head*d, (head+1)*d) of each
  [T, G*d] block; rows past the sequence's end read as zeros. Stages are [T, d] VMEM scratch."""

  prefix_sum = staticmethod(cm.prefix_sum_by_matmul)  # Mosaic TPU has no cumsum

  def __init__(self, head, first_row, length, scale, refs, stages):
    self.head, self.first_row, self.length, self.scale = head, first_row, length, scale
    self.refs, self.stages = refs, stages

  def _at(self, name, n):
    ref, d = self.refs[name]
    return ref.at[pl.ds(pl.multiple_of(n * C, C), C), pl.ds(self.head * d, d)]

  def load(self, name, n):
    rows = self.first_row + n * C + jax.lax.broadcasted_iota(jnp.int32, (C, 1), 0)
    # The edge block's rows past the end hold garbage, possibly NaN: select, don't multiply.
    return jnp.where(rows < self.length, self._at(name, n)[...].astype(jnp.float32), 0.0)

  def store(self, name, n, x):
    view = self._at(name, n)
    view[...] = x.astype(view.dtype)

  def stage(self, name, n, x):
    self.stages[name][pl.ds(pl.multiple_of(n * C, C), C), :] = x

  def staged(self, name, n):
    return self.stages[name][pl.ds(pl.multiple_of(n * C, C), C), :]


def _block_index():
  """The T-block of this grid step: right to left in phase 0, left to right in phase 1."""
  phase, t = pl.program_id(2), pl.program_id(3)
  return jnp.where(phase == 0, pl.num_programs(3) - 1 - t, t)


def _forward_kernel(q_ref, k_ref, v_ref, gf_ref, gb_ref, o_ref,
                    state_f, state_b, entering_b, stage_o, *, length, heads, dk, dv, dtype):
  phase, block = pl.program_id(2), _block_index()
  tokens = o_ref.shape[0]
  n_chunks = tokens // C
  refs = dict(q=(q_ref, dk), k=(k_ref, dk), v=(v_ref, dv), gf=(gf_ref, dk), gb=(gb_ref, dk),
              o=(o_ref, dv))

  def io(h):
    return _HeadIO(h, block * tokens, length, dk ** -0.5, refs, dict(o=stage_o))

  @pl.when(pl.program_id(3) == 0)
  def _():  # a phase starts: its recurrences start from zero
    state_f[...] = jnp.zeros_like(state_f)
    state_b[...] = jnp.zeros_like(state_b)

  @pl.when(phase == 0)
  def _():
    for h in range(heads):
      entering_b[block, h] = state_b[h]
      state_b[h] = sweeps.sweep(sweeps.carry_backward_state, io(h), n_chunks, state_b[h], dtype,
                                reverse=True)

  @pl.when(phase == 1)
  def _():
    for h in range(heads):
      sweeps.sweep(sweeps.forward_stage, io(h), n_chunks, entering_b[block, h], dtype,
                   reverse=True)
      state_f[h] = sweeps.sweep(sweeps.forward_output, io(h), n_chunks, state_f[h], dtype,
                                reverse=False)


def _backward_kernel(q_ref, k_ref, v_ref, gf_ref, gb_ref, do_ref,
                     dq_ref, dk_ref, dv_ref, dgf_ref, dgb_ref,
                     state_b, adjoint_f, entering_b, entering_af,
                     state_f, adjoint_b, dgf_sum, dgb_sum, stage_dq, stage_dk, stage_dv,
                     *, length, heads, dk, dv, dtype):
  phase, block = pl.program_id(2), _block_index()
  tokens = dq_ref.shape[0]
  n_chunks = tokens // C
  refs = dict(q=(q_ref, dk), k=(k_ref, dk), v=(v_ref, dv), gf=(gf_ref, dk), gb=(gb_ref, dk),
              do=(do_ref, dv), dq=(dq_ref, dk), dk=(dk_ref, dk), dv=(dv_ref, dv),
              dgf=(dgf_ref, dk), dgb=(dgb_ref, dk))
  stages = dict(dq=stage_dq, dk=stage_dk, dv=stage_dv)

  def io(h):
    return _HeadIO(h, block * tokens, length, dk ** -0.5, refs, stages)

  @pl.when(pl.program_id(3) == 0)
  def _():  # a phase starts: its recurrences and sums start from zero
    for ref in (state_b, adjoint_f, state_f, adjoint_b, dgf_sum, dgb_sum):
      ref[...] = jnp.zeros_like(ref)

  @pl.when(phase == 0)
  def _():
    def carry_both(x, n, carry, dtype):
      return (sweeps.carry_backward_state(x, n, carry[0], dtype),
              sweeps.carry_forward_adjoint(x, n, carry[1], dtype))

    for h in range(heads):
      entering_b[block, h] = state_b[h]
      entering_af[block, h] = adjoint_f[h]
      state_b[h], adjoint_f[h] = sweeps.sweep(carry_both, io(h), n_chunks,
                                              (state_b[h], adjoint_f[h]), dtype, reverse=True)

  @pl.when(phase == 1)
  def _():
    for h in range(heads):
      sweeps.sweep(sweeps.backward_stage, io(h), n_chunks,
                   (entering_b[block, h], entering_af[block, h]), dtype, reverse=True)
      carry = sweeps.sweep(sweeps.backward_output, io(h), n_chunks,
                           (state_f[h], adjoint_b[h], dgf_sum[h], dgb_sum[h]), dtype,
                           reverse=False)
      state_f[h], adjoint_b[h], dgf_sum[h], dgb_sum[h] = carry


def _head_group(heads, dk, dv):
  """Fewest heads whose dk and dv lanes are both multiples of 128; all of them if none are."""
  for group in range(1, heads + 1):
    if heads % group == 0 and (group * dk) % 128 == 0 and (group * dv) % 128 == 0:
      return group
  return heads


def _call(kernel, tokens, outputs, scratch, *, block, interpret, phase0_inputs):
  """pallas_call over (batch, head group, phase, T-block) with [B, L, H, d] token arrays.

  scratch(group, n_blocks, block, dk, dv) lists the fp32 VMEM scratch shapes; phase0_inputs
  are the indices of the inputs that phase 0 reads.
  """
  batch, length, heads, dk = tokens[0].shape
  dv = tokens[2].shape[-1]
  group = _head_group(heads, dk, dv)
  block = min(block, pl.cdiv(length, C) * C)
  n_blocks = pl.cdiv(length, block)

  def spec(x, used_in_phase0):
    def index(b, g, phase, t):
      if used_in_phase0:
        return b, jnp.where(phase == 0, n_blocks - 1 - t, t), g
      return b, t * phase, g  # parked on block 0 during phase 0: fetched once, never written
    return pl.BlockSpec((None, block, group * x.shape[-1]), index)

  flat = lambda x: x.reshape(*x.shape[:2], -1)
  dtype = jnp.float32 if tokens[0].dtype == jnp.float32 else jnp.bfloat16
  results = pl.pallas_call(
      functools.partial(kernel, length=length, heads=group, dk=dk, dv=dv, dtype=dtype),
      grid=(batch, heads // group, 2, n_blocks),
      in_specs=[spec(x, i in phase0_inputs) for i, x in enumerate(tokens)],
      out_specs=[spec(x, False) for x in outputs],
      out_shape=[out_struct(tokens[0], flat(x).shape, x.dtype) for x in outputs],
      scratch_shapes=[pltpu.VMEM(shape, jnp.float32)
                      for shape in scratch(group, n_blocks, block, dk, dv)],
      compiler_params=pltpu.CompilerParams(
          dimension_semantics=("parallel", "parallel", "arbitrary", "arbitrary")),
      interpret=pltpu.InterpretParams() if interpret else False,
  )(*map(flat, tokens))
  return [r.reshape(x.shape) for r, x in zip(results, outputs)]


def _forward(q, k, v, gf, gb, *, block, interpret):
  def scratch(group, n_blocks, block, dk, dv):
    state = (group, dk, dv)
    return [state, state, (n_blocks, *state), (block, dv)]

  (o,) = _call(_forward_kernel, (q, k, v, gf, gb), (v,), scratch,
               block=block, interpret=interpret, phase0_inputs=(1, 2, 4))  # k, v, gb
  return o


def _backward(q, k, v, gf, gb, do, *, block, interpret):
  def scratch(group, n_blocks, block, dk, dv):
    state, entering, gate_sum = (group, dk, dv), (n_blocks, group, dk, dv), (group, 1, dk)
    return [state, state, entering, entering, state, state, gate_sum, gate_sum,
            (block, dk), (block, dk), (block, dv)]

  return tuple(_call(_backward_kernel, (q, k, v, gf, gb, do), (q, k, v, gf, gb), scratch,
                     block=block, interpret=interpret, phase0_inputs=range(6)))


def bigla_pallas_tpu(q, k, v, log_gate_fwd, log_gate_bwd, *, chunk_size=None, interpret=False):
  """BiGLA (see pallas_kernels.bigla) as Pallas Mosaic TPU kernels, differentiable.

  chunk_size: tokens per grid step (a multiple of 16; default 128).
  """
  block = chunk_size or DEFAULT_BLOCK
  if block % C:
    raise ValueError(f"pallas_tpu: chunk_size must be a multiple of {C}, got {chunk_size}")
  fn = with_kernel_vjp(functools.partial(_forward, block=block, interpret=interpret),
                       functools.partial(_backward, block=block, interpret=interpret))
  return fn(q, k, v, log_gate_fwd, log_gate_bwd)
