"""BiGLA forward as a Pallas Mosaic GPU kernel (Hopper: TMA and warpgroup MMA).

One warpgroup per (batch, head) walks the sequence in chunks of C = 64 tokens, the height of a
warpgroup MMA, twice: right to left carrying the backward-direction state (the state entering
each chunk is kept in shared memory), then left to right carrying the forward state and writing
the output. Every product is a warpgroup MMA with bf16 operands and fp32 accumulation.

In-chunk scores without a positive exponent. A chunk's pairs (t, j), t != j, are split by the
highest bit in which t and j differ: at level s (s = 32, 16, .., 1) t and j lie in the two halves
of one aligned block of 2s tokens, and the boundary b between the halves separates them. The decay
between them factors through b into two decays that each stay inside one half, both <= 1:
  forward (j < b <= t):  exp(sum_{b<=i<=t} gf_i) * exp(sum_{j<i<b} gf_i)
  backward (t < b <= j): exp(sum_{t<=i<b} gb_i) * exp(sum_{b<=i<j} gb_i).
Per level, one 0/1 matrix M_s (row r sums the gates between r and its boundary, r included)
turns the gates into all four exponents by an MMA, the decayed q (second-half rows forward,
first-half rows backward) and k (the other way round) give the level's scores by one MMA, and
a mask keeps the level's pairs. The diagonal, q_t . k_t, belongs to both directions. The exponent
sums come from MMAs of exact 0/1 matrices with bf16 gates (fp32 gates as bf16 high and low
parts), accumulated in fp32: no differences of large cumulative sums.

The gradient is pallas_gpu's backward kernel (the residuals are the inputs for both).
Inputs the kernel does not take run pallas_gpu whole (`supports`): q, k, v not bf16 (fp32 needs
fp32 MMAs, which are TF32 on Hopper), dk not in {32, 64}, dv not in {64, 128} (the
transposed state [dv, dk] is an MMA accumulator: dv rows, a multiple of 64), or sequences
whose backward states (one per chunk, kept in shared memory) pass SMEM_BUDGET.
Tokens past the end load as zeros (TMA fills out-of-bounds rows) and are not stored.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np

from pallas_kernels import pallas_gpu
from pallas_kernels.pallas_vjp import out_struct, with_kernel_vjp

try:  # Mosaic GPU is reached through plgpu.kernel (jax >= 0.10).
  from jax.experimental import pallas as pl
  from jax.experimental.pallas import mosaic_gpu as plgpu
except ImportError:  # pragma: no cover - a jax without Pallas Mosaic GPU
  plgpu = None

C = 64  # tokens per chunk: the M of a warpgroup MMA
LEVELS = (32, 16, 8, 4, 2, 1)
_SHIFTS = tuple(s.bit_length() - 1 for s in LEVELS)
SMEM_BUDGET = 200 * 1024  # of the 227 KiB a Hopper block may use, leaving room for scratch


def level_ones(r, i, shift):
  """Where level 2^shift's 0/1 matrix is 1, for row tokens r and column tokens i (numpy or
  in-kernel int32 arrays): row r sums the tokens from r to its boundary b(r), the start of the
  second half of r's block of 2^(shift+1) tokens: [b, r] for rows in the second half, [r, b) in
  the first."""
  second = ((r >> shift) & 1) == 1
  return (((r ^ i) >> shift) == 0) & jnp.where(second, i <= r, i >= r)


def level_pairs(r, i, shift):
  """Where (r, i) is a pair of level 2^shift: the halves of one block, split at its middle."""
  return ((r ^ i) >> shift) == 1


def level_matrices(chunk=C):
  """[len(LEVELS) + 2, chunk, chunk] 0/1 matrices (bf16-exact) that turn gates into exponents:
  one per level (level_ones), then the inclusive prefix sum (row r: [0, r]) and suffix sum
  (row r: [r, chunk)). The kernel builds them in registers; this is their host-side copy."""
  r, i = np.arange(chunk)[:, None], np.arange(chunk)[None, :]
  mats = [level_ones(r, i, shift) for shift in _SHIFTS] + [i <= r, i >= r]
  return np.stack([np.asarray(m) for m in mats]).astype(np.float32)


def supports(q, k, v, log_gate_fwd, log_gate_bwd):
  """Whether the Mosaic GPU forward handles these inputs."""
  _, length, _, dk = q.shape
  dv = v.shape[-1]
  return (plgpu is not None and all(x.dtype == jnp.bfloat16 for x in (q, k, v))
          and log_gate_fwd.dtype == log_gate_bwd.dtype
          and log_gate_fwd.dtype in (jnp.bfloat16, jnp.float32)
          and dk in (32, 64) and dv in (64, 128)
          and smem_bytes(length, dk, dv, log_gate_fwd.dtype) <= SMEM_BUDGET)


def smem_bytes(length, dk, dv, gate_dtype):
  """Shared memory of the forward kernel: the states entering every chunk, one chunk's buffers."""
  states = (-(-length // C) + 1) * dv * dk * 2
  gate_parts = 2 if gate_dtype == jnp.float32 else 1
  chunk = C * (2 * (2 * dk * 2 + dv * 2 + 2 * dk * jnp.dtype(gate_dtype).itemsize)
               + dv * 2 + gate_parts * 2 * dk * 2 + dk * 2 + dv * 2)
  return states + chunk


def _smem(shape, swizzle):
  """A bf16 MMA operand buffer. The two operands of an MMA must share their swizzle: every
  operand uses the widest one that the narrowest, [C, dk], allows."""
  return plgpu.SMEM(shape, jnp.bfloat16, transforms=(
      plgpu.TilingTransform((8, swizzle // 2)), plgpu.SwizzleTransform(swizzle)))


def _mma(shape, *operands):
  """sum of a @ b over the (a, b) operand pairs, fp32 [shape]."""
  def body(acc):
    for a, b in operands:
      plgpu.wgmma(acc, a, b)
    return acc[...]
  return pl.run_scoped(body, plgpu.ACC(shape, jnp.float32))


def _mma_into(init, *operands):
  """init + sum of a @ b."""
  def body(acc):
    for a, b in operands:
      plgpu.wgmma(acc, a, b)
  return pl.run_state(body)(plgpu.ACC.init(init))


def _t(ref):
  return plgpu.transpose_ref(ref, (1, 0))


def _iota(shape, dim):
  return plgpu.broadcasted_iota(jnp.int32, shape, dim, layout=plgpu.Layout.WGMMA)


def _load(ref):
  """An untiled chunk buffer in the MMA register layout (bank conflicts accepted)."""
  return plgpu.load(ref, (), layout=plgpu.Layout.WGMMA, optimized=False)


def _level_matrix(shift):
  """level_matrices()[level] of level 2^shift (traced), built in registers: an MMA operand
  need not live in memory."""
  ones = level_ones(_iota((C, C), 0), _iota((C, C), 1), shift)
  return jnp.where(ones, 1.0, 0.0).astype(jnp.bfloat16)


def _end_matrix(prefix):
  """The prefix-sum (else suffix-sum) matrix of level_matrices(), in registers."""
  r, i = _iota((C, C), 0), _iota((C, C), 1)
  return jnp.where(i <= r if prefix else i >= r, 1.0, 0.0).astype(jnp.bfloat16)


def _forward_kernel(q_ref, k_ref, v_ref, gf_ref, gb_ref, o_ref,
                    q_s, k_s, v_s, gin_s, v_mma, g_s, khat_s, states_s, o_s,
                    backward_bars, forward_bars, *, length, split_gates):
  """q_s, k_s, v_s, gin_s receive a chunk's tokens in one of two slots (gin_s: [2, 2, C, dk],
  forward and backward gates) untiled, so that TMA can fill and store any number of rows; v_mma
  and g_s are their copies in the MMA operand layout (g_s: [1 or 2, C, 2 dk]: [forward |
  backward] gates, bf16 high (and low) part). The left MMA operands (0/1 matrices, decayed q,
  scores) stay in registers.

  The two sweeps are one stream of 2 n_chunks steps (right to left, then left to right); each
  step prefetches the next step's tokens into the other slot.
  """
  b, h = jax.lax.axis_index("b"), jax.lax.axis_index("h")
  dk, dv = q_s.shape[-1], v_s.shape[-1]
  n_chunks = pl.cdiv(length, C)
  scale = dk ** -0.5

  def window(ref, n):
    return ref.at[b, pl.ds(n * C, C), h, :]

  def fetch(step):
    """Start loading the tokens of `step` (backward sweep: k, v, gb; forward: all five)."""
    slot = step % 2
    dsts = dict(q=(q_ref, q_s), k=(k_ref, k_s), v=(v_ref, v_s), gf=(gf_ref, gin_s.at[:, 0]),
                gb=(gb_ref, gin_s.at[:, 1]))

    def issue(n, names, bars):
      for name in names:
        src, dst = dsts[name]
        plgpu.copy_gmem_to_smem(window(src, n), dst.at[slot], bars.at[slot])

    @pl.when(step < n_chunks)
    def _():
      issue(n_chunks - 1 - step, ("k", "v", "gb"), backward_bars)

    @pl.when((step >= n_chunks) & (step < 2 * n_chunks))
    def _():
      issue(step - n_chunks, ("q", "k", "v", "gf", "gb"), forward_bars)

  def arrive(step, bars):
    """Wait for this step's tokens and start fetching the next step's into the other slot,
    whose last readers (the previous step) are done."""
    pl.when(step == 0)(lambda: fetch(step))  # (a traced step: the last window is ragged)
    plgpu.barrier_wait(bars.at[step % 2])
    plgpu.commit_smem()
    fetch(step + 1)
    return step % 2

  def gates(slot, directions):
    """The gates of `directions` as fp32 [C, dk] values; writes their MMA operands to g_s (the
    other direction's columns hold stale values, whose sums go unused)."""
    out = []
    for d in directions:
      g = _load(gin_s.at[slot, d]).astype(jnp.float32)
      hi = g.astype(jnp.bfloat16)
      g_s.at[0, :, pl.ds(d * dk, dk)][...] = hi
      if split_gates:
        g_s.at[1, :, pl.ds(d * dk, dk)][...] = (g - hi.astype(jnp.float32)).astype(jnp.bfloat16)
      out.append(g)
    return out

  def sums(mat):
    """mat @ [gf | gb], fp32 [C, dk] each, from the gates' bf16 part(s)."""
    both = _mma((C, 2 * dk), *[(mat, g_s.at[p]) for p in range(g_s.shape[0])])
    return both[:, :dk], both[:, dk:]

  def decayed_kv_state(state_t, k, g, exponent):
    """State (transposed, [dv, dk]) leaving the chunk, given the one entering it."""
    khat_s[...] = (k.astype(jnp.float32) * jnp.exp(exponent - g)).astype(jnp.bfloat16)
    plgpu.commit_smem()
    total = jnp.exp(jnp.sum(g, axis=0))
    return _mma_into(state_t * jax.lax.broadcast_in_dim(total, state_t.shape, (1,)),
                     (_t(v_mma), khat_s))

  zero_state = plgpu.layout_cast(jnp.zeros((dv, dk), jnp.float32), plgpu.Layout.WGMMA)

  # Right to left: the backward state entering each chunk from its right.
  def backward_step(i, state_t):
    n = n_chunks - 1 - i
    slot = arrive(i, backward_bars)
    states_s[n] = state_t.astype(jnp.bfloat16)
    v_mma[...] = _load(v_s.at[slot])
    gb, = gates(slot, (1,))
    plgpu.commit_smem()
    # Keys reach the chunk's left end through the gates before them: prefix sum minus own gate.
    _, prefix_b = sums(_end_matrix(prefix=True))
    return decayed_kv_state(state_t, _load(k_s.at[slot]), gb, prefix_b)

  jax.lax.fori_loop(0, n_chunks, backward_step, zero_state)

  def forward_step(n, state_t):
    slot = arrive(n_chunks + n, forward_bars)
    v_mma[...] = _load(v_s.at[slot])
    gf, gb = gates(slot, (0, 1))
    states_s[n_chunks] = state_t.astype(jnp.bfloat16)  # forward state entering
    plgpu.commit_smem()
    q = (_load(q_s.at[slot]).astype(jnp.float32) * scale).astype(jnp.bfloat16)
    k = _load(k_s.at[slot])

    # In-chunk scores, level by level; the diagonal counts for both directions.
    # A loop, not unrolled: unrolled levels hoist their masks and run out of registers.
    def level_step(level, scores):
      shift = _SHIFTS[0] - level
      ef, eb = sums(_level_matrix(shift))
      second = (jnp.right_shift(_iota((C, dk), 0), shift) & 1) == 1
      q_hat = (q.astype(jnp.float32) * jnp.exp(jnp.where(second, ef, eb))).astype(jnp.bfloat16)
      khat_s[...] = (k.astype(jnp.float32) * jnp.exp(jnp.where(second, eb - gb, ef - gf))
                     ).astype(jnp.bfloat16)
      plgpu.commit_smem()
      level_scores = _mma((C, C), (q_hat, _t(khat_s)))
      keep = level_pairs(_iota((C, C), 0), _iota((C, C), 1), shift)
      return jnp.where(keep, level_scores, scores)

    diag = jnp.sum(q.astype(jnp.float32) * k.astype(jnp.float32), axis=1)
    row, col = _iota((C, C), 0), _iota((C, C), 1)
    scores = jnp.where(row == col, 2 * jax.lax.broadcast_in_dim(diag, (C, C), (0,)), 0.0)
    scores = jax.lax.fori_loop(0, len(LEVELS), level_step, scores)

    # Inter-chunk reads: forward from the left end, backward from the right end.
    prefix_f, _ = sums(_end_matrix(prefix=True))
    suffix_f, suffix_b = sums(_end_matrix(prefix=False))
    out = _mma((C, dv), (scores.astype(jnp.bfloat16), v_mma),
               ((q.astype(jnp.float32) * jnp.exp(prefix_f)).astype(jnp.bfloat16),
                _t(states_s.at[n_chunks])),
               ((q.astype(jnp.float32) * jnp.exp(suffix_b)).astype(jnp.bfloat16),
                _t(states_s.at[n])))
    plgpu.wait_smem_to_gmem(0, wait_read_only=True)  # the previous chunk's store has read o_s
    o_s[...] = (out * 0.5).astype(o_s.dtype)
    plgpu.commit_smem()
    plgpu.copy_smem_to_gmem(o_s, window(o_ref, n))
    # Keys reach the chunk's right end through the gates after them: suffix sum minus own gate.
    return decayed_kv_state(state_t, k, gf, suffix_f)

  jax.lax.fori_loop(0, n_chunks, forward_step, zero_state)
  plgpu.wait_smem_to_gmem(0)


def bigla_forward(q, k, v, log_gate_fwd, log_gate_bwd):
  """BiGLA output [B, L, H, dv] (see pallas_kernels.bigla); inputs as `supports` requires."""
  batch, length, heads, dk = q.shape
  dv = v.shape[-1]
  gate_dtype = log_gate_fwd.dtype
  split_gates = gate_dtype == jnp.float32
  n_chunks = pl.cdiv(length, C)
  swizzle = min(128, 2 * dk)
  kernel = plgpu.kernel(
      functools.partial(_forward_kernel, length=length, split_gates=split_gates),
      out_type=out_struct(v, v.shape, v.dtype),
      grid=(batch, heads),
      grid_names=("b", "h"),
      scratch_types=[
          plgpu.SMEM((2, C, dk), jnp.bfloat16),  # q, two slots
          plgpu.SMEM((2, C, dk), jnp.bfloat16),  # k
          plgpu.SMEM((2, C, dv), jnp.bfloat16),  # v
          plgpu.SMEM((2, 2, C, dk), gate_dtype),  # gates
          _smem((C, dv), swizzle),  # v as an MMA operand
          _smem((2 if split_gates else 1, C, 2 * dk), swizzle),  # gates as MMA operands
          _smem((C, dk), swizzle),  # decayed k
          _smem((n_chunks + 1, dv, dk), swizzle),  # backward states entering; forward
          plgpu.SMEM((C, dv), v.dtype),  # output chunk
          plgpu.Barrier(num_arrivals=3, num_barriers=2),  # k, v, gb
          plgpu.Barrier(num_arrivals=5, num_barriers=2),  # q, k, v, gf, gb
      ],
      compiler_params=plgpu.CompilerParams(
          approx_math=True, lowering_semantics=plgpu.LoweringSemantics.Lane),
  )
  return kernel(q, k, v, log_gate_fwd, log_gate_bwd)


def bigla_mosaic_gpu(q, k, v, log_gate_fwd, log_gate_bwd, *, chunk_size=None):
  """BiGLA (see pallas_kernels.bigla): the Mosaic GPU forward, pallas_gpu's backward kernels."""
  if chunk_size not in (None, C):
    raise ValueError(f"mosaic_gpu works in chunks of {C} tokens, got chunk_size={chunk_size}")
  args = (q, k, v, log_gate_fwd, log_gate_bwd)
  if not supports(*args):
    return pallas_gpu.bigla_pallas_gpu(*args)
  # pallas_gpu's backward kernels take the same residuals (the inputs).
  backward = functools.partial(pallas_gpu._backward, interpret=False)
  return with_kernel_vjp(bigla_forward, backward)(*args)
