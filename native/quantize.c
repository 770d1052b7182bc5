/* Requantizing exponents into a B-bit window: the C twin of
 * lnsnet/kernels/quantize.py.
 *
 * One pass finds the largest exponent with a nonzero sign, after the clip
 * and shift (when the caller has no t); a second writes every element: clip
 * to +-far, shift between gammas, saturate above t, flush or saturate below
 * the window.  The exponents come as int32 (tensors) or int64
 * (accumulators), so each pass exists for both.  far keeps every value
 * within 2**40, and an offset is added in uint64, wrapping as NumPy does.
 *
 * The loop bodies are branch-free and compiled once per SIMD level (chosen
 * at run time, as everywhere in native/), so that the compiler turns them
 * into vector min/max/blend: the portable build may not assume even the
 * 64-bit min of AVX-512.
 */
#include "lnsnet_native.h"

/* The per-element steps, on locals: with q read through a pointer inside
 * the loops the compiler could not prove the outputs leave it alone, and
 * would reload it every element instead of vectorizing. */
typedef struct {
    int64_t far, top, low, half;
    int32_t shift;
    int8_t keep;        /* 1: saturate below the window; 0: flush */
} requant_locals;

static inline __attribute__((always_inline)) requant_locals locals_of(const lns_requant *q)
{
    requant_locals l = {q->far, q->top, q->low, 0, q->shift, q->flush ? 0 : 1};
    l.half = q->shift > 0 ? (int64_t)1 << (q->shift - 1) : 0;
    return l;
}

/* Clip to +-far, then shift: right after adding `add`, or left. */
static inline __attribute__((always_inline))
int64_t shifted(int64_t v, requant_locals l, int64_t add)
{
    v = v < -l.far ? -l.far : v;
    v = v > l.far ? l.far : v;
    if (l.shift > 0)
        return (int64_t)((uint64_t)v + (uint64_t)add) >> l.shift;
    return (int64_t)((uint64_t)v << -l.shift);
}

/* v where the sign is nonzero, else the smallest int64 (which no max picks):
 * with masks, not a branch the random signs would make unpredictable. */
static inline __attribute__((always_inline)) int64_t counted(int8_t s, int64_t v)
{
    uint64_t keep = 0u - (uint64_t)(s != 0);
    return (int64_t)(((uint64_t)v & keep) | ((uint64_t)INT64_MIN & ~keep));
}

#define LNS_REQUANTIZE_BODIES(SUFFIX, TYPE)                                                \
static inline __attribute__((always_inline))                                              \
int64_t top_body_##SUFFIX(int64_t n, const int8_t *s, const TYPE *x, const int64_t *offset, \
                          const lns_requant *q)                                           \
{                                                                                         \
    requant_locals l = locals_of(q);                                                      \
    int64_t best = INT64_MIN;                                                             \
    if (offset) {                                                                         \
        for (int64_t i = 0; i < n; i++) {                                                 \
            int64_t v = counted(s[i], shifted(x[i], l, offset[i]));                      \
            best = v > best ? v : best;                                                   \
        }                                                                                 \
    } else {                                                                              \
        for (int64_t i = 0; i < n; i++) {                                                 \
            int64_t v = counted(s[i], shifted(x[i], l, l.half));                         \
            best = v > best ? v : best;                                                   \
        }                                                                                 \
    }                                                                                     \
    return best;                                                                          \
}                                                                                         \
                                                                                          \
static inline __attribute__((always_inline))                                              \
void write_one_##SUFFIX(int64_t v, int8_t s, requant_locals l, int8_t *out_s, int32_t *out_x) \
{                                                                                         \
    int8_t under = v < l.low;                                                             \
    v = v > l.top ? l.top : v;                                                            \
    v = v < l.low ? l.low : v;                                                            \
    int8_t sign = (under & !l.keep) ? 0 : s;                                              \
    *out_s = sign;                                                                        \
    *out_x = sign != 0 ? (int32_t)v : 0;                                                  \
}                                                                                         \
                                                                                          \
static inline __attribute__((always_inline))                                              \
void write_body_##SUFFIX(int64_t n, const int8_t *s, const TYPE *x, const int64_t *offset, \
                         const lns_requant *q, int8_t *out_s, int32_t *out_x)             \
{                                                                                         \
    requant_locals l = locals_of(q);                                                      \
    if (offset) {                                                                         \
        for (int64_t i = 0; i < n; i++)                                                   \
            write_one_##SUFFIX(shifted(x[i], l, offset[i]), s[i], l, out_s + i, out_x + i); \
    } else {                                                                              \
        for (int64_t i = 0; i < n; i++)                                                   \
            write_one_##SUFFIX(shifted(x[i], l, l.half), s[i], l, out_s + i, out_x + i);  \
    }                                                                                     \
}

LNS_REQUANTIZE_BODIES(i32, int32_t)
LNS_REQUANTIZE_BODIES(i64, int64_t)

/* The entry points: each body compiled for every SIMD level (LNS_LEVELS). */
#define LNS_REQUANTIZE_ENTRIES(SUFFIX, TYPE)                                               \
static inline __attribute__((always_inline))                                              \
void top_into_##SUFFIX(int64_t n, const int8_t *s, const TYPE *x, const int64_t *offset,  \
                       const lns_requant *q, int64_t *top)                                \
{                                                                                         \
    *top = top_body_##SUFFIX(n, s, x, offset, q);                                         \
}                                                                                         \
LNS_LEVELS(top_into_##SUFFIX,                                                             \
           (int64_t n, const int8_t *s, const TYPE *x, const int64_t *offset,             \
            const lns_requant *q, int64_t *top), (n, s, x, offset, q, top))               \
LNS_LEVELS(write_body_##SUFFIX,                                                           \
           (int64_t n, const int8_t *s, const TYPE *x, const int64_t *offset,             \
            const lns_requant *q, int8_t *out_s, int32_t *out_x),                         \
           (n, s, x, offset, q, out_s, out_x))                                            \
                                                                                          \
int lns_requantize_top_##SUFFIX(int64_t n, const int8_t *s, const TYPE *x,                \
                                const int64_t *offset, const lns_requant *q, int64_t *top) \
{                                                                                         \
    int found = 0;                                                                        \
    for (int64_t i = 0; i < n && !found; i++)                                             \
        found = s[i] != 0;                                                                \
    *top = 0;                                                                             \
    if (found)                                                                            \
        LNS_PICK(top_into_##SUFFIX)(n, s, x, offset, q, top);                             \
    return found;                                                                         \
}                                                                                         \
                                                                                          \
void lns_requantize_##SUFFIX(int64_t n, const int8_t *s, const TYPE *x,                   \
                             const int64_t *offset, const lns_requant *q,                 \
                             int8_t *out_s, int32_t *out_x)                               \
{                                                                                         \
    LNS_PICK(write_body_##SUFFIX)(n, s, x, offset, q, out_s, out_x);                      \
}

LNS_REQUANTIZE_ENTRIES(i32, int32_t)
LNS_REQUANTIZE_ENTRIES(i64, int64_t)
