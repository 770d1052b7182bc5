/* LNS <-> fixed point: the C twin of lnsnet/kernels/fixed.py.
 *
 * to_fixed goes through the POW2 table; from_fixed takes the leading-one
 * position, then the LOG2 table over the next f+1 bits and one comparison
 * with BOUND (lnsnet/tables.py says why one is enough).  Each step mirrors
 * the NumPy reference, including its int64 wrap-around.
 */
#include "lnsnet_native.h"

#define LNS_PARALLEL_MIN 65536

/* Bit length as lnsnet.kernels.fixed.bit_length computes it: for the one
 * negative value |x| can give (INT64_MIN) its shift loop yields 64. */
static inline int64_t bit_length(int64_t v)
{
    if (v < 0)
        return 64;
    return v == 0 ? 0 : 64 - __builtin_clzll((uint64_t)v);
}

static inline int64_t clip63(int64_t v)
{
    return v < 0 ? 0 : (v > 63 ? 63 : v);
}

void lns_from_fixed_one(int64_t value, int64_t e0, const lns_tables *t,
                        int8_t *out_s, int64_t *out_x)
{
    int8_t sign = (int8_t)((value > 0) - (value < 0));
    int64_t mag = value < 0 ? (int64_t)(0u - (uint64_t)value) : value;
    int64_t n = bit_length(mag) - 1;
    int64_t up = clip63(LNS_MANT_BITS - n);
    int64_t down = clip63(n - LNS_MANT_BITS);
    int64_t mant = (int64_t)((uint64_t)mag << up) >> down;
    int32_t f = t->frac_bits;
    int64_t gamma = (int64_t)1 << f;
    int64_t bucket = (mant >> (LNS_MANT_BITS - f - 1)) & ((2 * gamma) - 1);
    int64_t k = t->log2[bucket];
    if (k < gamma && mant >= t->bound[k < gamma - 1 ? k : gamma - 1])
        k += 1;
    uint64_t x = ((uint64_t)n + (uint64_t)e0) * (uint64_t)gamma + (uint64_t)k;
    *out_s = sign;
    *out_x = sign != 0 ? (int64_t)x : 0;
}

void lns_from_fixed(int64_t n, const int64_t *value, const int64_t *e0,
                    const lns_tables *t, int8_t *out_s, int64_t *out_x)
{
    #pragma omp parallel for schedule(static) if (n >= LNS_PARALLEL_MIN)
    for (int64_t i = 0; i < n; i++)
        lns_from_fixed_one(value[i], e0[i], t, &out_s[i], &out_x[i]);
}

/* v * 2**shift for 0 <= v < 2**(LNS_POW2_BITS+1) and shift <= 37: exact left
 * shifts, right shifts rounded half up (fixed.shift_round). */
static inline int64_t shift_round(int64_t v, int64_t shift)
{
    if (shift >= 0)
        return v << shift;
    int64_t right = shift < -63 ? 63 : -shift;
    if (right >= 63)
        return 0;
    return (v + ((int64_t)1 << (right - 1))) >> right;
}

void lns_to_fixed(int64_t n, const int8_t *s, const int64_t *x, int64_t frac,
                  const lns_tables *t, int64_t *out)
{
    int32_t f = t->frac_bits;
    int64_t mask = ((int64_t)1 << f) - 1;
    /* POW2 < 2**(POW2_BITS+1): a larger left shift would pass the ceiling. */
    int64_t max_shift = LNS_FIXED_CEIL_BITS - LNS_POW2_BITS - 1;
    int64_t ceiling = ((int64_t)1 << LNS_FIXED_CEIL_BITS) - 1;
    #pragma omp parallel for schedule(static) if (n >= LNS_PARALLEL_MIN)
    for (int64_t i = 0; i < n; i++) {
        int64_t shift = (x[i] >> f) + frac - LNS_POW2_BITS;
        int64_t mag = shift > max_shift ? ceiling : shift_round(t->pow2[x[i] & mask], shift);
        out[i] = s[i] != 0 ? (int64_t)((uint64_t)(int64_t)s[i] * (uint64_t)mag) : 0;
    }
}
