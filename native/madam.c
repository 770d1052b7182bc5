/* Madam's two elementwise passes: the C twin of lnsnet/kernels/madam.py.
 *
 * madam_moment is ⊕ with the operands scaled on the way in (the 8-lane ⊕
 * of lnsnet_native.h under AVX-512); madam_exponents follows the reference
 * line by line, its products and sums in uint64 so that they wrap as
 * NumPy's int64 would rather than being undefined.
 */
#include "lnsnet_native.h"

/* g**2 as (|s|, 2x), x 0 where s is: lnsnet.kernels.elementwise.square. */
static inline void square_one(int8_t s, int64_t x, int8_t *sq_s, int64_t *sq_x)
{
    *sq_s = (int8_t)(s < 0 ? (uint8_t)(0u - (uint8_t)s) : (uint8_t)s);
    *sq_x = s != 0 ? (int64_t)((uint64_t)x * 2u) : 0;
}

static void moment_portable(int64_t n, const int8_t *g_s, const int64_t *g_x, const int8_t *v_s,
                            const int64_t *v_x, int64_t beta, int64_t one_minus_beta,
                            const lns_tables *t, int8_t *out_s, int64_t *out_x)
{
    for (int64_t i = 0; i < n; i++) {
        int8_t sq_s;
        int64_t sq_x;
        square_one(g_s[i], g_x[i], &sq_s, &sq_x);
        lns_add_one(v_s[i], (int64_t)((uint64_t)v_x[i] + (uint64_t)beta), sq_s,
                    (int64_t)((uint64_t)sq_x + (uint64_t)one_minus_beta), t, &out_s[i], &out_x[i]);
    }
}

#ifdef LNS_X86
LNS_TARGET_AVX512
static void moment_avx512(int64_t n, const int8_t *g_s, const int64_t *g_x, const int8_t *v_s,
                          const int64_t *v_x, int64_t beta, int64_t one_minus_beta,
                          const lns_tables *t, int8_t *out_s, int64_t *out_x)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m512i g_sign = _mm512_cvtepi8_epi64(_mm_loadl_epi64((const __m128i *)(g_s + i)));
        __m512i sq_sign = _mm512_cvtepi8_epi64(
            _mm_abs_epi8(_mm_loadl_epi64((const __m128i *)(g_s + i))));
        __m512i sq_exp = _mm512_maskz_slli_epi64(_mm512_test_epi64_mask(g_sign, g_sign),
                                                 _mm512_loadu_si512(g_x + i), 1);
        __m128i sign;
        __m512i x;
        lns_add_avx512(_mm512_cvtepi8_epi64(_mm_loadl_epi64((const __m128i *)(v_s + i))),
                       _mm512_add_epi64(_mm512_loadu_si512(v_x + i), _mm512_set1_epi64(beta)),
                       sq_sign, _mm512_add_epi64(sq_exp, _mm512_set1_epi64(one_minus_beta)),
                       t, &sign, &x);
        _mm_storel_epi64((__m128i *)(out_s + i), sign);
        _mm512_storeu_si512(out_x + i, x);
    }
    moment_portable(n - i, g_s + i, g_x + i, v_s + i, v_x + i, beta, one_minus_beta, t,
                    out_s + i, out_x + i);
}
#endif

void lns_madam_moment(int64_t n, const int8_t *g_s, const int64_t *g_x, const int8_t *v_s,
                      const int64_t *v_x, int64_t beta, int64_t one_minus_beta,
                      const lns_tables *t, int8_t *out_s, int64_t *out_x)
{
    void (*body)(int64_t, const int8_t *, const int64_t *, const int8_t *, const int64_t *,
                 int64_t, int64_t, const lns_tables *, int8_t *, int64_t *) = moment_portable;
#ifdef LNS_X86
    if (lns_simd_current() == LNS_SIMD_AVX512)
        body = moment_avx512;
#endif
    #pragma omp parallel for schedule(static) if (n >= LNS_PARALLEL_MIN)
    for (int64_t lo = 0; lo < n; lo += LNS_BLOCK)
        body(n - lo < LNS_BLOCK ? n - lo : LNS_BLOCK, g_s + lo, g_x + lo, v_s + lo, v_x + lo, beta,
             one_minus_beta, t, out_s + lo, out_x + lo);
}

/* One element of madam_exponents, `below` added under the cut. */
static inline __attribute__((always_inline))
int64_t exponent_one(int8_t g_s, int64_t g_x, int8_t w_s, int64_t w_x, int8_t v_s, int64_t v_x,
                     lns_madam k, uint64_t below, const lns_tables *t)
{
    /* sqrt: the halved exponent, rounded to nearest, 0 where v is 0 */
    int64_t root = (int64_t)((uint64_t)v_x - (uint64_t)k.correction + 1u) >> 1;
    root = v_s != 0 ? root : 0;
    int64_t ratio = (int64_t)((uint64_t)g_x - (uint64_t)root);
    ratio = ratio < k.bound ? ratio : k.bound;
    int8_t direction = (int8_t)((uint8_t)g_s * (uint8_t)w_s);
    uint64_t drive = (uint64_t)lns_to_fixed_one(direction, ratio, k.frac, t)
                     + (w_s != 0 ? (uint64_t)k.decay : 0u);
    int64_t value = (int64_t)(drive * (uint64_t)k.factor);
    uint64_t magnitude = value < 0 ? 0u - (uint64_t)value : (uint64_t)value;
    int64_t step = (int64_t)(magnitude + below) >> k.shift;  /* NumPy's int64 shift */
    step = value < 0 ? (int64_t)(0u - (uint64_t)step) : (value > 0 ? step : 0);
    int64_t x = (int64_t)((uint64_t)w_x - (uint64_t)step);
    return x < k.x_max ? x : k.x_max;
}

static void exponents_portable(int64_t n, const int8_t *g_s, const int64_t *g_x, const int8_t *w_s,
                               const int64_t *w_x, const int8_t *v_s, const int64_t *v_x,
                               lns_madam k, const int64_t *offset, const lns_tables *t,
                               int64_t *out_x)
{
    uint64_t half = (uint64_t)1 << (k.shift - 1);
    for (int64_t i = 0; i < n; i++)
        out_x[i] = exponent_one(g_s[i], g_x[i], w_s[i], w_x[i], v_s[i], v_x[i], k,
                                offset ? (uint64_t)offset[i] : half, t);
}

#ifdef LNS_X86
LNS_TARGET_AVX512 static inline __m512i load_signs(const int8_t *s)
{
    return _mm512_cvtepi8_epi64(_mm_loadl_epi64((const __m128i *)s));
}

/* exponent_one on 8 lanes (GCC 12 does not vectorize it): the POW2 read is
 * a gather, every select a mask. */
LNS_TARGET_AVX512
static void exponents_avx512(int64_t n, const int8_t *g_s, const int64_t *g_x, const int8_t *w_s,
                             const int64_t *w_x, const int8_t *v_s, const int64_t *v_x,
                             lns_madam k, const int64_t *offset, const lns_tables *t,
                             int64_t *out_x)
{
    const __m512i zero = _mm512_setzero_si512(), one = _mm512_set1_epi64(1);
    const int32_t f = t->frac_bits;
    const __m512i mask = _mm512_set1_epi64(((int64_t)1 << f) - 1);
    const __m512i max_shift = _mm512_set1_epi64(LNS_FIXED_CEIL_BITS - LNS_POW2_BITS - 1);
    const __m512i ceiling = _mm512_set1_epi64(((int64_t)1 << LNS_FIXED_CEIL_BITS) - 1);
    const __m512i half = _mm512_set1_epi64((int64_t)((uint64_t)1 << (k.shift - 1)));
    const __m128i shift = _mm_cvtsi64_si128(k.shift);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m512i gs = load_signs(g_s + i), ws = load_signs(w_s + i), vs = load_signs(v_s + i);
        __m512i root = _mm512_srai_epi64(_mm512_add_epi64(
            _mm512_sub_epi64(_mm512_loadu_si512(v_x + i), _mm512_set1_epi64(k.correction)), one), 1);
        root = _mm512_maskz_mov_epi64(_mm512_test_epi64_mask(vs, vs), root);
        __m512i ratio = _mm512_min_epi64(_mm512_sub_epi64(_mm512_loadu_si512(g_x + i), root),
                                         _mm512_set1_epi64(k.bound));
        /* the int8 product g_s * w_s, wrapped to 8 bits and sign-extended */
        __m512i direction = _mm512_srai_epi64(_mm512_slli_epi64(_mm512_mullo_epi64(gs, ws), 56), 56);
        /* lns_to_fixed_one */
        __m512i up = _mm512_add_epi64(_mm512_srai_epi64(ratio, f),
                                      _mm512_set1_epi64(k.frac - LNS_POW2_BITS));
        __m512i entry = _mm512_i64gather_epi64(_mm512_and_si512(ratio, mask), t->pow2, 8);
        __m512i right = _mm512_min_epi64(_mm512_max_epi64(_mm512_sub_epi64(zero, up), zero),
                                         _mm512_set1_epi64(63));
        __m512i rounding = _mm512_srli_epi64(_mm512_sllv_epi64(one, right), 1);
        __m512i down = _mm512_srav_epi64(_mm512_add_epi64(entry, rounding), right);
        __mmask8 left = _mm512_cmpge_epi64_mask(up, zero);
        __m512i mag = _mm512_mask_blend_epi64(left, down, _mm512_sllv_epi64(entry, up));
        mag = _mm512_mask_blend_epi64(_mm512_cmpgt_epi64_mask(up, max_shift), mag, ceiling);
        __m512i drive = _mm512_mullo_epi64(direction, mag);
        drive = _mm512_mask_add_epi64(drive, _mm512_test_epi64_mask(ws, ws), drive,
                                      _mm512_set1_epi64(k.decay));
        __m512i value = _mm512_mullo_epi64(drive, _mm512_set1_epi64(k.factor));
        __m512i below = offset ? _mm512_loadu_si512(offset + i) : half;
        __m512i step = _mm512_sra_epi64(_mm512_add_epi64(_mm512_abs_epi64(value), below), shift);
        __mmask8 negative = _mm512_cmplt_epi64_mask(value, zero);
        step = _mm512_mask_sub_epi64(step, negative, zero, step);
        step = _mm512_maskz_mov_epi64(_mm512_test_epi64_mask(value, value), step);
        __m512i x = _mm512_sub_epi64(_mm512_loadu_si512(w_x + i), step);
        _mm512_storeu_si512(out_x + i, _mm512_min_epi64(x, _mm512_set1_epi64(k.x_max)));
    }
    exponents_portable(n - i, g_s + i, g_x + i, w_s + i, w_x + i, v_s + i, v_x + i, k,
                       offset ? offset + i : offset, t, out_x + i);
}
#endif

void lns_madam_exponents(int64_t n, const int8_t *g_s, const int64_t *g_x, const int8_t *w_s,
                         const int64_t *w_x, const int8_t *v_s, const int64_t *v_x,
                         const lns_madam *c, const int64_t *offset, const lns_tables *t,
                         int64_t *out_x)
{
    void (*body)(int64_t, const int8_t *, const int64_t *, const int8_t *, const int64_t *,
                 const int8_t *, const int64_t *, lns_madam, const int64_t *, const lns_tables *,
                 int64_t *) = exponents_portable;
#ifdef LNS_X86
    if (lns_simd_current() == LNS_SIMD_AVX512)
        body = exponents_avx512;
#endif
    lns_madam k = *c;  /* by value: the loop writes through out_x */
    #pragma omp parallel for schedule(static) if (n >= LNS_PARALLEL_MIN)
    for (int64_t lo = 0; lo < n; lo += LNS_BLOCK) {
        const int64_t *off = offset ? offset + lo : offset;
        body(n - lo < LNS_BLOCK ? n - lo : LNS_BLOCK, g_s + lo, g_x + lo, w_s + lo, w_x + lo, v_s + lo,
             v_x + lo, k, off, t, out_x + lo);
    }
}
