/* ⊕ and ⊖ elementwise: the C twin of lnsnet/kernels/elementwise.py (add, sub).
 *
 * Broadcasting is done by the caller; here the operands are n flat pairs.
 * The per-element rule lives in lns_add_one (lnsnet_native.h) so that the
 * logadd reductions in accumulate.c use the very same code.
 */
#include "lnsnet_native.h"

/* Below this many elements a parallel region costs more than it saves. */
#define LNS_PARALLEL_MIN 65536

void lns_add(int64_t n, const int8_t *sa, const int64_t *xa,
             const int8_t *sb, const int64_t *xb, int negate_b,
             const lns_tables *t, int8_t *out_s, int64_t *out_x)
{
    #pragma omp parallel for schedule(static) if (n >= LNS_PARALLEL_MIN)
    for (int64_t i = 0; i < n; i++) {
        /* ⊖ is ⊕ with b negated as int8, wrapping like NumPy's -int8. */
        int8_t sbi = negate_b ? (int8_t)(uint8_t)(0u - (uint8_t)sb[i]) : sb[i];
        lns_add_one(sa[i], xa[i], sbi, xb[i], t, &out_s[i], &out_x[i]);
    }
}
