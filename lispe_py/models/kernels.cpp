// Weight-only int8 / int4 matrix-vector products, an RMSNorm and one decode step's attention for x86-64 CPUs
// with AVX2 + FMA + F16C (every AVX2 CPU has F16C), registered as torch operators (so that eager code,
// torch.jit traces and the dispatcher all see them):
//
//   lispe::int8_linear(Tensor x, Tensor q, Tensor scale) -> Tensor
//       x float32 [M, K], q int8 [N, K], scale float32 or bfloat16 [N]
//       y[m, n] = scale[n] * sum_k q[n, k] * x[m, k]                          (float32 [M, N])
//   lispe::int4_linear(Tensor x, Tensor q, Tensor sz, int bits=16) -> Tensor
//       x float32 [M, K], q uint8 [N, K / 2], sz float32 or bfloat16 [N, 2, K / 32]
//       w[n, k] = (v[n, k] - 8) * sz[n, 0, b] + sz[n, 1, b], b = k / 32, v in 0..15
//       q holds v in blocks of 32 columns, 16 bytes per block: byte j = v[j] | v[j + 16] << 4, each run
//       of 8 blocks interleaved in chunks of 4 bytes (see int4_group; the last K / 32 % 8 blocks as they are)
//       y[m, n] ~= sum_k w[n, k] * x[m, k]                                     (float32 [M, N])
//       x is rounded to 16 bits per block of 32 (to 1/65534 of the block's largest |x|); bits 8 rounds
//       it to 8 bits instead (to 1/254, as llama.cpp's Q8_1 rows): one vpdpbusd per 32 weights and row.
//   lispe::int8_block_linear(Tensor x, Tensor q, Tensor so, int bits=32) -> Tensor
//       x float32 [M, K], q int8 [N, K], so float32 or float16 [N, 2, K / G], G 16 or a multiple of 32
//       w[n, k] = q[n, k] * so[n, 0, g] + so[n, 1, g], g = k / G (a scale and an offset per group)
//       y[m, n] = sum_g (so[n, 0, g] * sum_{k in g} q[n, k] x[m, k] + so[n, 1, g] * sum_{k in g} x[m, k])
//       bits 32: float32 activations and sums. GGUF Q8_0 / Q4_0 / Q4_1 blocks are such groups exactly,
//       and so are the sub-blocks of Q5_K (32 columns) and Q6_K (16 columns). Groups of 32 only: bits
//       16 rounds x to 16 bits per block of 32 (to 1/65534 of its largest |x|, as int4_linear; integer
//       sums, two vpdpwssd per 32 weights and row), bits 8 to 8 bits (to 1/254 of its largest |x|, as
//       llama.cpp's Q8_0 x Q8_0 products: integer sums, one vpdpbusd per 32 weights and row).
//   lispe::q4k_linear(Tensor x, Tensor raw) -> Tensor
//   lispe::q6k_linear(Tensor x, Tensor raw) -> Tensor
//       x float32 [M, K], K a multiple of 256; raw uint8 [N, K / 256 * 144 (Q4_K) or 210 (Q6_K)]: each
//       row's llama.cpp super-blocks as a GGUF file holds them (a memory-mapped file's bytes, no copy).
//       Q4_K: w = d * sc_j * q - dmin * m_j per sub-block j of 32; Q6_K: w = d * sc_j * (q - 32)
//       per sub-block of 16 (dmin * m_j in float32, as gguf's dequantization computes it).
//       y[m, n] ~= sum_k w[n, k] * x[m, k], x rounded to 16 bits per super-block of 256 (to 1/65534 of
//       its largest |x|): the 16-bit values are split into a signed high and an unsigned low byte, which
//       vpmaddubsw multiplies by the weight bytes as they are; sum_j sc_j * sum q x is exact in int32
//       per super-block (with AVX512-VNNI or AVX-VNNI, where the build has them, vpdpwssd adds it up),
//       then scaled once by d * the activations' scale: the same numbers with or without VNNI. With
//       several rows, Q4_K's weights are widened to int16 and multiplied by sc_j once for all rows,
//       then by the int16 values: the same exact integers per lane, half the multiplications per row.
//   lispe::kquant_linear(Tensor x, Tensor[] raws, int[] kinds, Tensor[] indexes, int bits=16) -> Tensor
//       the row-stack of several such matrices (kinds: 0 Q4_K, 1 Q6_K), part p's outputs permuted by
//       indexes[p] (output j = raw row index[j]; an empty tensor: in order): one call for a fused
//       q/k/v or gate/up. bits 8 rounds x to 8 bits per super-block instead (to 1/254 of its largest
//       |x|, as llama.cpp's Q8_K rows): one vpmaddubsw per 32 weights and row instead of two, an error
//       of at most 1/254 of the largest |x| instead of 1/65534.
//   lispe::rms_norm(Tensor x, Tensor weight, float eps) -> Tensor
//       x float32 [..., D] contiguous, weight float32 [D]:
//       y = weight * (x * (1 / sqrt(mean(x^2) + eps))) per row, in float32, one op instead of
//       F.rms_norm's six (~45 us per call on a 576-wide row here, against ~3 us).
//   lispe::decode_attention(Tensor q, Tensor k, Tensor v, float scale) -> Tensor
//       q float32 [B, KV, R, D] contiguous (R query heads per key/value head), k and v float32
//       [B, KV, S, D] with contiguous rows (a KV cache's view), D 64 or 128: softmax(scale * q k^T) v over all S,
//       float32 [B, KV, R, D]; one decode step's attention without a mask.
//   lispe::decode_attention_from(Tensor q, Tensor k, Tensor v, float scale, Tensor starts) -> Tensor
//       the same, row b over keys starts[b] .. S - 1 only (starts int64 [B], each in 0..S-1): a decode
//       step of left-padded rows (the pad slots before starts[b] hidden), without building a mask.
//   lispe::rope_attention(Tensor qkv, Tensor cos, Tensor sin, Tensor(a!) k, Tensor(b!) v, int heads,
//                         float scale, Tensor? starts=None) -> Tensor
//       a decode step's attention straight from the fused projection: qkv float32 [B, (heads + 2 KV) * D]
//       (q heads, then k, then v), cos/sin float32 [D] or [B, D] (RoPE, sin signed as apply_rope takes
//       it), k/v the cache views [B, KV, S, D]: q and k rotated exactly as apply_rope rotates them, k and
//       v written to slot S - 1, then decode_attention(_from) over slots (starts[b] or 0) .. S - 1;
//       float32 [B, heads * D]. One op instead of the ~20 between projection and attention.
//
// The build adds -mavx512f/bw/vl/vnni or -mavxvnni where the CPU has them (native.py).
// Weights are read once per pass of up to 8 rows of x (each row of x is multiplied by a decoded block
// before the next block is read), output rows are split over torch's intra-op threads, and every sum
// runs in a fixed order: the result does not depend on the number of threads. Built and loaded by
// lispe_py/models/native.py; the Python reference of both formats is in lispe_py/models/quantize.py.
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <torch/library.h>
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>

namespace {

constexpr int64_t kMaxRows = 8;  // rows of x multiplied per pass over the weights

// Weights stream from memory once per call: reading the cache lines kPrefetch bytes ahead of the
// bytes at p .. p + n (prefetches never fault, past an array's end too) lets the memory keep up with
// the arithmetic; on this project's machine a 1B model's Q4_K matrices stream at ~30 GB/s with it,
// ~21 GB/s without (docs/performance.md).
constexpr int64_t kPrefetch = 2048;

template <typename T>
inline void prefetch_ahead(const T* p, int64_t n) {
  const char* c = reinterpret_cast<const char*>(p) + kPrefetch;
  for (int64_t line = 0; line < n; line += 64) _mm_prefetch(c + line, _MM_HINT_T0);
}

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline float to_float(float v) { return v; }
inline float to_float(c10::BFloat16 v) { return static_cast<float>(v); }

// 8 int8 weights (the low 8 bytes of b) as floats.
inline __m256 int8x8(__m128i b) { return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b)); }

template <int M, typename S>
void int8_rows(const float* x, int64_t K, const int8_t* q, const S* scale, float* y, int64_t N,
               int64_t n0, int64_t n1) {
  // M rows of x; for M == 1 four independent accumulators keep the FMA units busy.
  constexpr int A = M == 1 ? 4 : (M == 2 ? 2 : 1);
  for (int64_t n = n0; n < n1; ++n) {
    const int8_t* w = q + n * K;
    __m256 acc[M][A];
    for (int m = 0; m < M; ++m)
      for (int a = 0; a < A; ++a) acc[m][a] = _mm256_setzero_ps();
    int64_t k = 0;
    for (; k + 32 <= K; k += 32) {
      __m256 f[4];  // sign-extended straight from memory: one instruction per 8 weights
      for (int j = 0; j < 4; ++j) f[j] = int8x8(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(w + k + 8 * j)));
      for (int m = 0; m < M; ++m) {
        const float* xm = x + m * K + k;
        for (int j = 0; j < 4; ++j)
          acc[m][j % A] = _mm256_fmadd_ps(f[j], _mm256_loadu_ps(xm + 8 * j), acc[m][j % A]);
      }
    }
    for (; k + 8 <= K; k += 8) {
      __m256 f = int8x8(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(w + k)));
      for (int m = 0; m < M; ++m) acc[m][0] = _mm256_fmadd_ps(f, _mm256_loadu_ps(x + m * K + k), acc[m][0]);
    }
    const float s = to_float(scale[n]);
    for (int m = 0; m < M; ++m) {
      __m256 t = acc[m][0];
      for (int a = 1; a < A; ++a) t = _mm256_add_ps(t, acc[m][a]);
      float r = hsum(t);
      for (int64_t kk = k; kk < K; ++kk) r += static_cast<float>(w[kk]) * x[m * K + kk];
      y[m * N + n] = r * s;
    }
  }
}

// x rows cut into blocks of 32 columns, each block as T values (int16, or int8 for 8-bit activations)
// and a float32 scale: x[k] ~= xq * xd[k / 32], |xq| <= top (32767 or 127: the block's largest |x|
// maps to it), and the block's exact float32 sum xs[k / 32] (for the constant part of the weights).
// The values are stored in the order the int4 kernel reads them: per group of 8 blocks (256 columns),
// interleaved as the weights are (`int4_group`); the last K / 32 % 8 blocks of a row in column order.
// With `sums` (int8_a8_rows), those last blocks' scales and sums are also kept by block with the rows
// side by side (td, ts, ti: [block - first tail block][8], rows >= M zero), so that one vector scales
// a tail block of all the rows (`lane_sums`; at most kMaxRows rows then). With `pairs` (int4_rows at
// 8 bits), the last blocks go two at a time (`int4_pair`): a pair's values are stored as [columns
// 0..15 of both blocks, then 16..31 of both], and tp holds each row's scales of a pair in the lanes
// that kernel sums each block in ([row][pair][8]: 0-3 the first block, 4-7 the second).
template <typename T>
struct Blocks {
  static constexpr float top_code = sizeof(T) == 2 ? 32767.0f : 127.0f;
  std::vector<T> xq;
  std::vector<float> xd, xs, td, ts, tp;
  std::vector<int32_t> xi, ti;  // with `sums`: each block's sum of xq (int8_a8_rows' +128 offset, with VNNI)
  Blocks(const float* x, int64_t M, int64_t K, bool sums = false, bool pairs = false)
      : xq(M * K), xd(M * K / 32), xs(M * K / 32), td(sums ? K / 32 % 8 * 8 : 0), ts(td.size()),
        tp(pairs ? M * (K / 32 % 8 / 2) * 8 : 0), xi(sums ? M * K / 32 : 0), ti(td.size()) {
    TORCH_CHECK(!sums || M <= kMaxRows, "Blocks: at most ", kMaxRows, " rows a pass");
    TORCH_CHECK(!pairs || sizeof(T) == 1, "Blocks: pairs of last blocks are for 8-bit values");
    const __m256 no_sign = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
    const int64_t B = K / 32, grouped = B / 8 * 8, paired = grouped + (pairs ? (B - grouped) / 2 * 2 : 0);
    for (int64_t b = 0; b < M * K / 32; ++b) {
      const float* v = x + 32 * b;
      __m256 f[4], amax = _mm256_setzero_ps(), sum = _mm256_setzero_ps();
      for (int j = 0; j < 4; ++j) {
        f[j] = _mm256_loadu_ps(v + 8 * j);
        amax = _mm256_max_ps(amax, _mm256_and_ps(f[j], no_sign));
        sum = _mm256_add_ps(sum, f[j]);
      }
      __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
      m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
      const float top = _mm_cvtss_f32(_mm_max_ss(m4, _mm_movehdup_ps(m4))), total = hsum(sum);
      const bool finite = std::isfinite(total) && std::isfinite(top);  // else the block's products are NaN
      const __m256 inv = _mm256_set1_ps(finite && top > 0.0f ? top_code / top : 0.0f);
      __m256i i[4];
      for (int j = 0; j < 4; ++j) i[j] = _mm256_cvtps_epi32(_mm256_mul_ps(f[j], inv));  // round to nearest
      // packs works per 128-bit lane: [0-3 of a, 0-3 of b, 4-7 of a, 4-7 of b]; the permute restores order
      __m256i lo = _mm256_permute4x64_epi64(_mm256_packs_epi32(i[0], i[1]), 0xD8);
      __m256i hi = _mm256_permute4x64_epi64(_mm256_packs_epi32(i[2], i[3]), 0xD8);
      alignas(32) T q[32];  // the block's values in column order
      if constexpr (sizeof(T) == 2) {
        _mm256_store_si256(reinterpret_cast<__m256i*>(q), lo);
        _mm256_store_si256(reinterpret_cast<__m256i*>(q + 16), hi);
      } else {  // |values| <= 127: the signed pack to bytes is exact
        _mm256_store_si256(reinterpret_cast<__m256i*>(q), _mm256_permute4x64_epi64(_mm256_packs_epi16(lo, hi), 0xD8));
      }
      const int64_t row = b / B, bb = b % B;
      T* out = &xq[row * K];
      if (bb >= paired) {
        std::memcpy(out + 32 * bb, q, sizeof(q));
      } else if (bb >= grouped) {  // a pair's block 0 or 1 (int4_pair)
        const int64_t second = (bb - grouped) % 2, first = bb - second;
        std::memcpy(out + 32 * first + 16 * second, q, 16 * sizeof(T));
        std::memcpy(out + 32 * first + 32 + 16 * second, q + 16, 16 * sizeof(T));
      } else {  // columns 16 h + 4 c .. + 3 of block j of its group: see int4_group
        const int64_t j = bb % 8;
        T* group = out + 256 * (bb / 8);
        for (int h = 0; h < 2; ++h)
          for (int c = 0; c < 4; ++c) {
            const int64_t at = sizeof(T) == 2 ? 64 * c + 16 * (2 * h + j / 4) + 4 * (j % 4) : 32 * (2 * c + h) + 4 * j;
            std::memcpy(group + at, q + 16 * h + 4 * c, 4 * sizeof(T));
          }
      }
      xd[b] = finite ? top / top_code : NAN;
      xs[b] = total;
      if (!xi.empty()) {
        int32_t t = 0;
        for (int k = 0; k < 32; ++k) t += q[k];
        xi[b] = t;
      }
      if (bb >= grouped && bb < paired) {  // the pair's lanes: 0-3 the first block, 4-7 the second
        const int64_t second = (bb - grouped) % 2;
        float* f = &tp[(row * ((B - grouped) / 2) + (bb - grouped) / 2) * 8];
        for (int lane = 0; lane < 8; ++lane)
          if (lane / 4 == second) f[lane] = xd[b];
      }
      if (sums && bb >= grouped) {
        const int64_t at = (bb - grouped) * 8 + row;
        td[at] = xd[b];
        ts[at] = xs[b];
        ti[at] = xi[b];
      }
    }
  }
};

// Lane m (m < M) = the sum of the 8 int32 lanes of p[m], lanes M..7 zero: one tail block's integer
// sums of M rows side by side, exact (hadd adds int32 lanes), in ~8 shuffles for all the rows instead
// of a horizontal sum per row.
template <int M>
inline __m256i lane_sums(const __m256i* p) {
  const __m256i zero = _mm256_setzero_si256();
  auto at = [&](int i) { return i < M ? p[i] : zero; };
  const __m256i a0 = _mm256_hadd_epi32(at(0), at(1));  // [p0 01, p0 23, p1 01, p1 23 | p0 45, p0 67, p1 45, p1 67]
  const __m256i a1 = M > 2 ? _mm256_hadd_epi32(at(2), at(3)) : zero;
  const __m256i b0 = _mm256_hadd_epi32(a0, a1);        // [p0..p3 lanes 0-3 | p0..p3 lanes 4-7]
  __m256i b1 = zero;
  if constexpr (M > 4) {
    const __m256i a2 = _mm256_hadd_epi32(at(4), at(5));
    const __m256i a3 = M > 6 ? _mm256_hadd_epi32(at(6), at(7)) : zero;
    b1 = _mm256_hadd_epi32(a2, a3);
  }
  return _mm256_add_epi32(_mm256_permute2x128_si256(b0, b1, 0x20), _mm256_permute2x128_si256(b0, b1, 0x31));
}

// Which 256-bit VNNI instructions the build has: 2 AVX512-VNNI (+VL), 1 AVX-VNNI, 0 none (then
// vpmaddwd / vpmaddubsw + add compute the same integers).
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
#define LISPE_VNNI 2
#elif defined(__AVXVNNI__)
#define LISPE_VNNI 1
#else
#define LISPE_VNNI 0
#endif

// Chains of dependent vpdpbusd per row in the 8-bit kernels (int4_group, int8_a8_rows): two hide the
// instruction's latency where the registers hold two per row, AVX-512's 32 up to 8 rows, AVX2's 16 up
// to 4; beyond, one per row (the rows' chains interleave).
constexpr int vpdpbusd_chains(int rows) {
#if defined(__AVX512VL__)
  return rows <= 8 ? 2 : 1;
#else
  return rows <= 4 ? 2 : 1;
#endif
}

// acc + the pair sums of a * b (int16 lanes into int32): one VNNI instruction where the CPU has it.
inline __m256i dot_add(__m256i acc, __m256i a, __m256i b) {
#if LISPE_VNNI == 2
  return _mm256_dpwssd_epi32(acc, a, b);
#elif LISPE_VNNI == 1
  return _mm256_dpwssd_avx_epi32(acc, a, b);
#else
  return _mm256_add_epi32(acc, _mm256_madd_epi16(a, b));
#endif
}

// acc + the sums of four products of unsigned bytes a by signed bytes b per int32 lane (|a b| pairs must
// fit int16, which vpmaddubsw saturates to): one VNNI instruction where the CPU has it, exact either way.
inline __m256i dot_add_u8(__m256i acc, __m256i a, __m256i b) {
#if LISPE_VNNI == 2
  return _mm256_dpbusd_epi32(acc, a, b);
#elif LISPE_VNNI == 1
  return _mm256_dpbusd_avx_epi32(acc, a, b);
#else
  return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(a, b), _mm256_set1_epi16(1)));
#endif
}

// 8 consecutive values as floats.
inline __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
inline __m256 load8(const c10::BFloat16* p) {
  const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(raw), 16));
}

// int4 weights times int16 or int8 activations. sz holds, per output row, the B = K / 32 block scales
// and then the B block zeros: w = (v - 8) * scale + zero, v in 0..15, so sum w x = scale * sum v x +
// c * sum x per block with c = zero - 8 * scale, the block's sum of x exact in float32.
//
// The values of each run of 8 blocks (256 columns, 128 bytes) are interleaved: chunk c (0..3) of 32
// bytes holds in its 4-byte lane j the bytes 4 c .. 4 c + 3 of block j, whose low nibbles are the
// block's columns 4 c .. 4 c + 3 and high nibbles columns 16 + 4 c .. 16 + 4 c + 3 (a block's own 16
// bytes: byte i = v[i] | v[i + 16] << 4, as GGUF's Q4_0/Q4_1 hold them). The last B % 8 blocks of a row
// keep their own order. So every integer lane sums one block's products only, over all its 32
// columns (8 bits: vpdpbusd, four products per lane) or 16 of them (16 bits: the bytes widened, two
// products per lane, two lanes per block): the float conversion and the scaling by weight scale *
// activation scale come once per 8 blocks instead of once per block. Exact: |lane sum| <= 32 * 15 *
// 127 (8 bits), 16 * 15 * 32767 (16 bits), < 2^24. Each row of x runs the same operations alone or in
// a batch.
template <int M, typename T>
inline void int4_group(const uint8_t* w, const T* xq, int64_t K, const __m256* f, __m256* acc) {
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  if constexpr (sizeof(T) == 1) {
    // (with the blocks' constant part added into acc by int4_rows, 8 rows' 16 chains and 8 accumulators
    // fit AVX-512's registers: 8 rows 186 -> 172 us at SmolLM2's 3072x576, one core)
    constexpr int A = vpdpbusd_chains(M);
    __m256i s[M * A];
    for (int i = 0; i < M * A; ++i) s[i] = _mm256_setzero_si256();
    for (int c = 0; c < 4; ++c) {
      const __m256i bytes = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 32 * c));
      const __m256i lo = _mm256_and_si256(bytes, low4), hi = _mm256_and_si256(_mm256_srli_epi16(bytes, 4), low4);
      for (int m = 0; m < M; ++m) {
        const T* xm = xq + m * K + 64 * c;
        s[A * m] = dot_add_u8(s[A * m], lo, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xm)));
        s[A * m + A - 1] = dot_add_u8(s[A * m + A - 1], hi, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xm + 32)));
      }
    }
    for (int m = 0; m < M; ++m) {
      const __m256i t = A == 2 ? _mm256_add_epi32(s[A * m], s[A * m + 1]) : s[A * m];
      acc[m] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(t), f[m], acc[m]);  // lane j: block j
    }
  } else {
    __m256i sa[M], sb[M];  // blocks 0-3, 4-7: lanes 2 i and 2 i + 1 hold block i (+ 4)
    for (int m = 0; m < M; ++m) sa[m] = sb[m] = _mm256_setzero_si256();
    for (int c = 0; c < 4; ++c) {
      const __m256i bytes = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 32 * c));
      const __m256i lo = _mm256_and_si256(bytes, low4), hi = _mm256_and_si256(_mm256_srli_epi16(bytes, 4), low4);
      const __m256i la = _mm256_cvtepu8_epi16(_mm256_castsi256_si128(lo)), lb = _mm256_cvtepu8_epi16(_mm256_extracti128_si256(lo, 1));
      const __m256i ha = _mm256_cvtepu8_epi16(_mm256_castsi256_si128(hi)), hb = _mm256_cvtepu8_epi16(_mm256_extracti128_si256(hi, 1));
      for (int m = 0; m < M; ++m) {
        const T* xm = xq + m * K + 64 * c;
        sa[m] = dot_add(dot_add(sa[m], la, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xm))),
                        ha, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xm + 32)));
        sb[m] = dot_add(dot_add(sb[m], lb, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xm + 16))),
                        hb, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xm + 48)));
      }
    }
    const __m256i first = _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3), second = _mm256_setr_epi32(4, 4, 5, 5, 6, 6, 7, 7);
    for (int m = 0; m < M; ++m) {
      acc[m] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sa[m]), _mm256_permutevar8x32_ps(f[m], first), acc[m]);
      acc[m] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sb[m]), _mm256_permutevar8x32_ps(f[m], second), acc[m]);
    }
  }
}

// One block in its own order (the last B % 8 of a row): 16 bits, the bytes widened (lanes 0-3: columns
// 0..15, 4-7: 16..31); 8 bits, low nibbles in the low 128 bits and high ones in the high 128 bits.
template <typename T>
inline __m256i int4_block(const uint8_t* w, const T* x) {
  if constexpr (sizeof(T) == 2) {
    const __m256i w16 = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w)));
    const __m256i lo = _mm256_and_si256(w16, _mm256_set1_epi16(0x0F)), hi = _mm256_srli_epi16(w16, 4);
    return dot_add(_mm256_madd_epi16(lo, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x))),
                   hi, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + 16)));
  } else {
    const __m256i both = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w)));
    const __m256i v = _mm256_and_si256(_mm256_blend_epi32(both, _mm256_srli_epi16(both, 4), 0xF0), _mm256_set1_epi8(0x0F));
    return dot_add_u8(_mm256_setzero_si256(), v, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x)));
  }
}

// Two consecutive blocks in their own order (32 bytes: block 0's 16, then block 1's) for M rows of
// 8-bit x: the weights decoded once, then per row one conversion and one FMA for both blocks. The low
// nibbles are [columns 0..15 of block 0 | of block 1] and the high ones columns 16..31, against x
// stored as [0..15 of both | 16..31 of both] (Blocks with `pairs`): lanes 0-3 sum block 0's products,
// 4-7 block 1's. xd2: row 0's 8 lane scales of the pair, `stride` floats between rows. (16 bits keep
// one block at a time: a pair would need a hadd per row, which cost more than it saved at one row.)
template <int M>
inline void int4_pair(const uint8_t* w, const int8_t* xq, int64_t K, const float* xd2, int64_t stride, float s0,
                      float s1, __m256* acc) {
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  const __m256i bytes = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w));
  const __m256i lo = _mm256_and_si256(bytes, low4), hi = _mm256_and_si256(_mm256_srli_epi16(bytes, 4), low4);
  const __m256 s2 = _mm256_set_m128(_mm_set1_ps(s1), _mm_set1_ps(s0));
  for (int m = 0; m < M; ++m) {
    const int8_t* xm = xq + m * K;
    const __m256i s = dot_add_u8(dot_add_u8(_mm256_setzero_si256(), lo, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xm))),
                                 hi, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xm + 32)));
    acc[m] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_mul_ps(s2, _mm256_loadu_ps(xd2 + m * stride)), acc[m]);
  }
}

template <int M, typename S, typename T>
void int4_rows(const Blocks<T>& xb, int64_t K, const uint8_t* q, const S* sz, float* y, int64_t N,
               int64_t n0, int64_t n1) {
  const int64_t B = K / 32;
  const T* xq = xb.xq.data();
  const float* xd = xb.xd.data();
  const float* xs = xb.xs.data();
  const __m256 eight = _mm256_set1_ps(8.0f);
  for (int64_t n = n0; n < n1; ++n) {
    const uint8_t* w = q + n * (K / 2);
    const S* scale = sz + n * 2 * B;
    const S* zero = scale + B;
    __m256 acc[M], f[M];
    for (int m = 0; m < M; ++m) acc[m] = _mm256_setzero_ps();
    const int64_t grouped = B / 8 * 8, rest = B - grouped;
    for (int64_t b0 = 0; b0 < grouped; b0 += 8) {
      prefetch_ahead(w + 16 * b0, 128);
      const __m256 s8 = load8(scale + b0), c8 = _mm256_fnmadd_ps(eight, s8, load8(zero + b0));
      for (int m = 0; m < M; ++m) {
        f[m] = _mm256_mul_ps(s8, _mm256_loadu_ps(xd + m * B + b0));
        acc[m] = _mm256_fmadd_ps(c8, _mm256_loadu_ps(xs + m * B + b0), acc[m]);  // the constant part, lane j: block j
      }
      int4_group<M>(w + 16 * b0, xq + 32 * b0, K, f, acc);
    }
    // The last B % 8 blocks, after the groups (the weights read in address order, as the hardware
    // prefetcher follows them): their constant part in a scalar per row, then 8 bits two blocks at a
    // time (`int4_pair`) and an odd one alone; 16 bits one at a time (the widening takes fewer
    // shuffles than a pair's hadd at one row, and a row must run the same operations whatever the
    // row count).
    float tail[M] = {};
    if (rest) {
      const int64_t pairs = sizeof(T) == 1 ? rest / 2 : 0;
      for (int64_t b = grouped; b < B; ++b) {
        const float cb = to_float(zero[b]) - 8.0f * to_float(scale[b]);
        for (int m = 0; m < M; ++m) tail[m] += cb * xs[m * B + b];
      }
      if constexpr (sizeof(T) == 1) {
        for (int64_t p = 0; p < pairs; ++p) {
          const int64_t b = grouped + 2 * p;
          int4_pair<M>(w + 16 * b, xq + 32 * b, K, xb.tp.data() + 8 * p, 8 * pairs, to_float(scale[b]),
                       to_float(scale[b + 1]), acc);
        }
      }
      for (int64_t b = grouped + 2 * pairs; b < B; ++b) {
        const float sb = to_float(scale[b]);
        for (int m = 0; m < M; ++m)
          acc[m] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(int4_block(w + 16 * b, xq + m * K + 32 * b)),
                                   _mm256_set1_ps(sb * xd[m * B + b]), acc[m]);
      }
    }
    for (int m = 0; m < M; ++m) y[m * N + n] = hsum(acc[m]) + tail[m];
  }
}

// Block sums of x: xs[m * B + b] = sum of x[m, 32 b .. 32 b + 31], B = K / 32.
std::vector<float> block_sums(const float* x, int64_t M, int64_t K) {
  std::vector<float> xs(M * K / 32);
  for (int64_t b = 0; b < M * K / 32; ++b) {
    const float* v = x + 32 * b;
    __m256 sum = _mm256_add_ps(_mm256_add_ps(load8(v), load8(v + 8)), _mm256_add_ps(load8(v + 16), load8(v + 24)));
    xs[b] = hsum(sum);
  }
  return xs;
}

// Sums of x per 16 columns: xs[m * H + h] = sum of x[m, 16 h .. 16 h + 15], H = K / 16.
std::vector<float> half_block_sums(const float* x, int64_t M, int64_t K) {
  std::vector<float> xs(M * K / 16);
  for (int64_t h = 0; h < M * K / 16; ++h) xs[h] = hsum(_mm256_add_ps(load8(x + 16 * h), load8(x + 16 * h + 8)));
  return xs;
}

inline float to_float(c10::Half v) { return _cvtsh_ss(v.x); }
inline __m256 load8(const c10::Half* p) {  // F16C: exact widening
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

// One block of 32 int8 weights times M rows of x, columns 0..15 scaled by s0 and 16..31 by s1 (the
// scales in every lane; the same one for groups of 32 or more): the weights are scaled once for all
// rows, then 4 FMAs per block and row into the row's two accumulators. A row runs the same operations
// in the same order whatever M is, so its result does not depend on the rows beside it (a request
// alone or in a server's batch gets the same bits).
template <int M>
inline void int8_block(const int8_t* w, const float* x, int64_t K, int64_t b, __m256 s0, __m256 s1, __m256 (*acc)[2]) {
  __m256 f[4];
  for (int j = 0; j < 4; ++j)
    f[j] = _mm256_mul_ps(int8x8(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(w + 32 * b + 8 * j))), j < 2 ? s0 : s1);
  for (int m = 0; m < M; ++m) {
    const float* xm = x + m * K + 32 * b;
    for (int j = 0; j < 4; ++j) acc[m][j % 2] = _mm256_fmadd_ps(f[j], load8(xm + 8 * j), acc[m][j % 2]);
  }
}

// int8 weights with a scale and an offset per block of 32 columns (sb, ob: B = K / 32 of each per
// row, float32 or float16, read 8 at a time), float32 activations: per block the weights are scaled
// once, then four FMAs per row (`int8_block`). The offsets multiply the block sums of x, 8 blocks per
// FMA.
template <int M, typename S>
inline void int8_block_row(const float* x, const float* xs, int64_t K, const int8_t* w, const S* sb, const S* ob,
                           float* y, int64_t N) {
  constexpr int A = 2;  // accumulators per row, whatever M (a row's sums in the same order alone or in a batch)
  const int64_t B = K / 32;
  __m256 acc[M][A];  // the offsets' products go into the first accumulator too: no more registers
  for (int m = 0; m < M; ++m)
    for (int a = 0; a < A; ++a) acc[m][a] = _mm256_setzero_ps();
  int64_t b0 = 0;
  for (; b0 + 8 <= B; b0 += 8) {
    prefetch_ahead(w + 32 * b0, 256);
    const __m256 s8 = load8(sb + b0), o8 = load8(ob + b0);
    for (int m = 0; m < M; ++m) acc[m][0] = _mm256_fmadd_ps(o8, _mm256_loadu_ps(xs + m * B + b0), acc[m][0]);
    for (int i = 0; i < 8; ++i) {  // lane i of the 8 scales in every lane: one shuffle, no store and reload
      const __m256 si = _mm256_permutevar8x32_ps(s8, _mm256_set1_epi32(i));
      int8_block<M>(w, x, K, b0 + i, si, si, acc);
    }
  }
  float tail[M] = {};
  for (int64_t b = b0; b < B; ++b) {  // the last B % 8 blocks
    const __m256 sb1 = _mm256_set1_ps(to_float(sb[b]));
    int8_block<M>(w, x, K, b, sb1, sb1, acc);
    for (int m = 0; m < M; ++m) tail[m] += to_float(ob[b]) * xs[m * B + b];
  }
  for (int m = 0; m < M; ++m) y[m * N] = hsum(A == 2 ? _mm256_add_ps(acc[m][0], acc[m][A - 1]) : acc[m][0]) + tail[m];
}

// The same with a scale and an offset per group of 16 columns (H = K / 16 of each per row, xs16 the
// sums of x per 16 columns): two scales per block of 32, 8 groups (4 blocks) per load of the planes.
template <int M, typename S>
inline void int8_g16_row(const float* x, const float* xs16, int64_t K, const int8_t* w, const S* sb, const S* ob,
                         float* y, int64_t N) {
  constexpr int A = 2;  // as int8_block_row
  const int64_t B = K / 32, H = K / 16;
  __m256 acc[M][A];
  for (int m = 0; m < M; ++m)
    for (int a = 0; a < A; ++a) acc[m][a] = _mm256_setzero_ps();
  int64_t b0 = 0;
  for (; b0 + 4 <= B; b0 += 4) {
    const __m256 s8 = load8(sb + 2 * b0), o8 = load8(ob + 2 * b0);
    for (int m = 0; m < M; ++m) acc[m][0] = _mm256_fmadd_ps(o8, _mm256_loadu_ps(xs16 + m * H + 2 * b0), acc[m][0]);
    for (int i = 0; i < 4; ++i)
      int8_block<M>(w, x, K, b0 + i, _mm256_permutevar8x32_ps(s8, _mm256_set1_epi32(2 * i)),
                       _mm256_permutevar8x32_ps(s8, _mm256_set1_epi32(2 * i + 1)), acc);
  }
  float tail[M] = {};
  for (int64_t b = b0; b < B; ++b) {  // the last B % 4 blocks
    int8_block<M>(w, x, K, b, _mm256_set1_ps(to_float(sb[2 * b])), _mm256_set1_ps(to_float(sb[2 * b + 1])), acc);
    for (int m = 0; m < M; ++m)
      tail[m] += to_float(ob[2 * b]) * xs16[m * H + 2 * b] + to_float(ob[2 * b + 1]) * xs16[m * H + 2 * b + 1];
  }
  for (int m = 0; m < M; ++m) y[m * N] = hsum(A == 2 ? _mm256_add_ps(acc[m][0], acc[m][A - 1]) : acc[m][0]) + tail[m];
}

template <int M, typename S>
void int8_g16_rows(const float* x, const float* xs16, int64_t K, const int8_t* q, const S* so, float* y, int64_t N,
                   int64_t n0, int64_t n1) {
  const int64_t H = K / 16;
  for (int64_t n = n0; n < n1; ++n) int8_g16_row<M>(x, xs16, K, q + n * K, so + n * 2 * H, so + n * 2 * H + H, y + n, N);
}

// Rows n0..n1 of int8_block_linear. Groups of 32 columns read the planes as they are; wider groups
// (G = 32 * per) are widened to one float32 scale and offset per block first.
template <int M, typename S>
void int8_block_rows(const float* x, const float* xs, int64_t K, const int8_t* q, const S* so, int64_t groups,
                     float* y, int64_t N, int64_t n0, int64_t n1) {
  const int64_t B = K / 32, per = B / groups;
  std::vector<float> buffer(per == 1 ? 0 : 2 * B);
  for (int64_t n = n0; n < n1; ++n) {
    const S* scale = so + n * 2 * groups;
    if (per == 1) {
      int8_block_row<M>(x, xs, K, q + n * K, scale, scale + groups, y + n, N);
      continue;
    }
    for (int64_t g = 0; g < groups; ++g)
      for (int64_t i = 0; i < per; ++i) {
        buffer[g * per + i] = to_float(scale[g]);
        buffer[B + g * per + i] = to_float(scale[groups + g]);
      }
    int8_block_row<M>(x, xs, K, q + n * K, buffer.data(), buffer.data() + B, y + n, N);
  }
}

// Calls rows<M>(x + r * K, ..., y + r * N, ...) for every pass of at most kMaxRows rows of x.
template <typename F>
void by_passes(int64_t M, int64_t N, F&& pass) {
  at::parallel_for(0, N, 16, [&](int64_t n0, int64_t n1) {
    for (int64_t r = 0; r < M; r += kMaxRows) pass(r, std::min(kMaxRows, M - r), n0, n1);
  });
}

// Calls f(std::integral_constant<int, M>()) for M = rows (1 .. kMaxRows): a pass's row count as a
// template argument.
template <typename F>
void with_rows(int64_t rows, F&& f) {
  switch (rows) {
    case 1: f(std::integral_constant<int, 1>()); break;
    case 2: f(std::integral_constant<int, 2>()); break;
    case 3: f(std::integral_constant<int, 3>()); break;
    case 4: f(std::integral_constant<int, 4>()); break;
    case 5: f(std::integral_constant<int, 5>()); break;
    case 6: f(std::integral_constant<int, 6>()); break;
    case 7: f(std::integral_constant<int, 7>()); break;
    default: f(std::integral_constant<int, 8>()); break;
  }
}

#define LISPE_DISPATCH_ROWS(rows, FN, ...) \
  with_rows(rows, [&](auto m_) { FN<decltype(m_)::value>(__VA_ARGS__); });

void check_x(const at::Tensor& x, int64_t K, const char* op) {
  TORCH_CHECK(x.dim() == 2 && x.scalar_type() == at::kFloat && x.is_contiguous() && x.size(1) == K,
              op, ": x must be a contiguous float32 [M, ", K, "] tensor, got ", x.sizes(), " ", x.scalar_type());
}

at::Tensor int8_linear(const at::Tensor& x, const at::Tensor& q, const at::Tensor& scale) {
  TORCH_CHECK(q.dim() == 2 && q.scalar_type() == at::kChar && q.is_contiguous(), "int8_linear: q must be contiguous int8 [N, K]");
  const int64_t N = q.size(0), K = q.size(1), M = x.size(0);
  check_x(x, K, "int8_linear");
  TORCH_CHECK(scale.numel() == N && scale.is_contiguous() &&
              (scale.scalar_type() == at::kFloat || scale.scalar_type() == at::kBFloat16),
              "int8_linear: scale must be float32 or bfloat16 [N]");
  at::Tensor y = at::empty({M, N}, x.options());
  const float* xp = x.data_ptr<float>();
  const int8_t* qp = q.data_ptr<int8_t>();
  float* yp = y.data_ptr<float>();
  auto run = [&](auto* sp) {
    by_passes(M, N, [&](int64_t r, int64_t rows, int64_t n0, int64_t n1) {
      LISPE_DISPATCH_ROWS(rows, int8_rows, xp + r * K, K, qp, sp, yp + r * N, N, n0, n1)
    });
  };
  if (scale.scalar_type() == at::kFloat) run(scale.data_ptr<float>());
  else run(scale.data_ptr<c10::BFloat16>());
  return y;
}

template <typename T, typename S>
void int4_passes(const float* xp, int64_t M, int64_t K, const uint8_t* qp, const S* sp, float* yp, int64_t N) {
  std::vector<Blocks<T>> passes;
  for (int64_t r = 0; r < M; r += kMaxRows) passes.emplace_back(xp + r * K, std::min(kMaxRows, M - r), K, false, sizeof(T) == 1);
  by_passes(M, N, [&](int64_t r, int64_t rows, int64_t n0, int64_t n1) {
    LISPE_DISPATCH_ROWS(rows, int4_rows, passes[r / kMaxRows], K, qp, sp, yp + r * N, N, n0, n1)
  });
}

at::Tensor int4_linear(const at::Tensor& x, const at::Tensor& q, const at::Tensor& sz, int64_t bits) {
  TORCH_CHECK(q.dim() == 2 && q.scalar_type() == at::kByte && q.is_contiguous(), "int4_linear: q must be contiguous uint8 [N, K / 2]");
  const int64_t N = q.size(0), K = 2 * q.size(1), M = x.size(0);
  check_x(x, K, "int4_linear");
  TORCH_CHECK(K % 32 == 0, "int4_linear: K must be a multiple of 32, got ", K);
  TORCH_CHECK(sz.dim() == 3 && sz.size(0) == N && sz.size(1) == 2 && sz.size(2) == K / 32 && sz.is_contiguous() &&
              (sz.scalar_type() == at::kFloat || sz.scalar_type() == at::kBFloat16),
              "int4_linear: sz must be contiguous float32 or bfloat16 [N, 2, K / 32]");
  TORCH_CHECK(bits == 16 || bits == 8, "int4_linear: bits (the activations' width) must be 16 or 8, got ", bits);
  at::Tensor y = at::empty({M, N}, x.options());
  const float* xp = x.data_ptr<float>();
  const uint8_t* qp = q.data_ptr<uint8_t>();
  float* yp = y.data_ptr<float>();
  auto run = [&](auto* sp) {
    if (bits == 16) int4_passes<int16_t>(xp, M, K, qp, sp, yp, N);
    else int4_passes<int8_t>(xp, M, K, qp, sp, yp, N);
  };
  if (sz.scalar_type() == at::kFloat) run(sz.data_ptr<float>());
  else run(sz.data_ptr<c10::BFloat16>());
  return y;
}

// int8 weights in groups of 32 (GGUF Q8_0 blocks, int8 groups of 32: w = q * scale + offset per block)
// times 8-bit activations (Blocks<int8_t>, llama.cpp's arithmetic), the block sums of q * x8 exact in
// int32 (`dot_add_s8`: with VNNI the weights offset by 128 and 128 * the block's sum of x8 taken off
// again, |sum| <= 32 * 255 * 127; the same integers either way). Per run of 8 blocks the 8
// blocks' 32-byte rows are transposed in registers by 4-byte chunks (24 shuffles, shared by the rows of
// x), so that lane j of chunk c holds block j's columns 4 c .. 4 c + 3: one integer lane then sums one
// block, as the int4 kernel's interleaved layout gives, and one conversion and FMA per row scale 8
// blocks (x8 is stored in that kernel's order: chunk c's activations at vector 2 (c % 4) + c / 4).
// The last B % 8 blocks go one at a time.
inline void transpose8x32(__m256i* r) {
  __m256i t[8], u[8];
  for (int i = 0; i < 4; ++i) {
    t[2 * i] = _mm256_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm256_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
  }
  for (int h = 0; h < 2; ++h) {  // rows 4 h .. 4 h + 3
    u[4 * h + 0] = _mm256_unpacklo_epi64(t[4 * h], t[4 * h + 2]);      // chunks 0 and 4
    u[4 * h + 1] = _mm256_unpackhi_epi64(t[4 * h], t[4 * h + 2]);      // 1 and 5
    u[4 * h + 2] = _mm256_unpacklo_epi64(t[4 * h + 1], t[4 * h + 3]);  // 2 and 6
    u[4 * h + 3] = _mm256_unpackhi_epi64(t[4 * h + 1], t[4 * h + 3]);  // 3 and 7
  }
  for (int c = 0; c < 4; ++c) {
    r[c] = _mm256_permute2x128_si256(u[c], u[4 + c], 0x20);
    r[c + 4] = _mm256_permute2x128_si256(u[c], u[4 + c], 0x31);
  }
}

// acc + the sums of four products of signed bytes w by signed bytes x per int32 lane, exact. With VNNI:
// vpdpbusd on w + 128 (w ^ 0x80 as unsigned: `kSignedViaOffset`), the caller taking 128 * sum x off;
// without: vpmaddubsw on |w| and x * sign(w) (pairs <= 2 * 128 * 127: no int16 saturation).
#if LISPE_VNNI
constexpr bool kSignedViaOffset = true;
inline __m256i signed_weights(__m256i w) { return _mm256_xor_si256(w, _mm256_set1_epi8(static_cast<char>(0x80))); }
inline __m256i dot_add_s8(__m256i acc, __m256i w, __m256i x) { return dot_add_u8(acc, w, x); }
#else
constexpr bool kSignedViaOffset = false;
inline __m256i signed_weights(__m256i w) { return w; }
inline __m256i dot_add_s8(__m256i acc, __m256i w, __m256i x) {
  return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_abs_epi8(w), _mm256_sign_epi8(x, w)),
                                                 _mm256_set1_epi16(1)));
}
#endif

template <int M, typename S>
void int8_a8_rows(const Blocks<int8_t>& xb, int64_t K, const int8_t* q, const S* so, float* y, int64_t N,
                  int64_t n0, int64_t n1) {
  const int64_t B = K / 32;
  const int8_t* xq = xb.xq.data();
  const float* xd = xb.xd.data();
  const float* xs = xb.xs.data();
  const int32_t* xi = xb.xi.data();
  constexpr int A = vpdpbusd_chains(M);  // (8192x576, one core, 8 rows: 591-607 -> 536-546 us with two)
  for (int64_t n = n0; n < n1; ++n) {
    const int8_t* w = q + n * K;
    const S* scale = so + n * 2 * B;
    const S* offset = scale + B;
    __m256 acc[M];  // the products and the offsets' part in one accumulator: 8 fewer registers at 8 rows
    for (int m = 0; m < M; ++m) acc[m] = _mm256_setzero_ps();
    int64_t b0 = 0;
    for (; b0 + 8 <= B; b0 += 8) {
      prefetch_ahead(w + 32 * b0, 256);
      __m256i r[8];
      for (int j = 0; j < 8; ++j)
        r[j] = signed_weights(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 32 * (b0 + j))));
      transpose8x32(r);
      const __m256 s8 = load8(scale + b0), o8 = load8(offset + b0);
      for (int m = 0; m < M; ++m) {
        const int8_t* xm = xq + m * K + 32 * b0;
        __m256i s[A];
        s[0] = kSignedViaOffset ? _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(
                                      _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xi + m * B + b0)), 7))
                                : _mm256_setzero_si256();
        if (A == 2) s[A - 1] = _mm256_setzero_si256();
        for (int c = 0; c < 8; ++c)
          s[c % A] = dot_add_s8(s[c % A], r[c], _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xm + 32 * (2 * (c % 4) + c / 4))));
        const __m256i t = A == 2 ? _mm256_add_epi32(s[0], s[A - 1]) : s[0];
        acc[m] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(t), _mm256_mul_ps(s8, _mm256_loadu_ps(xd + m * B + b0)), acc[m]);
        acc[m] = _mm256_fmadd_ps(o8, _mm256_loadu_ps(xs + m * B + b0), acc[m]);
      }
    }
    // The last B % 8 blocks (x8 in column order), one at a time, all the rows together: each row's
    // exact integer sum of the block in lane m (`lane_sums`), then one scaling for all the rows.
    __m256 rest = _mm256_setzero_ps();
    for (int64_t b = b0; b < B; ++b) {
      const __m256i wv = signed_weights(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 32 * b)));
      __m256i p[M];
      for (int m = 0; m < M; ++m)
        p[m] = dot_add_s8(_mm256_setzero_si256(), wv, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + m * K + 32 * b)));
      __m256i isum = lane_sums<M>(p);
      if (kSignedViaOffset)
        isum = _mm256_sub_epi32(isum, _mm256_slli_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb.ti.data() + (b - b0) * 8)), 7));
      const __m256 d = _mm256_mul_ps(_mm256_set1_ps(to_float(scale[b])), _mm256_loadu_ps(xb.td.data() + (b - b0) * 8));
      rest = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), d, rest);
      rest = _mm256_fmadd_ps(_mm256_set1_ps(to_float(offset[b])), _mm256_loadu_ps(xb.ts.data() + (b - b0) * 8), rest);
    }
    alignas(32) float t[8];
    _mm256_store_ps(t, rest);
    for (int m = 0; m < M; ++m) y[m * N + n] = hsum(acc[m]) + t[m];
  }
}

// int8 weights in groups of 32 (scale and offset per block, as int8_a8_rows) times 16-bit activations
// (Blocks<int16_t>: x rounded per block of 32 to 1/65534 of its largest |x|, the int4 kernel's default
// and its value order): per run of 8 blocks the weights are transposed by 4-byte chunks (lane j of
// chunk c: block j's columns 4 c .. 4 c + 3, `transpose8x32`), each half widened to int16 (blocks 0-3,
// then 4-7), and vpdpwssd against x sums block i in the int32 lanes 2 i and 2 i + 1 (exact integers;
// the float conversion rounds lanes beyond 2^24, <= 6e-8 of the lane): one conversion and FMA per half
// and row for 8 blocks, like the int4 kernel's 16-bit groups. The last B % 8 blocks go one at a time.
// Twice the products per instruction of the float32 path (8 per FMA), no float conversion of the
// weights. A row runs the same operations alone or in a batch.
template <int M, typename S>
void int8_i16_rows(const Blocks<int16_t>& xb, int64_t K, const int8_t* q, const S* so, float* y, int64_t N,
                   int64_t n0, int64_t n1) {
  const int64_t B = K / 32, grouped = B / 8 * 8, rest = B - grouped;
  const int16_t* xq = xb.xq.data();
  const float* xd = xb.xd.data();
  const float* xs = xb.xs.data();
  constexpr int A = M <= 2 ? 2 : 1;  // chains per half and row (the latency of vpdpwssd at 1-2 rows; exact either way)
  const __m256i first = _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3), second = _mm256_setr_epi32(4, 4, 5, 5, 6, 6, 7, 7);
  for (int64_t n = n0; n < n1; ++n) {
    const int8_t* w = q + n * K;
    const S* scale = so + n * 2 * B;
    const S* offset = scale + B;
    __m256 acc[M];
    for (int m = 0; m < M; ++m) acc[m] = _mm256_setzero_ps();
    for (int64_t b0 = 0; b0 < grouped; b0 += 8) {
      prefetch_ahead(w + 32 * b0, 256);
      __m256i r[8];
      for (int j = 0; j < 8; ++j) r[j] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 32 * (b0 + j)));
      transpose8x32(r);
      __m256i sa[M][A], sb[M][A];  // blocks 0-3 and 4-7
      for (int m = 0; m < M; ++m)
        for (int a = 0; a < A; ++a) sa[m][a] = sb[m][a] = _mm256_setzero_si256();
      for (int c = 0; c < 8; ++c) {
        const __m256i wa = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(r[c])), wb = _mm256_cvtepi8_epi16(_mm256_extracti128_si256(r[c], 1));
        for (int m = 0; m < M; ++m) {
          const int16_t* xm = xq + m * K + 32 * b0 + 64 * (c % 4) + 32 * (c / 4);
          sa[m][c % A] = dot_add(sa[m][c % A], wa, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xm)));
          sb[m][c % A] = dot_add(sb[m][c % A], wb, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xm + 16)));
        }
      }
      const __m256 s8 = load8(scale + b0), o8 = load8(offset + b0);
      for (int m = 0; m < M; ++m) {
        const __m256i ta = A == 2 ? _mm256_add_epi32(sa[m][0], sa[m][A - 1]) : sa[m][0];
        const __m256i tb = A == 2 ? _mm256_add_epi32(sb[m][0], sb[m][A - 1]) : sb[m][0];
        const __m256 f = _mm256_mul_ps(s8, _mm256_loadu_ps(xd + m * B + b0));
        acc[m] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(ta), _mm256_permutevar8x32_ps(f, first), acc[m]);
        acc[m] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(tb), _mm256_permutevar8x32_ps(f, second), acc[m]);
        acc[m] = _mm256_fmadd_ps(o8, _mm256_loadu_ps(xs + m * B + b0), acc[m]);
      }
    }
    float tail[M] = {};  // the last B % 8 blocks' offset parts
    if (rest) {  // the last B % 8 blocks, after the groups (address order), one at a time
      for (int64_t b = grouped; b < B; ++b) {
        const float ob = to_float(offset[b]);
        for (int m = 0; m < M; ++m) tail[m] += ob * xs[m * B + b];
      }
      for (int64_t b = grouped; b < B; ++b) {
        const __m128i* wb = reinterpret_cast<const __m128i*>(w + 32 * b);
        const __m256i lo = _mm256_cvtepi8_epi16(_mm_loadu_si128(wb)), hi = _mm256_cvtepi8_epi16(_mm_loadu_si128(wb + 1));
        const float sb = to_float(scale[b]);
        for (int m = 0; m < M; ++m) {
          const int16_t* xm = xq + m * K + 32 * b;
          const __m256i p = dot_add(_mm256_madd_epi16(lo, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xm))),
                                    hi, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xm + 16)));
          acc[m] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(sb * xd[m * B + b]), acc[m]);
        }
      }
    }
    for (int m = 0; m < M; ++m) y[m * N + n] = hsum(acc[m]) + tail[m];
  }
}

// int8_block_linear with x rounded to 16 (int8_i16_rows) or 8 bits (int8_a8_rows, with each block's
// sum of x for its +128 offset) per block of 32, in passes of up to kMaxRows rows.
template <typename T>
void int8_integer_passes(const float* xp, int64_t M, int64_t K, const int8_t* qp, const at::Tensor& so, float* yp,
                         int64_t N) {
  std::vector<Blocks<T>> passes;
  for (int64_t r = 0; r < M; r += kMaxRows) passes.emplace_back(xp + r * K, std::min(kMaxRows, M - r), K, sizeof(T) == 1);
  auto run = [&](auto* sp) {
    by_passes(M, N, [&](int64_t r, int64_t rows, int64_t n0, int64_t n1) {
      if constexpr (sizeof(T) == 1) {
        LISPE_DISPATCH_ROWS(rows, int8_a8_rows, passes[r / kMaxRows], K, qp, sp, yp + r * N, N, n0, n1)
      } else {
        LISPE_DISPATCH_ROWS(rows, int8_i16_rows, passes[r / kMaxRows], K, qp, sp, yp + r * N, N, n0, n1)
      }
    });
  };
  if (so.scalar_type() == at::kFloat) run(so.data_ptr<float>());
  else run(so.data_ptr<c10::Half>());
}

at::Tensor int8_block_linear(const at::Tensor& x, const at::Tensor& q, const at::Tensor& so, int64_t bits) {
  TORCH_CHECK(q.dim() == 2 && q.scalar_type() == at::kChar && q.is_contiguous(), "int8_block_linear: q must be contiguous int8 [N, K]");
  const int64_t N = q.size(0), K = q.size(1), M = x.size(0);
  check_x(x, K, "int8_block_linear");
  TORCH_CHECK(so.dim() == 3 && so.size(0) == N && so.size(1) == 2 && so.size(2) > 0 && so.is_contiguous() &&
              (so.scalar_type() == at::kFloat || so.scalar_type() == at::kHalf),
              "int8_block_linear: so must be contiguous float32 or float16 [N, 2, groups]");
  const int64_t groups = so.size(2);
  TORCH_CHECK(K % 32 == 0 && K % groups == 0 && ((K / groups) % 32 == 0 || K / groups == 16),
              "int8_block_linear: the group size K / groups must be 16 or a multiple of 32, got K = ", K, " and ",
              groups, " groups");
  TORCH_CHECK(bits == 32 || ((bits == 8 || bits == 16) && K / groups == 32),
              "int8_block_linear: bits (the activations' width) must be 32 (float32), or 8 or 16 with groups of 32, got ",
              bits, " with groups of ", K / groups);
  at::Tensor y = at::empty({M, N}, x.options());
  const float* xp = x.data_ptr<float>();
  if (bits == 16 || bits == 8) {  // x rounded per block of 32, integer sums
    if (bits == 16) int8_integer_passes<int16_t>(xp, M, K, q.data_ptr<int8_t>(), so, y.data_ptr<float>(), N);
    else int8_integer_passes<int8_t>(xp, M, K, q.data_ptr<int8_t>(), so, y.data_ptr<float>(), N);
    return y;
  }
  const bool g16 = K / groups == 16;
  const std::vector<float> xs = g16 ? half_block_sums(xp, M, K) : block_sums(xp, M, K);
  const int8_t* qp = q.data_ptr<int8_t>();
  float* yp = y.data_ptr<float>();
  const int64_t B = K / 32;
  auto run = [&](auto* sp) {
    by_passes(M, N, [&](int64_t r, int64_t rows, int64_t n0, int64_t n1) {
      if (g16) {
        LISPE_DISPATCH_ROWS(rows, int8_g16_rows, xp + r * K, xs.data() + r * 2 * B, K, qp, sp, yp + r * N, N, n0, n1)
      } else {
        LISPE_DISPATCH_ROWS(rows, int8_block_rows, xp + r * K, xs.data() + r * B, K, qp, sp, groups, yp + r * N, N, n0, n1)
      }
    });
  };
  if (so.scalar_type() == at::kFloat) run(so.data_ptr<float>());
  else run(so.data_ptr<c10::Half>());
  return y;
}

// ----- K-quant super-blocks (Q4_K, Q6_K) read as the file holds them -----

inline float half_at(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}

// Rows of x for the K-quant kernels, per super-block of 256 columns. With 16 bits (`wide`, the
// default): int16 values x16 = round(x / d), d = the super-block's largest |x| / 32767 (d[m * S + s]),
// each split into two bytes x16 = 256 hi + lo (hi signed, lo unsigned), so that vpmaddubsw multiplies
// them by the weights' bytes without widening. With 8 bits (llama.cpp's arithmetic: its Q8_K rows),
// int8 values round(x / d) in hi, d = largest |x| / 127, no lo. Per 16 columns the sums of hi and of lo
// (sh, sl: Q6_K's -32 offset), per 32 columns the float32 sums of x (xs: Q4_K's mins).
//
// With 16 bits and several rows, also the int16 values themselves, per 32 columns the 16 of even
// index then the 16 of odd index (x16p): the several-row Q4_K kernel multiplies them by int16 weights.
struct SuperBlocks {
  bool wide;
  std::vector<int8_t> hi;
  std::vector<uint8_t> lo;
  std::vector<int16_t> sh, sl, x16p;
  std::vector<float> d, xs;
  SuperBlocks(const float* x, int64_t M, int64_t K, bool wide_ = true)
      : wide(wide_), hi(M * K), lo(wide_ ? M * K : 0), sh(M * K / 16), sl(wide_ ? M * K / 16 : 0),
        x16p(wide_ && M > 1 ? M * K : 0), d(M * K / 256), xs(block_sums(x, M, K)) {
    const __m256 no_sign = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
    const __m256i byte = _mm256_set1_epi16(0xFF);
    const float top_code = wide ? 32767.0f : 127.0f;
    for (int64_t s = 0; s < M * K / 256; ++s) {
      const float* v = x + 256 * s;
      __m256 amax = _mm256_setzero_ps(), sum = _mm256_setzero_ps();
      for (int j = 0; j < 32; ++j) {
        const __m256 f = _mm256_loadu_ps(v + 8 * j);
        amax = _mm256_max_ps(amax, _mm256_and_ps(f, no_sign));
        sum = _mm256_add_ps(sum, f);
      }
      __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
      m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
      const float top = _mm_cvtss_f32(_mm_max_ss(m4, _mm_movehdup_ps(m4)));
      const bool finite = std::isfinite(hsum(sum)) && std::isfinite(top);  // else the products are NaN
      const __m256 inv = _mm256_set1_ps(finite && top > 0.0f ? top_code / top : 0.0f);
      d[s] = finite ? top / top_code : NAN;
      for (int j = 0; j < 8; ++j) {  // 32 columns at a time
        const float* w = v + 32 * j;
        __m256i i[4];
        for (int k = 0; k < 4; ++k) i[k] = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(w + 8 * k), inv));
        // packs works per 128-bit lane; the permutes restore the column order
        const __m256i a = _mm256_permute4x64_epi64(_mm256_packs_epi32(i[0], i[1]), 0xD8);  // columns 0..15
        const __m256i b = _mm256_permute4x64_epi64(_mm256_packs_epi32(i[2], i[3]), 0xD8);  // 16..31
        const int64_t at = 256 * s + 32 * j;
        if (!wide) {  // |values| <= 127: the signed pack is exact
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(&hi[at]), _mm256_permute4x64_epi64(_mm256_packs_epi16(a, b), 0xD8));
          continue;
        }
        if (!x16p.empty()) {
          alignas(32) int16_t v[32];
          _mm256_store_si256(reinterpret_cast<__m256i*>(v), a);
          _mm256_store_si256(reinterpret_cast<__m256i*>(v + 16), b);
          for (int e = 0; e < 16; ++e) {
            x16p[at + e] = v[2 * e];
            x16p[at + 16 + e] = v[2 * e + 1];
          }
        }
        const __m256i ha = _mm256_srai_epi16(a, 8), hb = _mm256_srai_epi16(b, 8);
        const __m256i la = _mm256_and_si256(a, byte), lb = _mm256_and_si256(b, byte);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(&hi[at]),
                            _mm256_permute4x64_epi64(_mm256_packs_epi16(ha, hb), 0xD8));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(&lo[at]),
                            _mm256_permute4x64_epi64(_mm256_packus_epi16(la, lb), 0xD8));
      }
      for (int g = 0; g < 16; ++g) {
        int th = 0, tl = 0;
        for (int k = 0; k < 16; ++k) {
          th += hi[256 * s + 16 * g + k];
          if (wide) tl += lo[256 * s + 16 * g + k];
        }
        sh[16 * s + g] = static_cast<int16_t>(th);
        if (wide) sl[16 * s + g] = static_cast<int16_t>(tl);
      }
    }
  }
};


// One block of 32 columns (unsigned weight bytes w: Q4_K's 4-bit values, Q6_K's 6-bit ones before the
// -32) times the M rows' hi and lo bytes of those columns: vpmaddubsw gives exact int16 pair sums
// (|w hi| pairs <= 2 * 63 * 128, w lo pairs <= 2 * 63 * 255: no saturation), which the int16 scales sv
// (the sub-blocks' 6-bit or 8-bit scales, one per 128-bit lane) multiply into the int32 accumulators of
// the high and the low bytes (A chains per row: ih[A * m]). With 8-bit activations (W false) only the
// high bytes exist: half the multiplications.
template <int M, int A, bool W>
inline void kq_block(__m256i w, const int8_t* hi, const uint8_t* lo, int64_t K, int64_t col, __m256i sv,
                     __m256i* ih, __m256i* il) {
  for (int m = 0; m < M; ++m) {
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(hi + m * K + col));
    ih[A * m] = dot_add(ih[A * m], _mm256_maddubs_epi16(w, h), sv);
    if (W) {
      const __m256i l = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(lo + m * K + col));
      il[A * m] = dot_add(il[A * m], _mm256_maddubs_epi16(l, w), sv);
    }
  }
}

// The A chains of row m's high and low sums as one float: 256 * hi + lo (8-bit activations: hi).
template <int A, bool W>
inline __m256 kq_total(const __m256i* ih, const __m256i* il, int m) {
  __m256i h = ih[A * m], l = il[A * m];
  for (int a = 1; a < A; ++a) {
    h = _mm256_add_epi32(h, ih[A * m + a]);
    if (W) l = _mm256_add_epi32(l, il[A * m + a]);
  }
  if (!W) return _mm256_cvtepi32_ps(h);
  return _mm256_fmadd_ps(_mm256_cvtepi32_ps(h), _mm256_set1_ps(256.0f), _mm256_cvtepi32_ps(l));
}

// vpshufb controls: element e of the eight int16 values of a 128-bit lane, in every element of the
// lane; kq_pick(e0, e1) picks e0 in the low lane and e1 in the high one.
inline __m256i kq_pick(int e0, int e1) {
  const char a0 = static_cast<char>(2 * e0), b0 = static_cast<char>(2 * e0 + 1);
  const char a1 = static_cast<char>(2 * e1), b1 = static_cast<char>(2 * e1 + 1);
  return _mm256_setr_epi8(a0, b0, a0, b0, a0, b0, a0, b0, a0, b0, a0, b0, a0, b0, a0, b0,
                          a1, b1, a1, b1, a1, b1, a1, b1, a1, b1, a1, b1, a1, b1, a1, b1);
}

template <int M>
constexpr int kq_chains() { return M <= 3 ? 2 : 1; }

// Q4_K: per super-block, y += d * xd * sum_j sc_j * sum_k q x16 - dmin * sum_j m_j * xs_j, the first sum
// exact in int32 (|sum| < 2^31: 32 columns per lane, 15 * 128 * 63 per column for hi), scaled once.
template <int M, bool W>
void q4k_rows(const SuperBlocks& xb, int64_t K, const uint8_t* const* rows, const int64_t* cols, float* y, int64_t N,
              int64_t n0, int64_t n1) {
  constexpr int A = kq_chains<M>();
  const int64_t S = K / 256, B = K / 32;
  const __m256i low4 = _mm256_set1_epi8(0x0F), nib16 = _mm256_set1_epi16(0x0F);
  __m256i pick[8];
  for (int j = 0; j < 8; ++j) pick[j] = kq_pick(j, j);
  for (int64_t n = n0; n < n1; ++n) {
    const uint8_t* row = rows[n];
    __m256 acc[M], constant[M];
    for (int m = 0; m < M; ++m) acc[m] = constant[m] = _mm256_setzero_ps();
    for (int64_t s = 0; s < S; ++s) {
      const uint8_t* blk = row + 144 * s;
      prefetch_ahead(blk, 144);
      // the 12 bytes of 6-bit scales and mins as three little-endian words, 4 bytes at a time
      uint32_t a, b, c;
      std::memcpy(&a, blk + 4, 4);
      std::memcpy(&b, blk + 8, 4);
      std::memcpy(&c, blk + 12, 4);
      const uint32_t s03 = a & 0x3F3F3F3Fu, m03 = b & 0x3F3F3F3Fu;
      const uint32_t s47 = (c & 0x0F0F0F0Fu) | (((a >> 6) & 0x03030303u) << 4);
      const uint32_t m47 = ((c >> 4) & 0x0F0F0F0Fu) | (((b >> 6) & 0x03030303u) << 4);
      // (the 8 bytes assembled in registers: two 4-byte stores read back as one 8-byte load would
      // stall on store forwarding at every super-block)
      const __m128i sc = _mm_cvtsi64_si128(static_cast<long long>(s03 | static_cast<uint64_t>(s47) << 32));
      const __m128i mn = _mm_cvtsi64_si128(static_cast<long long>(m03 | static_cast<uint64_t>(m47) << 32));
      const __m256i scales = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(sc));
      // dmin * m_j for the 8 sub-blocks (float32 products, as gguf's) times the sums of x
      const __m256 wm = _mm256_mul_ps(_mm256_set1_ps(half_at(blk + 2)), _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(mn)));
      for (int m = 0; m < M; ++m) constant[m] = _mm256_fmadd_ps(wm, _mm256_loadu_ps(xb.xs.data() + m * B + 8 * s), constant[m]);
      const float dw = half_at(blk);
      if (W && M > 1) {  // int16 weights * scale, shared by the rows: two multiplications per 32 and row
        __m256i it[M];
        for (int m = 0; m < M; ++m) it[m] = _mm256_setzero_si256();
        for (int c4 = 0; c4 < 4; ++c4) {
          const __m256i bytes = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 16 + 32 * c4));
          for (int half = 0; half < 2; ++half) {  // sub-block 2 c4 + half: the low, then the high nibbles
            const int j = 2 * c4 + half;
            const __m256i q = half ? _mm256_srli_epi16(bytes, 4) : bytes;
            const __m256i sc = _mm256_shuffle_epi8(scales, pick[j]);
            // columns of even index (low byte of each pair), of odd index (high byte), times sc_j (<= 945)
            const __m256i we = _mm256_mullo_epi16(_mm256_and_si256(q, nib16), sc);
            const __m256i wo = _mm256_mullo_epi16(_mm256_and_si256(_mm256_srli_epi16(q, 8), nib16), sc);
            const int16_t* xp = xb.x16p.data() + 256 * s + 32 * j;
            for (int m = 0; m < M; ++m) {
              const int16_t* xm = xp + m * K;
              it[m] = dot_add(dot_add(it[m], we, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xm))),
                              wo, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xm + 16)));
            }
          }
        }
        // lane i holds columns 4i .. 4i + 3 of every sub-block, as the one-row kernel's lanes do, and the
        // exact integer 256 hi + lo of its sums (|sum| < 2^31: 32 columns * 945 * 32767 per lane): the
        // same float after one rounding, so a row's result does not depend on the rows beside it
        for (int m = 0; m < M; ++m)
          acc[m] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(it[m]), _mm256_set1_ps(dw * xb.d[m * S + s]), acc[m]);
        continue;
      }
      __m256i ih[M * A], il[M * A];
      for (int i = 0; i < M * A; ++i) ih[i] = il[i] = _mm256_setzero_si256();
      for (int c4 = 0; c4 < 4; ++c4) {  // 32 bytes: sub-block 2 c4 in the low nibbles, 2 c4 + 1 in the high ones
        const __m256i bytes = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 16 + 32 * c4));
        const int j0 = 2 * c4, j1 = 2 * c4 + 1;
        kq_block<M, A, W>(_mm256_and_si256(bytes, low4), xb.hi.data(), xb.lo.data(), K, 256 * s + 32 * j0,
                       _mm256_shuffle_epi8(scales, pick[j0]), ih + j0 % A, il + j0 % A);
        kq_block<M, A, W>(_mm256_and_si256(_mm256_srli_epi16(bytes, 4), low4), xb.hi.data(), xb.lo.data(), K,
                       256 * s + 32 * j1, _mm256_shuffle_epi8(scales, pick[j1]), ih + j1 % A, il + j1 % A);
      }
      for (int m = 0; m < M; ++m)
        acc[m] = _mm256_fmadd_ps(kq_total<A, W>(ih, il, m), _mm256_set1_ps(dw * xb.d[m * S + s]), acc[m]);
    }
    for (int m = 0; m < M; ++m) y[m * N + cols[n]] = hsum(acc[m]) - hsum(constant[m]);
  }
}

// Q6_K: w = d * sc_g * (q - 32) per group g of 16 columns: the kernel multiplies the unsigned q and takes
// 32 * sum_g sc_g * sum_{k in g} x16 off (sh, sl), all in int32 per super-block.
template <int M, bool W>
void q6k_rows(const SuperBlocks& xb, int64_t K, const uint8_t* const* rows, const int64_t* cols, float* y, int64_t N,
              int64_t n0, int64_t n1) {
  constexpr int A = kq_chains<M>();
  const int64_t S = K / 256;
  const __m256i low4 = _mm256_set1_epi8(0x0F), low2 = _mm256_set1_epi8(0x03);
  __m256i pick[4];
  for (int r = 0; r < 4; ++r) pick[r] = kq_pick(2 * r, 2 * r + 1);
  for (int64_t n = n0; n < n1; ++n) {
    const uint8_t* row = rows[n];
    __m256 acc[M];
    for (int m = 0; m < M; ++m) acc[m] = _mm256_setzero_ps();
    for (int64_t s = 0; s < S; ++s) {
      const uint8_t* blk = row + 210 * s;
      prefetch_ahead(blk, 210);
      const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 192)));
      __m256i ih[M * A], il[M * A];
      for (int i = 0; i < M * A; ++i) ih[i] = il[i] = _mm256_setzero_si256();
      for (int m = 0; m < M; ++m) {  // the offset: -32 * sum_g sc_g * (sum of hi, of lo over group g)
        const __m256i th = _mm256_madd_epi16(sc16, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(&xb.sh[m * K / 16 + 16 * s])));
        const __m256i tl = W ? _mm256_madd_epi16(sc16, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(&xb.sl[m * K / 16 + 16 * s])))
                             : _mm256_setzero_si256();
        ih[A * m] = _mm256_sub_epi32(ih[A * m], _mm256_slli_epi32(th, 5));
        if (W) il[A * m] = _mm256_sub_epi32(il[A * m], _mm256_slli_epi32(tl, 5));
      }
      for (int h = 0; h < 2; ++h) {  // 128 values: ql bytes 64 h.., qh bytes 32 h..; groups 8 h .. 8 h + 7
        const __m256i scales = h == 0 ? _mm256_permute2x128_si256(sc16, sc16, 0x00) : _mm256_permute2x128_si256(sc16, sc16, 0x11);
        const __m256i ql0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 64 * h));
        const __m256i ql1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 64 * h + 32));
        const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 128 + 32 * h));
        const __m256i low[4] = {_mm256_and_si256(ql0, low4), _mm256_and_si256(ql1, low4),
                                _mm256_and_si256(_mm256_srli_epi16(ql0, 4), low4),
                                _mm256_and_si256(_mm256_srli_epi16(ql1, 4), low4)};
        const __m256i high[4] = {_mm256_and_si256(qh, low2), _mm256_and_si256(_mm256_srli_epi16(qh, 2), low2),
                                 _mm256_and_si256(_mm256_srli_epi16(qh, 4), low2),
                                 _mm256_and_si256(_mm256_srli_epi16(qh, 6), low2)};
        for (int r = 0; r < 4; ++r) {  // 32 values: block 8 s + 4 h + r, groups 2 (4 h + r) and + 1
          const int idx = 4 * h + r;
          const __m256i q = _mm256_or_si256(low[r], _mm256_slli_epi16(high[r], 4));
          kq_block<M, A, W>(q, xb.hi.data(), xb.lo.data(), K, 256 * s + 32 * idx, _mm256_shuffle_epi8(scales, pick[r]),
                         ih + idx % A, il + idx % A);
        }
      }
      const float dw = half_at(blk + 208);
      for (int m = 0; m < M; ++m)
        acc[m] = _mm256_fmadd_ps(kq_total<A, W>(ih, il, m), _mm256_set1_ps(dw * xb.d[m * S + s]), acc[m]);
    }
    for (int m = 0; m < M; ++m) y[m * N + cols[n]] = hsum(acc[m]);
  }
}

// Parts stacked by rows: part p (Q4_K or Q6_K blocks, raw uint8 [n_p, K / 256 * bytes]) gives output
// columns base_p .. base_p + n_p - 1; with an index (int64 [n_p], a permutation of 0..n_p - 1) column
// base_p + j is raw row index[j] (llama.cpp's interleaved q/k rows put back in order). The rows are read
// in memory order (a permuted order defeats the prefetchers: q/k ran at half speed) and each result
// written to its column (cols). One pass over all the parts' rows: one fork/join per call.
at::Tensor kquant_parts(const at::Tensor& x, const std::vector<at::Tensor>& raws, const std::vector<int64_t>& kinds,
                        const std::vector<at::Tensor>& indexes, int64_t bits, const char* op) {
  TORCH_CHECK(!raws.empty() && raws.size() == kinds.size() && raws.size() == indexes.size(),
              op, ": one kind and one index (empty: none) per part");
  TORCH_CHECK(bits == 16 || bits == 8, op, ": bits (the activations' width) must be 16 or 8, got ", bits);
  const bool wide = bits == 16;
  int64_t N = 0, K = -1;
  for (size_t p = 0; p < raws.size(); ++p) {
    TORCH_CHECK(kinds[p] == 0 || kinds[p] == 1, op, ": kind must be 0 (Q4_K) or 1 (Q6_K), got ", kinds[p]);
    const int64_t bytes = kinds[p] ? 210 : 144;
    const at::Tensor& raw = raws[p];
    TORCH_CHECK(raw.dim() == 2 && raw.scalar_type() == at::kByte && raw.is_contiguous() && raw.size(1) % bytes == 0,
                op, ": raw must be contiguous uint8 [N, K / 256 * ", bytes, "]");
    const int64_t k = raw.size(1) / bytes * 256;
    TORCH_CHECK(K < 0 || k == K, op, ": the parts must have the same K, got ", K, " and ", k);
    K = k;
    if (indexes[p].defined() && indexes[p].numel() > 0) {
      const at::Tensor& index = indexes[p];
      TORCH_CHECK(index.dim() == 1 && index.scalar_type() == at::kLong && index.is_contiguous() &&
                  index.size(0) == raw.size(0), op, ": index must be a contiguous int64 [", raw.size(0), "] tensor");
    }
    N += raw.size(0);
  }
  const int64_t M = x.size(0);
  check_x(x, K, op);
  std::vector<const uint8_t*> rows(N);
  std::vector<int64_t> cols(N, -1);
  std::vector<int64_t> bounds{0};  // part p's rows: bounds[p] .. bounds[p + 1] - 1
  for (size_t p = 0; p < raws.size(); ++p) {
    const int64_t n = raws[p].size(0), row_bytes = raws[p].size(1), base = bounds.back();
    const uint8_t* rp = raws[p].data_ptr<uint8_t>();
    const int64_t* index = indexes[p].defined() && indexes[p].numel() > 0 ? indexes[p].data_ptr<int64_t>() : nullptr;
    for (int64_t r = 0; r < n; ++r) rows[base + r] = rp + r * row_bytes;
    for (int64_t j = 0; j < n; ++j) {
      const int64_t r = index ? index[j] : j;
      TORCH_CHECK(r >= 0 && r < n, op, ": index[", j, "] = ", r, " is not in 0..", n - 1);
      TORCH_CHECK(cols[base + r] < 0, op, ": index is not a permutation (", r, " appears twice)");
      cols[base + r] = base + j;
    }
    bounds.push_back(base + n);
  }
  at::Tensor y = at::empty({M, N}, x.options());
  const float* xp = x.data_ptr<float>();
  std::vector<SuperBlocks> passes;
  for (int64_t r = 0; r < M; r += kMaxRows) passes.emplace_back(xp + r * K, std::min(kMaxRows, M - r), K, wide);
  float* yp = y.data_ptr<float>();
  const uint8_t* const* rp = rows.data();
  const int64_t* cp = cols.data();
  by_passes(M, N, [&](int64_t r, int64_t count, int64_t n0, int64_t n1) {
    for (size_t p = 0; p < raws.size(); ++p) {
      const int64_t a = std::max(n0, bounds[p]), b = std::min(n1, bounds[p + 1]);
      if (a >= b) continue;
      const SuperBlocks& xb = passes[r / kMaxRows];
      with_rows(count, [&](auto m_) {
        constexpr int R = decltype(m_)::value;
        if (kinds[p] && wide) q6k_rows<R, true>(xb, K, rp, cp, yp + r * N, N, a, b);
        else if (kinds[p]) q6k_rows<R, false>(xb, K, rp, cp, yp + r * N, N, a, b);
        else if (wide) q4k_rows<R, true>(xb, K, rp, cp, yp + r * N, N, a, b);
        else q4k_rows<R, false>(xb, K, rp, cp, yp + r * N, N, a, b);
      });
    }
  });
  return y;
}

at::Tensor q4k_linear(const at::Tensor& x, const at::Tensor& raw) { return kquant_parts(x, {raw}, {0}, {at::Tensor()}, 16, "q4k_linear"); }
at::Tensor q6k_linear(const at::Tensor& x, const at::Tensor& raw) { return kquant_parts(x, {raw}, {1}, {at::Tensor()}, 16, "q6k_linear"); }
// (indexes as a plain tensor list, an empty one for none: torch.jit.trace takes no Tensor?[] input)
at::Tensor kquant_linear(const at::Tensor& x, at::TensorList raws, at::IntArrayRef kinds, at::TensorList indexes,
                         int64_t bits) {
  return kquant_parts(x, raws.vec(), kinds.vec(), indexes.vec(), bits, "kquant_linear");
}

at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  TORCH_CHECK(x.dim() >= 1 && x.scalar_type() == at::kFloat && x.is_contiguous(),
              "rms_norm: x must be a contiguous float32 tensor, got ", x.sizes(), " ", x.scalar_type());
  const int64_t D = x.size(-1);
  TORCH_CHECK(D > 0 && weight.scalar_type() == at::kFloat && weight.is_contiguous() && weight.numel() == D,
              "rms_norm: weight must be a contiguous float32 [", D, "] tensor");
  at::Tensor y = at::empty_like(x);
  const float* xp = x.data_ptr<float>();
  const float* wp = weight.data_ptr<float>();
  float* yp = y.data_ptr<float>();
  const float e = static_cast<float>(eps);
  at::parallel_for(0, x.numel() / D, std::max<int64_t>(1, 65536 / D), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* v = xp + r * D;
      float* out = yp + r * D;
      __m256 sq = _mm256_setzero_ps();
      int64_t k = 0;
      for (; k + 8 <= D; k += 8) sq = _mm256_fmadd_ps(load8(v + k), load8(v + k), sq);
      float sum = hsum(sq);
      for (int64_t t = k; t < D; ++t) sum += v[t] * v[t];
      const float inv = 1.0f / std::sqrt(sum / static_cast<float>(D) + e);
      const __m256 iv = _mm256_set1_ps(inv);
      for (k = 0; k + 8 <= D; k += 8)
        _mm256_storeu_ps(out + k, _mm256_mul_ps(load8(wp + k), _mm256_mul_ps(load8(v + k), iv)));
      for (int64_t t = k; t < D; ++t) out[t] = wp[t] * (v[t] * inv);
    }
  });
  return y;
}

// exp of 8 floats (Cephes' expf: 2^n * a degree-5 polynomial of the remainder, ~1 ulp; x < -87 gives
// ~0, as softmax wants).
inline __m256 exp8(__m256 x) {
  x = _mm256_max_ps(_mm256_min_ps(x, _mm256_set1_ps(88.3762626647949f)), _mm256_set1_ps(-87.0f));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  x = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  x = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), x);
  __m256 y = _mm256_set1_ps(1.9875691500e-4f);
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.3981999507e-3f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(8.3334519073e-3f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(4.1665795894e-2f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.6666665459e-1f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(5.0000001201e-1f));
  y = _mm256_fmadd_ps(y, _mm256_mul_ps(x, x), _mm256_add_ps(x, _mm256_set1_ps(1.0f)));
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}

// One key/value head's attention for R queries of DV * 8 values each (the accumulators stay in registers).
template <int DV>
void attend_head(const float* q, const float* kh, const float* vh, int64_t S, int64_t R, float scale, float* p,
                 float* y) {
  constexpr int64_t D = DV * 8;
  for (int64_t r = 0; r < R; ++r) {
    const float* qr = q + r * D;
    __m256 qv[DV];
    for (int j = 0; j < DV; ++j) qv[j] = load8(qr + 8 * j);
    float top = -INFINITY;
    for (int64_t t = 0; t < S; ++t) {  // scores: two independent sums per dot product
      const float* kt = kh + t * D;
      __m256 d0 = _mm256_mul_ps(qv[0], load8(kt)), d1 = _mm256_mul_ps(qv[1], load8(kt + 8));
      for (int j = 2; j < DV; j += 2) {
        d0 = _mm256_fmadd_ps(qv[j], load8(kt + 8 * j), d0);
        d1 = _mm256_fmadd_ps(qv[j + 1], load8(kt + 8 * j + 8), d1);
      }
      p[t] = hsum(_mm256_add_ps(d0, d1)) * scale;
      top = std::max(top, p[t]);
    }
    int64_t t0 = 0;
    const __m256 shift = _mm256_set1_ps(top);
    __m256 sum = _mm256_setzero_ps();
    for (; t0 + 8 <= S; t0 += 8) {
      const __m256 e = exp8(_mm256_sub_ps(load8(p + t0), shift));
      _mm256_storeu_ps(p + t0, e);
      sum = _mm256_add_ps(sum, e);
    }
    float total = hsum(sum);
    for (int64_t t = t0; t < S; ++t) {
      p[t] = std::exp(p[t] - top);
      total += p[t];
    }
    __m256 acc[DV];
    for (int j = 0; j < DV; ++j) acc[j] = _mm256_setzero_ps();
    for (int64_t t = 0; t < S; ++t) {  // weighted sum of the values
      const __m256 w = _mm256_set1_ps(p[t]);
      const float* vt = vh + t * D;
      for (int j = 0; j < DV; ++j) acc[j] = _mm256_fmadd_ps(w, load8(vt + 8 * j), acc[j]);
    }
    const __m256 inv = _mm256_set1_ps(1.0f / total);
    for (int j = 0; j < DV; ++j) _mm256_storeu_ps(y + r * D + 8 * j, _mm256_mul_ps(acc[j], inv));
  }
}

// Row b attends to keys starts[b] .. S - 1 of k and v (starts null: all S keys).
at::Tensor attention_rows(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, double scale,
                          const int64_t* starts, const char* op) {
  TORCH_CHECK(q.dim() == 4 && q.scalar_type() == at::kFloat && q.is_contiguous(),
              op, ": q must be a contiguous float32 [B, KV, R, D] tensor, got ", q.sizes());
  const int64_t B = q.size(0), KV = q.size(1), R = q.size(2), D = q.size(3);
  TORCH_CHECK(D == 64 || D == 128, op, ": head size must be 64 or 128, got ", D);
  for (const at::Tensor* t : {&k, &v})
    TORCH_CHECK(t->dim() == 4 && t->scalar_type() == at::kFloat && t->size(0) == B && t->size(1) == KV &&
                t->size(3) == D && t->stride(3) == 1 && (t->stride(2) == D || t->size(2) == 1) && t->size(2) == k.size(2),
                op, ": k and v must be float32 [", B, ", ", KV, ", S, ", D, "] with contiguous rows, got ",
                t->sizes(), " strides ", t->strides());
  const int64_t S = k.size(2);
  TORCH_CHECK(S > 0, op, ": no keys");
  if (starts)
    for (int64_t b = 0; b < B; ++b)
      TORCH_CHECK(starts[b] >= 0 && starts[b] < S, op, ": starts[", b, "] = ", starts[b], " is not in 0..", S - 1);
  at::Tensor y = at::empty({B, KV, R, D}, q.options());
  const float* qp = q.data_ptr<float>();
  const float* kp = k.data_ptr<float>();
  const float* vp = v.data_ptr<float>();
  float* yp = y.data_ptr<float>();
  const float sc = static_cast<float>(scale);
  // heads split over the threads only when each has enough work to pay for waking them
  at::parallel_for(0, B * KV, std::max<int64_t>(1, 8192 / (S * R)), [&](int64_t h0, int64_t h1) {
    std::vector<float> p(S);
    for (int64_t h = h0; h < h1; ++h) {
      const int64_t b = h / KV, g = h % KV, t0 = starts ? starts[b] : 0;
      const float* kh = kp + b * k.stride(0) + g * k.stride(1) + t0 * D;
      const float* vh = vp + b * v.stride(0) + g * v.stride(1) + t0 * D;
      if (D == 64) attend_head<8>(qp + h * R * D, kh, vh, S - t0, R, sc, p.data(), yp + h * R * D);
      else attend_head<16>(qp + h * R * D, kh, vh, S - t0, R, sc, p.data(), yp + h * R * D);
    }
  });
  return y;
}

at::Tensor decode_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, double scale) {
  return attention_rows(q, k, v, scale, nullptr, "decode_attention");
}

at::Tensor decode_attention_from(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, double scale,
                                 const at::Tensor& starts) {
  TORCH_CHECK(starts.dim() == 1 && starts.scalar_type() == at::kLong && starts.is_contiguous() &&
              starts.size(0) == q.size(0),
              "decode_attention_from: starts must be a contiguous int64 [B] tensor, got ", starts.sizes(), " ",
              starts.scalar_type());
  return attention_rows(q, k, v, scale, starts.data_ptr<int64_t>(), "decode_attention_from");
}

// RoPE on one head of D values: out = x * cos + roll(x, D / 2) * sin (sin with the sign of
// rotate_half folded in), each product and the sum rounded as torch's elementwise ops round them.
inline void rope_head(const float* x, const float* cos, const float* sin, int64_t D, float* out) {
  const int64_t half = D / 2;
  for (int64_t i = 0; i < D; i += 8) {
    const int64_t j = i < half ? i + half : i - half;  // roll by D / 2: out[i] pairs with x[i - D / 2]
    __m256 a = _mm256_mul_ps(load8(x + i), load8(cos + i));
    __m256 b = _mm256_mul_ps(load8(x + j), load8(sin + i));
    // (each product rounded on its own, as torch's ops round it: no fused multiply-add may form here)
    asm("" : "+x"(a), "+x"(b));
    _mm256_storeu_ps(out + i, _mm256_add_ps(a, b));
  }
}

// One decode step's attention from the fused q/k/v projection: q and k rotated (RoPE), k and v written
// to the last slot of the cache views, then rows attend as attention_rows does.
at::Tensor rope_attention(const at::Tensor& qkv, const at::Tensor& cos, const at::Tensor& sin, at::Tensor k,
                          at::Tensor v, int64_t heads, double scale, const c10::optional<at::Tensor>& starts_) {
  const char* op = "rope_attention";
  TORCH_CHECK(k.dim() == 4 && v.dim() == 4 && k.scalar_type() == at::kFloat && v.scalar_type() == at::kFloat &&
              k.sizes() == v.sizes(), op, ": k and v must be float32 [B, KV, S, D] cache views of one shape");
  const int64_t B = k.size(0), KV = k.size(1), S = k.size(2), D = k.size(3);
  TORCH_CHECK(D == 64 || D == 128, op, ": head size must be 64 or 128, got ", D);
  TORCH_CHECK(S > 0 && heads > 0 && heads % KV == 0, op, ": ", heads, " query heads for ", KV, " key/value heads");
  for (const at::Tensor* t : {&k, &v})
    TORCH_CHECK(t->stride(3) == 1 && (t->stride(2) == D || S == 1), op, ": k and v rows must be contiguous");
  const int64_t R = heads / KV, width = (heads + 2 * KV) * D;
  TORCH_CHECK(qkv.scalar_type() == at::kFloat && qkv.is_contiguous() && qkv.numel() == B * width, op,
              ": qkv must be a contiguous float32 [", B, ", ", width, "] tensor, got ", qkv.sizes());
  for (const at::Tensor* t : {&cos, &sin})
    TORCH_CHECK(t->scalar_type() == at::kFloat && t->is_contiguous() && (t->numel() == D || t->numel() == B * D),
                op, ": cos and sin must be contiguous float32 with ", D, " values (all rows) or ", B * D, " (per row)");
  TORCH_CHECK(cos.numel() == sin.numel(), op, ": cos and sin differ in size");
  const int64_t* starts = nullptr;
  if (starts_.has_value() && starts_->defined()) {
    const at::Tensor& s = *starts_;
    TORCH_CHECK(s.dim() == 1 && s.scalar_type() == at::kLong && s.is_contiguous() && s.size(0) == B,
                op, ": starts must be a contiguous int64 [", B, "] tensor");
    starts = s.data_ptr<int64_t>();
    for (int64_t b = 0; b < B; ++b)
      TORCH_CHECK(starts[b] >= 0 && starts[b] < S, op, ": starts[", b, "] = ", starts[b], " is not in 0..", S - 1);
  }
  at::Tensor y = at::empty({B, heads * D}, qkv.options());
  const float* xp = qkv.data_ptr<float>();
  const float* cp = cos.data_ptr<float>();
  const float* sp = sin.data_ptr<float>();
  float* kp = k.data_ptr<float>();
  float* vp = v.data_ptr<float>();
  float* yp = y.data_ptr<float>();
  const bool per_row = cos.numel() == B * D;
  const float sc = static_cast<float>(scale);
  // heads split over the threads from a quarter of attention_rows' threshold (each head also rotates
  // its queries and key): 8 rows x 3 heads x 44 slots take 13-16 us on 2 threads against 25-29 us on one
  at::parallel_for(0, B * KV, std::max<int64_t>(1, 2048 / (S * R)), [&](int64_t h0, int64_t h1) {
    std::vector<float> p(S), q(R * D);
    for (int64_t h = h0; h < h1; ++h) {
      const int64_t b = h / KV, g = h % KV, t0 = starts ? starts[b] : 0;
      const float* row = xp + b * width;
      const float* c = cp + (per_row ? b * D : 0);
      const float* s = sp + (per_row ? b * D : 0);
      for (int64_t r = 0; r < R; ++r) rope_head(row + (g * R + r) * D, c, s, D, q.data() + r * D);
      float* kh = kp + b * k.stride(0) + g * k.stride(1);
      float* vh = vp + b * v.stride(0) + g * v.stride(1);
      rope_head(row + (heads + g) * D, c, s, D, kh + (S - 1) * k.stride(2));
      std::memcpy(vh + (S - 1) * v.stride(2), row + (heads + KV + g) * D, D * sizeof(float));
      float* out = yp + b * heads * D + g * R * D;
      if (D == 64) attend_head<8>(q.data(), kh + t0 * D, vh + t0 * D, S - t0, R, sc, p.data(), out);
      else attend_head<16>(q.data(), kh + t0 * D, vh + t0 * D, S - t0, R, sc, p.data(), out);
    }
  });
  return y;
}

}  // namespace

TORCH_LIBRARY(lispe, m) {
  m.def("int8_linear(Tensor x, Tensor q, Tensor scale) -> Tensor");
  m.def("int4_linear(Tensor x, Tensor q, Tensor sz, int bits=16) -> Tensor");
  m.def("int8_block_linear(Tensor x, Tensor q, Tensor so, int bits=32) -> Tensor");
  m.def("q4k_linear(Tensor x, Tensor raw) -> Tensor");
  m.def("q6k_linear(Tensor x, Tensor raw) -> Tensor");
  m.def("kquant_linear(Tensor x, Tensor[] raws, int[] kinds, Tensor[] indexes, int bits=16) -> Tensor");
  m.def("rms_norm(Tensor x, Tensor weight, float eps) -> Tensor");
  m.def("decode_attention(Tensor q, Tensor k, Tensor v, float scale) -> Tensor");
  m.def("decode_attention_from(Tensor q, Tensor k, Tensor v, float scale, Tensor starts) -> Tensor");
  m.def("rope_attention(Tensor qkv, Tensor cos, Tensor sin, Tensor(a!) k, Tensor(b!) v, int heads, float scale, "
        "Tensor? starts=None) -> Tensor");
}

TORCH_LIBRARY_IMPL(lispe, CPU, m) {
  m.impl("int8_linear", &int8_linear);
  m.impl("int4_linear", &int4_linear);
  m.impl("int8_block_linear", &int8_block_linear);
  m.impl("q4k_linear", &q4k_linear);
  m.impl("q6k_linear", &q6k_linear);
  m.impl("kquant_linear", &kquant_linear);
  m.impl("rms_norm", &rms_norm);
  m.impl("decode_attention", &decode_attention);
  m.impl("rope_attention", &rope_attention);
  m.impl("decode_attention_from", &decode_attention_from);
}
