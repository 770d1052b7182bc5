/* LNS <-> fixed point: the C twin of lnsnet/kernels/fixed.py.
 *
 * to_fixed goes through the POW2 table; from_fixed takes the leading-one
 * position, then the LOG2 table over the next f+1 bits and one comparison
 * with BOUND (lnsnet/tables.py says why one is enough).  Each step mirrors
 * the NumPy reference, including its int64 wrap-around.  The per-element
 * rules live in lnsnet_native.h: lns_from_fixed_elem, shared with the
 * reductions, and lns_to_fixed_one, shared with the Madam step.
 */
#include "lnsnet_native.h"

static inline __attribute__((always_inline))
void from_fixed_body(int64_t n, const int64_t *value, const int64_t *e0, const lns_tables *t,
                     int8_t *out_s, int64_t *out_x)
{
    for (int64_t i = 0; i < n; i++)
        lns_from_fixed_elem(value[i], e0[i], t, &out_s[i], &out_x[i]);
}

static void from_fixed_portable(int64_t n, const int64_t *value, const int64_t *e0,
                                const lns_tables *t, int8_t *out_s, int64_t *out_x)
{
    from_fixed_body(n, value, e0, t, out_s, out_x);
}

#ifdef LNS_X86
LNS_TARGET_AVX2
static void from_fixed_avx2(int64_t n, const int64_t *value, const int64_t *e0,
                            const lns_tables *t, int8_t *out_s, int64_t *out_x)
{
    from_fixed_body(n, value, e0, t, out_s, out_x);
}

LNS_TARGET_AVX512
static void from_fixed_avx512(int64_t n, const int64_t *value, const int64_t *e0,
                              const lns_tables *t, int8_t *out_s, int64_t *out_x)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m128i s;
        __m512i x;
        lns_from_fixed_avx512(_mm512_loadu_si512(value + i), _mm512_loadu_si512(e0 + i), t, &s, &x);
        _mm_storel_epi64((__m128i *)(out_s + i), s);
        _mm512_storeu_si512(out_x + i, x);
    }
    from_fixed_body(n - i, value + i, e0 + i, t, out_s + i, out_x + i);
}
#endif

void lns_from_fixed(int64_t n, const int64_t *value, const int64_t *e0,
                    const lns_tables *t, int8_t *out_s, int64_t *out_x)
{
    void (*body)(int64_t, const int64_t *, const int64_t *, const lns_tables *, int8_t *,
                 int64_t *) = from_fixed_portable;
#ifdef LNS_X86
    int level = lns_simd_current();
    if (level == LNS_SIMD_AVX512)
        body = from_fixed_avx512;
    else if (level == LNS_SIMD_AVX2)
        body = from_fixed_avx2;
#endif
    #pragma omp parallel for schedule(static) if (n >= LNS_PARALLEL_MIN)
    for (int64_t lo = 0; lo < n; lo += LNS_BLOCK)
        body(n - lo < LNS_BLOCK ? n - lo : LNS_BLOCK, value + lo, e0 + lo, t, out_s + lo, out_x + lo);
}

void lns_to_fixed(int64_t n, const int8_t *s, const int64_t *x, int64_t frac,
                  const lns_tables *t, int64_t *out)
{
    #pragma omp parallel for schedule(static) if (n >= LNS_PARALLEL_MIN)
    for (int64_t i = 0; i < n; i++)
        out[i] = lns_to_fixed_one(s[i], x[i], frac, t);
}
