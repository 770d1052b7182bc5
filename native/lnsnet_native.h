/* lnsnet's C kernels: the hot loops of lnsnet/kernels, bit for bit.
 *
 * Every kernel takes flat, contiguous integer buffers and their sizes,
 * allocates nothing (scratch comes from the caller) and knows nothing of
 * Python.  lnsnet/native.py checks dtypes, contiguity, shapes and sizes
 * before each call; the kernels trust those and only guard table indices
 * against exponent values, which no caller can vouch for.
 *
 * Exponents are int64 and signs int8 (-1, 0, +1).  Arithmetic that the NumPy
 * reference does in wrapping int64 is done here in uint64, so that it wraps
 * the same way instead of being undefined behaviour.
 *
 * The block between CDEF BEGIN and CDEF END is also what cffi is told
 * (native/build_native.py reads it), so it holds plain declarations only.
 */
#ifndef LNSNET_NATIVE_H
#define LNSNET_NATIVE_H

#include <stdint.h>

/* CDEF BEGIN */
#define LNS_POW2_BITS 24
#define LNS_MANT_BITS 61
#define LNS_FIXED_CEIL_BITS 62

#define LNS_MODE_LINEAR 0
#define LNS_MODE_LOGADD 1
#define LNS_MODE_MITCHELL 2

/* The ROMs of one gamma (lnsnet/tables.py), borrowed from NumPy arrays. */
typedef struct {
    int32_t frac_bits;          /* f, with gamma = 2**f */
    const int64_t *pow2;        /* gamma entries, each < 2**(LNS_POW2_BITS+1) */
    const int64_t *mitchell;    /* gamma entries, each < 2**(LNS_POW2_BITS+1) */
    const int64_t *bound;       /* gamma entries */
    const int32_t *log2;        /* 2**(f+1) entries, each in 0..gamma */
    /* SB and DB, n entries each (0 from n on), packed as lnsnet/tables.py
     * says: entries d < dense whole, then per block of 64 the first entry
     * and a word of steps; read them with lns_sb and lns_db. */
    int64_t n;
    int64_t dense;
    const int32_t *sb;          /* min(n, dense) entries */
    const int32_t *db;
    const int32_t *sb_base;     /* one per block (a dummy entry if none) */
    const int32_t *db_base;
    const uint64_t *sb_steps;
    const uint64_t *db_steps;
} lns_tables;

int lns_num_threads(void);
/* Threads for the parallel loops that take no thread count (elementwise,
 * fixed point, sums), started from the calling thread; matmul takes its own. */
void lns_set_threads(int32_t threads);
/* The SIMD code in use: "avx512", "avx2" or "portable"; lns_simd_limit caps
 * it (0 portable, 1 avx2, 2 avx512) below what the CPU has, for tests and
 * benchmarks, and returns the level now in use. */
const char *lns_simd_level(void);
int lns_simd_limit(int32_t level);

void lns_add(int64_t n, const int8_t *sa, const int64_t *xa,
             const int8_t *sb, const int64_t *xb, int negate_b,
             const lns_tables *t, int8_t *out_s, int64_t *out_x);

void lns_to_fixed(int64_t n, const int8_t *s, const int64_t *x, int64_t frac,
                  const lns_tables *t, int64_t *out);
void lns_from_fixed(int64_t n, const int64_t *value, const int64_t *e0,
                    const lns_tables *t, int8_t *out_s, int64_t *out_x);

/* The reductions (lns_sum, lns_matmul) read int32 exponents, the width
 * tensors hold (lnsnet.format), so that no operand is widened for a call;
 * the wrappers send wider ones that do not fit to the NumPy reference. */
void lns_sum(int64_t rows, int64_t k, const int8_t *s, const int32_t *x,
             int32_t mode, int32_t margin, const lns_tables *t,
             int8_t *out_s, int64_t *out_x);

/* Requantization (lnsnet/kernels/quantize.py): each exponent is clipped to
 * +-far, shifted right by shift bits after adding offset[i] (or half, when
 * offset is NULL) or left by -shift bits, then held in [low, top]; below low
 * it flushes to sign 0 when flush.  _top gives the largest such value with a
 * nonzero sign, and returns 0 when there is none.  One pair per exponent
 * width; exponents come out as int32. */
typedef struct {
    int64_t far;
    int32_t shift;      /* -62..62 */
    int64_t top;
    int64_t low;
    int32_t flush;
} lns_requant;
int lns_requantize_top_i32(int64_t n, const int8_t *s, const int32_t *x,
                           const int64_t *offset, const lns_requant *q, int64_t *top);
int lns_requantize_top_i64(int64_t n, const int8_t *s, const int64_t *x,
                           const int64_t *offset, const lns_requant *q, int64_t *top);
void lns_requantize_i32(int64_t n, const int8_t *s, const int32_t *x, const int64_t *offset,
                        const lns_requant *q, int8_t *out_s, int32_t *out_x);
void lns_requantize_i64(int64_t n, const int8_t *s, const int64_t *x, const int64_t *offset,
                        const lns_requant *q, int8_t *out_s, int32_t *out_x);

/* Madam's two passes (lnsnet/kernels/madam.py).  madam_moment: beta*v ⊕
 * (1-beta)*g**2 with beta and 1-beta as exponents.  madam_exponents: the new
 * master exponents; offset is NULL for rounding to nearest, else n values
 * below 2**shift (stochastic rounding). */
typedef struct {
    int64_t correction;  /* exponent of 1 - beta**t */
    int64_t bound;       /* exponent of g_bound */
    int64_t decay;
    int64_t factor;
    int32_t shift;       /* 1..62 */
    int64_t frac;
    int64_t x_max;
} lns_madam;
void lns_madam_moment(int64_t n, const int8_t *g_s, const int64_t *g_x, const int8_t *v_s,
                      const int64_t *v_x, int64_t beta, int64_t one_minus_beta,
                      const lns_tables *t, int8_t *out_s, int64_t *out_x);
void lns_madam_exponents(int64_t n, const int8_t *g_s, const int64_t *g_x, const int8_t *w_s,
                         const int64_t *w_x, const int8_t *v_s, const int64_t *v_x,
                         const lns_madam *c, const int64_t *offset, const lns_tables *t,
                         int64_t *out_x);

/* batch products (m, k) @ (k, n); product b reads sa/xa from a_offsets[b]
 * and sb/xb from b_offsets[b] (element offsets, so a shared operand is not
 * copied) and writes out_s/out_x from b*m*n.  margin is the reference's left
 * margin L for k.  scratch must hold lns_matmul_scratch_words(...) words for
 * the same arguments; lns_matmul returns 0, or -1 without writing anything
 * when it does not. */
int64_t lns_matmul_scratch_words(int64_t batch, int64_t m, int64_t k, int64_t n,
                                 int32_t mode, const lns_tables *t, int32_t threads);
int lns_matmul(int64_t batch, int64_t m, int64_t k, int64_t n,
               const int8_t *sa, const int32_t *xa, const int64_t *a_offsets,
               const int8_t *sb, const int32_t *xb, const int64_t *b_offsets,
               int32_t mode, int32_t margin, const lns_tables *t,
               int64_t *scratch, int64_t scratch_words, int32_t threads,
               int8_t *out_s, int64_t *out_x);
/* CDEF END */

/* ---- shared by the .c files, not part of the Python interface ---------- */

/* SIMD levels.  Functions for the higher ones are compiled with these target
 * attributes (no -march for the whole build) and chosen at run time. */
enum { LNS_SIMD_PORTABLE = 0, LNS_SIMD_AVX2 = 1, LNS_SIMD_AVX512 = 2 };
#if defined(__GNUC__) && defined(__x86_64__)
#define LNS_X86 1
#define LNS_TARGET_AVX2 __attribute__((target("avx2")))
#define LNS_TARGET_AVX512 \
    __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512cd,avx2")))
/* used only after __builtin_cpu_supports("avx512vbmi") */
#define LNS_TARGET_AVX512_VBMI \
    __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512cd,avx512vbmi,avx2")))
#endif

/* The level in use: what the CPU has, capped by lns_simd_limit. */
int lns_simd_current(void);

/* Elementwise kernels go parallel from this many elements (below it a
 * parallel region costs more than it saves), in blocks of LNS_BLOCK so that
 * each SIMD body runs over a contiguous stretch. */
#define LNS_PARALLEL_MIN 65536
#define LNS_BLOCK 4096

/* A loop body (an always_inline function returning void) compiled once per
 * SIMD level as NAME_portable, NAME_avx2 and NAME_avx512, so that the
 * compiler vectorizes it with each level's instructions; LNS_PICK(NAME) is
 * the one for the level in use. */
#ifdef LNS_X86
#define LNS_LEVELS(NAME, PARAMS, ARGS)                                                     \
static void NAME##_portable PARAMS { NAME ARGS; }                                          \
LNS_TARGET_AVX2 static void NAME##_avx2 PARAMS { NAME ARGS; }                              \
LNS_TARGET_AVX512 static void NAME##_avx512 PARAMS { NAME ARGS; }
#define LNS_PICK(NAME) (lns_simd_current() == LNS_SIMD_AVX512 ? NAME##_avx512 :            \
                        lns_simd_current() == LNS_SIMD_AVX2 ? NAME##_avx2 : NAME##_portable)
#else
#define LNS_LEVELS(NAME, PARAMS, ARGS) static void NAME##_portable PARAMS { NAME ARGS; }
#define LNS_PICK(NAME) NAME##_portable
#endif

/* v * 2**shift for 0 <= v < 2**(LNS_POW2_BITS+1) and shift <= 37: exact left
 * shifts, right shifts rounded half up (lnsnet.kernels.fixed.shift_round). */
static inline int64_t lns_shift_round(int64_t v, int64_t shift)
{
    /* Selects, not branches: the shifts of a batch go both ways at random.
     * A right shift by 63 leaves 0 here, as the reference says. */
    int64_t left = shift > 0 ? shift : 0;
    int64_t right = shift < -63 ? 63 : (shift < 0 ? -shift : 0);
    int64_t half = (int64_t)(((uint64_t)1 << right) >> 1);
    int64_t down = (v + half) >> right;
    return shift >= 0 ? v << left : down;
}

/* round(s * 2**(x/gamma) * 2**frac), saturating at 2**LNS_FIXED_CEIL_BITS - 1:
 * lnsnet.kernels.fixed.to_fixed for one element. */
static inline int64_t lns_to_fixed_one(int8_t s, int64_t x, int64_t frac, const lns_tables *t)
{
    int32_t f = t->frac_bits;
    int64_t mask = ((int64_t)1 << f) - 1;
    /* POW2 < 2**(POW2_BITS+1): a larger left shift would pass the ceiling. */
    int64_t max_shift = LNS_FIXED_CEIL_BITS - LNS_POW2_BITS - 1;
    int64_t ceiling = ((int64_t)1 << LNS_FIXED_CEIL_BITS) - 1;
    int64_t shift = (x >> f) + frac - LNS_POW2_BITS;
    int64_t entry = t->pow2[x & mask];  /* read whatever the shift: a select, not a branch */
    int64_t mag = shift > max_shift ? ceiling : lns_shift_round(entry, shift);
    return s != 0 ? (int64_t)((uint64_t)(int64_t)s * (uint64_t)mag) : 0;
}

/* (sign, exponent) of value * 2**e0, rounded to nearest in the log domain:
 * lnsnet.kernels.fixed.from_fixed for one element.  Branch-free, so that
 * loops over it vectorize (leading zeros, then two table gathers). */
static inline __attribute__((always_inline))
void lns_from_fixed_elem(int64_t value, int64_t e0, const lns_tables *t,
                         int8_t *out_s, int64_t *out_x)
{
    int64_t sign = (value > 0) - (value < 0);
    int64_t mag = value < 0 ? (int64_t)(0u - (uint64_t)value) : value;
    /* bit_length - 1; the reference's bit_length gives 64 for the one
     * negative |value| (INT64_MIN) */
    int64_t top = 63 - (int64_t)__builtin_clzll((uint64_t)mag | 1u);
    int64_t n = mag < 0 ? 63 : (mag == 0 ? -1 : top);
    int64_t up = LNS_MANT_BITS - n;           /* at most 62 */
    int64_t down = n - LNS_MANT_BITS;         /* at most 2 */
    up = up < 0 ? 0 : up;
    down = down < 0 ? 0 : down;
    int64_t mant = (int64_t)((uint64_t)mag << up) >> down;
    int32_t f = t->frac_bits;
    int64_t gamma = (int64_t)1 << f;
    int64_t bucket = (mant >> (LNS_MANT_BITS - f - 1)) & (2 * gamma - 1);
    int64_t k = t->log2[bucket];
    int64_t at = k < gamma - 1 ? k : gamma - 1;
    k += (k < gamma) & (mant >= t->bound[at]);
    uint64_t x = (((uint64_t)n + (uint64_t)e0) << f) + (uint64_t)k;
    *out_s = (int8_t)sign;
    *out_x = sign != 0 ? (int64_t)x : 0;
}

#ifdef LNS_X86
#include <immintrin.h>

/* lns_from_fixed_elem on 8 lanes: the same steps, as AVX-512 instructions
 * (GCC does not vectorize the element version). */
LNS_TARGET_AVX512 static inline
void lns_from_fixed_avx512(__m512i value, __m512i e0, const lns_tables *t,
                           __m128i *out_s, __m512i *out_x)
{
    int32_t f = t->frac_bits;
    int64_t gamma = (int64_t)1 << f;
    __m512i zero = _mm512_setzero_si512(), one = _mm512_set1_epi64(1);
    __mmask8 nonzero = _mm512_test_epi64_mask(value, value);
    __mmask8 negative = _mm512_movepi64_mask(value);
    __m512i mag = _mm512_abs_epi64(value);  /* INT64_MIN stays INT64_MIN, as in NumPy */
    /* bit_length - 1: -1 for 0, and 63 for INT64_MIN, whose lzcnt is 0 */
    __m512i n = _mm512_sub_epi64(_mm512_set1_epi64(63), _mm512_lzcnt_epi64(mag));
    __m512i mant_bits = _mm512_set1_epi64(LNS_MANT_BITS);
    __m512i up = _mm512_max_epi64(_mm512_sub_epi64(mant_bits, n), zero);
    __m512i down = _mm512_max_epi64(_mm512_sub_epi64(n, mant_bits), zero);
    __m512i mant = _mm512_srav_epi64(_mm512_sllv_epi64(mag, up), down);
    __m512i bucket = _mm512_and_si512(
        _mm512_sra_epi64(mant, _mm_cvtsi64_si128(LNS_MANT_BITS - f - 1)),
        _mm512_set1_epi64(2 * gamma - 1));
    __m512i k = _mm512_cvtepi32_epi64(_mm512_i64gather_epi32(bucket, t->log2, 4));
    __m512i last = _mm512_set1_epi64(gamma - 1);
    __m512i bound = _mm512_i64gather_epi64(_mm512_min_epi64(k, last), t->bound, 8);
    __mmask8 step = _mm512_cmple_epi64_mask(k, last) & _mm512_cmpge_epi64_mask(mant, bound);
    k = _mm512_mask_add_epi64(k, step, k, one);
    __m512i x = _mm512_add_epi64(_mm512_sll_epi64(_mm512_add_epi64(n, e0), _mm_cvtsi64_si128(f)), k);
    __m512i sign = _mm512_mask_blend_epi64(negative, one, _mm512_set1_epi64(-1));
    *out_s = _mm512_cvtepi64_epi8(_mm512_maskz_mov_epi64(nonzero, sign));
    *out_x = _mm512_maskz_mov_epi64(nonzero, x);
}
#endif

/* Entry d of a packed table (step -1 for SB, +1 for DB), 0 from n on. */
static inline int64_t lns_packed_at(const int32_t *head, const int32_t *base,
                                    const uint64_t *steps, int64_t step, const lns_tables *t,
                                    uint64_t d)
{
    if (d >= (uint64_t)t->n)
        return 0;
    if (d < (uint64_t)t->dense)
        return head[d];
    uint64_t e = d - (uint64_t)t->dense;
    /* bits 1..e mod 64; at e mod 64 = 63 the shift wraps 2 to 0, and 0 - 1 is every bit */
    uint64_t below = steps[e / 64] & (((uint64_t)2 << (e % 64)) - 1);
    return base[e / 64] + step * (int64_t)__builtin_popcountll(below);
}

static inline int64_t lns_sb(const lns_tables *t, uint64_t d)
{
    return lns_packed_at(t->sb, t->sb_base, t->sb_steps, -1, t, d);
}

static inline int64_t lns_db(const lns_tables *t, uint64_t d)
{
    return lns_packed_at(t->db, t->db_base, t->db_steps, 1, t, d);
}

/* a ⊕ b for one pair: lnsnet.kernels.elementwise.add for one element. */
static inline void lns_add_one(int8_t sa, int64_t xa, int8_t sb, int64_t xb,
                               const lns_tables *t, int8_t *out_s, int64_t *out_x)
{
    int a_larger = xa >= xb;
    uint64_t d = a_larger ? (uint64_t)xa - (uint64_t)xb : (uint64_t)xb - (uint64_t)xa;
    int same = sa == sb;
    int64_t corr = same ? lns_sb(t, d) : lns_db(t, d);
    int8_t sign = a_larger ? sa : sb;
    int64_t x = (int64_t)((uint64_t)(a_larger ? xa : xb) + (uint64_t)corr);
    if (!same && d == 0)
        sign = 0;
    if (sa == 0) {
        sign = sb;
        x = xb;
    } else if (sb == 0) {
        sign = sa;
        x = xa;
    }
    *out_s = sign;
    *out_x = sign != 0 ? x : 0;
}

#ifdef LNS_X86
/* The number of set bits in each 64-bit lane (AVX-512 without VPOPCNTDQ):
 * a 16-entry table per nibble, then the bytes of each lane summed. */
LNS_TARGET_AVX512 static inline __m512i lns_popcount_avx512(__m512i v)
{
    const __m512i nibble_bits = _mm512_broadcast_i32x4(
        _mm_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4));
    const __m512i low = _mm512_set1_epi8(0x0f);
    __m512i counts = _mm512_add_epi8(
        _mm512_shuffle_epi8(nibble_bits, _mm512_and_si512(v, low)),
        _mm512_shuffle_epi8(nibble_bits, _mm512_and_si512(_mm512_srli_epi16(v, 4), low)));
    return _mm512_sad_epu8(counts, _mm512_setzero_si512());
}

/* SB[d] where `same`, DB[d] elsewhere, on 8 lanes: masked gathers from the
 * whole entries, and for lanes past them (only with a fine gamma) the
 * block's first entry and its steps, counted as lns_packed_at does. */
LNS_TARGET_AVX512 static inline
__m256i lns_gauss_avx512(const lns_tables *t, __mmask8 same, __m512i d)
{
    __mmask8 inside = _mm512_cmplt_epu64_mask(d, _mm512_set1_epi64(t->n));
    __mmask8 whole = inside & _mm512_cmplt_epu64_mask(d, _mm512_set1_epi64(t->dense));
    __m256i corr = _mm512_mask_i64gather_epi32(_mm256_setzero_si256(), whole & same, d, t->sb, 4);
    corr = _mm512_mask_i64gather_epi32(corr, whole & (__mmask8)~same, d, t->db, 4);
    __mmask8 packed_sb = inside & (__mmask8)~whole & same;
    __mmask8 packed_db = inside & (__mmask8)~whole & (__mmask8)~same;
    if (packed_sb | packed_db) {
        __m512i e = _mm512_sub_epi64(d, _mm512_set1_epi64(t->dense));
        __m512i block = _mm512_srli_epi64(e, 6);
        __m512i words = _mm512_mask_i64gather_epi64(_mm512_setzero_si512(), packed_sb, block,
                                                    t->sb_steps, 8);
        words = _mm512_mask_i64gather_epi64(words, packed_db, block, t->db_steps, 8);
        __m256i base = _mm512_mask_i64gather_epi32(_mm256_setzero_si256(), packed_sb, block,
                                                   t->sb_base, 4);
        base = _mm512_mask_i64gather_epi32(base, packed_db, block, t->db_base, 4);
        __m512i upto = _mm512_sub_epi64(
            _mm512_sllv_epi64(_mm512_set1_epi64(2), _mm512_and_si512(e, _mm512_set1_epi64(63))),
            _mm512_set1_epi64(1));
        __m256i moves = _mm512_cvtepi64_epi32(lns_popcount_avx512(_mm512_and_si512(words, upto)));
        corr = _mm256_mask_sub_epi32(corr, packed_sb, base, moves);
        corr = _mm256_mask_add_epi32(corr, packed_db, base, moves);
    }
    return corr;
}

/* lns_add_one on 8 lanes (signs sign-extended to int64): the corrections
 * come from lns_gauss_avx512, and the zero-operand and cancellation rules
 * are blends.  The sign comes out as 8 bytes. */
LNS_TARGET_AVX512 static inline
void lns_add_avx512(__m512i a_sign, __m512i a_exp, __m512i b_sign, __m512i b_exp,
                    const lns_tables *t, __m128i *out_s, __m512i *out_x)
{
    const __m512i zero = _mm512_setzero_si512();
    __mmask8 a_larger = _mm512_cmpge_epi64_mask(a_exp, b_exp);
    __m512i d = _mm512_mask_blend_epi64(a_larger, _mm512_sub_epi64(b_exp, a_exp),
                                        _mm512_sub_epi64(a_exp, b_exp));
    __mmask8 same = _mm512_cmpeq_epi64_mask(a_sign, b_sign);
    __m256i corr = lns_gauss_avx512(t, same, d);
    __m512i sign = _mm512_mask_blend_epi64(a_larger, b_sign, a_sign);
    __m512i x = _mm512_add_epi64(_mm512_mask_blend_epi64(a_larger, b_exp, a_exp),
                                 _mm512_cvtepi32_epi64(corr));
    __mmask8 cancel = (__mmask8)~same & _mm512_cmpeq_epi64_mask(d, zero);
    sign = _mm512_mask_mov_epi64(sign, cancel, zero);
    __mmask8 a_zero = _mm512_cmpeq_epi64_mask(a_sign, zero);
    __mmask8 b_zero = (__mmask8)~a_zero & _mm512_cmpeq_epi64_mask(b_sign, zero);
    sign = _mm512_mask_mov_epi64(_mm512_mask_mov_epi64(sign, a_zero, b_sign), b_zero, a_sign);
    x = _mm512_mask_mov_epi64(_mm512_mask_mov_epi64(x, a_zero, b_exp), b_zero, a_exp);
    *out_s = _mm512_cvtepi64_epi8(sign);
    *out_x = _mm512_maskz_mov_epi64(_mm512_test_epi64_mask(sign, sign), x);
}
#endif

#endif
