/* ⊕ and ⊖ elementwise: the C twin of lnsnet/kernels/elementwise.py (add, sub).
 *
 * Broadcasting is done by the caller; here the operands are n flat pairs.
 * The per-element rule lives in lns_add_one (lnsnet_native.h) so that the
 * logadd reductions in accumulate.c use the very same code; the AVX-512
 * loop below is the same rule on 8 lanes.
 */
#include "lnsnet_native.h"

/* Below this many elements a parallel region costs more than it saves. */
#define LNS_PARALLEL_MIN 65536

static void add_portable(int64_t n, const int8_t *sa, const int64_t *xa, const int8_t *sb,
                         const int64_t *xb, int negate_b, const lns_tables *t,
                         int8_t *out_s, int64_t *out_x)
{
    for (int64_t i = 0; i < n; i++) {
        /* ⊖ is ⊕ with b negated as int8, wrapping like NumPy's -int8. */
        int8_t sbi = negate_b ? (int8_t)(uint8_t)(0u - (uint8_t)sb[i]) : sb[i];
        lns_add_one(sa[i], xa[i], sbi, xb[i], t, &out_s[i], &out_x[i]);
    }
}

#ifdef LNS_X86
/* lns_add_one on 8 lanes: both corrections are masked gathers into one
 * register (SB where the signs agree, DB where they differ, 0 past either
 * table's end), and the zero-operand and cancellation rules are blends. */
LNS_TARGET_AVX512
static void add_avx512(int64_t n, const int8_t *sa, const int64_t *xa, const int8_t *sb,
                       const int64_t *xb, int negate_b, const lns_tables *t,
                       int8_t *out_s, int64_t *out_x)
{
    const __m512i zero = _mm512_setzero_si512();
    const __m512i n_sb = _mm512_set1_epi64(t->n_sb), n_db = _mm512_set1_epi64(t->n_db);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m512i a_sign = _mm512_cvtepi8_epi64(_mm_loadl_epi64((const __m128i *)(sa + i)));
        __m128i b_bytes = _mm_loadl_epi64((const __m128i *)(sb + i));
        if (negate_b)  /* int8 negation, wrapping as NumPy's does for -128 */
            b_bytes = _mm_sub_epi8(_mm_setzero_si128(), b_bytes);
        __m512i b_sign = _mm512_cvtepi8_epi64(b_bytes);
        __m512i a_exp = _mm512_loadu_si512(xa + i), b_exp = _mm512_loadu_si512(xb + i);
        __mmask8 a_larger = _mm512_cmpge_epi64_mask(a_exp, b_exp);
        __m512i d = _mm512_mask_blend_epi64(a_larger, _mm512_sub_epi64(b_exp, a_exp),
                                            _mm512_sub_epi64(a_exp, b_exp));
        __mmask8 same = _mm512_cmpeq_epi64_mask(a_sign, b_sign);
        __mmask8 in_sb = same & _mm512_cmplt_epu64_mask(d, n_sb);
        __mmask8 in_db = (__mmask8)~same & _mm512_cmplt_epu64_mask(d, n_db);
        __m256i corr = _mm512_mask_i64gather_epi32(_mm256_setzero_si256(), in_sb, d, t->sb, 4);
        corr = _mm512_mask_i64gather_epi32(corr, in_db, d, t->db, 4);
        __m512i sign = _mm512_mask_blend_epi64(a_larger, b_sign, a_sign);
        __m512i x = _mm512_add_epi64(_mm512_mask_blend_epi64(a_larger, b_exp, a_exp),
                                     _mm512_cvtepi32_epi64(corr));
        __mmask8 cancel = (__mmask8)~same & _mm512_cmpeq_epi64_mask(d, zero);
        sign = _mm512_mask_mov_epi64(sign, cancel, zero);
        __mmask8 a_zero = _mm512_cmpeq_epi64_mask(a_sign, zero);
        __mmask8 b_zero = (__mmask8)~a_zero & _mm512_cmpeq_epi64_mask(b_sign, zero);
        sign = _mm512_mask_mov_epi64(_mm512_mask_mov_epi64(sign, a_zero, b_sign), b_zero, a_sign);
        x = _mm512_mask_mov_epi64(_mm512_mask_mov_epi64(x, a_zero, b_exp), b_zero, a_exp);
        __mmask8 nonzero = _mm512_test_epi64_mask(sign, sign);
        _mm_storel_epi64((__m128i *)(out_s + i), _mm512_cvtepi64_epi8(sign));
        _mm512_storeu_si512(out_x + i, _mm512_maskz_mov_epi64(nonzero, x));
    }
    add_portable(n - i, sa + i, xa + i, sb + i, xb + i, negate_b, t, out_s + i, out_x + i);
}
#endif

void lns_add(int64_t n, const int8_t *sa, const int64_t *xa,
             const int8_t *sb, const int64_t *xb, int negate_b,
             const lns_tables *t, int8_t *out_s, int64_t *out_x)
{
    void (*body)(int64_t, const int8_t *, const int64_t *, const int8_t *, const int64_t *, int,
                 const lns_tables *, int8_t *, int64_t *) = add_portable;
#ifdef LNS_X86
    if (lns_simd_current() == LNS_SIMD_AVX512)
        body = add_avx512;
#endif
    const int64_t block = 4096;
    #pragma omp parallel for schedule(static) if (n >= LNS_PARALLEL_MIN)
    for (int64_t lo = 0; lo < n; lo += block)
        body(n - lo < block ? n - lo : block, sa + lo, xa + lo, sb + lo, xb + lo, negate_b, t,
             out_s + lo, out_x + lo);
}
