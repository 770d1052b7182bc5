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
    const int32_t *sb;          /* n_sb entries */
    int64_t n_sb;
    const int32_t *db;          /* n_db entries */
    int64_t n_db;
} lns_tables;

int lns_num_threads(void);
const char *lns_simd_level(void);

void lns_add(int64_t n, const int8_t *sa, const int64_t *xa,
             const int8_t *sb, const int64_t *xb, int negate_b,
             const lns_tables *t, int8_t *out_s, int64_t *out_x);

void lns_to_fixed(int64_t n, const int8_t *s, const int64_t *x, int64_t frac,
                  const lns_tables *t, int64_t *out);
void lns_from_fixed(int64_t n, const int64_t *value, const int64_t *e0,
                    const lns_tables *t, int8_t *out_s, int64_t *out_x);

void lns_sum(int64_t rows, int64_t k, const int8_t *s, const int64_t *x,
             int32_t mode, int32_t margin, const lns_tables *t,
             int8_t *out_s, int64_t *out_x);

int64_t lns_matmul_scratch_words(int64_t batch, int64_t m, int64_t k, int64_t n,
                                 int32_t mode, int32_t frac_bits, int32_t threads);
int lns_matmul(int64_t batch, int64_t m, int64_t k, int64_t n,
               const int8_t *sa, const int64_t *xa, const int64_t *a_offsets,
               const int8_t *sb, const int64_t *xb, const int64_t *b_offsets,
               int32_t mode, int32_t margin, const lns_tables *t,
               int64_t *scratch, int64_t scratch_words, int32_t threads,
               int8_t *out_s, int64_t *out_x);
/* CDEF END */

/* ---- shared by the .c files, not part of the Python interface ---------- */

/* (sign, exponent) of value * 2**e0, rounded to nearest in the log domain:
 * lnsnet.kernels.fixed.from_fixed for one element. */
void lns_from_fixed_one(int64_t value, int64_t e0, const lns_tables *t,
                        int8_t *out_s, int64_t *out_x);

/* a ⊕ b for one pair: lnsnet.kernels.elementwise.add for one element. */
static inline void lns_add_one(int8_t sa, int64_t xa, int8_t sb, int64_t xb,
                               const lns_tables *t, int8_t *out_s, int64_t *out_x)
{
    int a_larger = xa >= xb;
    uint64_t d = a_larger ? (uint64_t)xa - (uint64_t)xb : (uint64_t)xb - (uint64_t)xa;
    int same = sa == sb;
    int64_t corr;
    if (same)
        corr = d < (uint64_t)t->n_sb ? t->sb[d] : 0;
    else
        corr = d < (uint64_t)t->n_db ? t->db[d] : 0;
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

#endif
