/* ⊕ and ⊖ elementwise: the C twin of lnsnet/kernels/elementwise.py (add, sub).
 *
 * Broadcasting is done by the caller; here the operands are n flat pairs.
 * The per-element rule lives in lns_add_one (lnsnet_native.h) so that the
 * logadd reductions in accumulate.c use the very same code, and its 8-lane
 * form lns_add_avx512 (there too) serves the AVX-512 loop here.
 */
#include "lnsnet_native.h"

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
LNS_TARGET_AVX512
static void add_avx512(int64_t n, const int8_t *sa, const int64_t *xa, const int8_t *sb,
                       const int64_t *xb, int negate_b, const lns_tables *t,
                       int8_t *out_s, int64_t *out_x)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m128i b_bytes = _mm_loadl_epi64((const __m128i *)(sb + i));
        if (negate_b)  /* int8 negation, wrapping as NumPy's does for -128 */
            b_bytes = _mm_sub_epi8(_mm_setzero_si128(), b_bytes);
        __m128i sign;
        __m512i x;
        lns_add_avx512(_mm512_cvtepi8_epi64(_mm_loadl_epi64((const __m128i *)(sa + i))),
                       _mm512_loadu_si512(xa + i), _mm512_cvtepi8_epi64(b_bytes),
                       _mm512_loadu_si512(xb + i), t, &sign, &x);
        _mm_storel_epi64((__m128i *)(out_s + i), sign);
        _mm512_storeu_si512(out_x + i, x);
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
    #pragma omp parallel for schedule(static) if (n >= LNS_PARALLEL_MIN)
    for (int64_t lo = 0; lo < n; lo += LNS_BLOCK)
        body(n - lo < LNS_BLOCK ? n - lo : LNS_BLOCK, sa + lo, xa + lo, sb + lo, xb + lo, negate_b,
             t, out_s + lo, out_x + lo);
}
