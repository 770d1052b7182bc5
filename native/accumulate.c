/* Reductions of LNS products: the C twin of lnsnet/kernels/accumulate.py.
 *
 * lns_sum reduces rows of a (rows, k) array; lns_matmul multiplies (batches
 * of) (m, k) by (k, n).  Linear and mitchell modes must produce exactly the
 * reference's int64 accumulator, then round it with lns_from_fixed_elem;
 * logadd applies lns_add_one in index order.  How a product's term is
 * defined (alignment to the base P = amax_i + bmax_j, left margin L) is in
 * the reference's docstring; this file only reorganises the same integers.
 *
 * Matmul has three strategies:
 *
 * - fast linear (linear or mitchell, gamma <= 16): "variant rows".  Write
 *   amax_i = gamma*QA + rho, bmax_j = gamma*QB + beta and, per operand,
 *       ua = gamma*(QA+1) - 1 - xa = gamma*g + e   (0 <= e < gamma)
 *       ub = gamma*(QB+1) - xb
 *   Then the reference's term for a product is
 *       (T[r] << L) >> s  ==  W_e(ub) >> (g + cc)
 *   with W_e(ub) = (T[gamma-1 - ((e+ub) mod gamma)] << (L+1)) >> ((e+ub) >> f)
 *   and cc = [rho + beta >= gamma]   (floor(x/2^a)/2^b floors to x/2^(a+b)).
 *   So B is expanded once per (column chunk, k panel) into 2*gamma signed
 *   "variant rows" W_e * sign (both signs of a), and a product becomes one
 *   load, one shift by g + cc and one add: a row of A only picks a variant
 *   row and a shift count per k.  Columns are sorted by beta so that cc is
 *   the same across almost every chunk of a row.
 *   The shift must truncate the magnitude, as the reference does.  W_e is a
 *   multiple of 2^(L+1-h) (h = (e+ub) >> f), so for g <= L - hmax (hmax over
 *   the panel) the shift is exact and the signed sum can be shifted as it is;
 *   products further down ("unsafe": both factors far below their maxima)
 *   are summed apart with sign-magnitude truncation.  Variant rows are kept
 *   in offset binary (value ^ 2^63) and shifted logically: that equals the
 *   arithmetic shift plus 2^(63-c), and those constants are summed per row
 *   in advance and taken off once (bias).
 * - generic linear (any gamma): the reference formula per product,
 *   written so that the compiler vectorizes it over a chunk of columns.
 * - logadd: ⊕ per product in index order, vectorized over columns.
 *
 * Both cores: OpenMP over column chunks and row blocks (or over batch
 * elements when they are many and small).
 */
#include <string.h>

#include "lnsnet_native.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#ifdef LNS_X86
#include <immintrin.h>
#endif

/* The reference's base for a row without nonzero entries: int64 min // 4. */
#define LNS_LOW (INT64_MIN / 4)

/* Columns per chunk: the width of one fast-path microkernel call. */
#define CW 16
/* Fast path: gamma <= 2**FAST_MAX_F, k panel of FAST_KC_GAMMA / gamma rows,
 * so that a chunk's 2*gamma*kc variant rows (CW int64 each) fill 32 KiB of L1. */
#define FAST_MAX_F 4
#define FAST_KC_GAMMA 128
#define OFFSET_BINARY 0x8000000000000000ull
/* ub of a zero b: so far down that every W_e is 0 (h >= 63). */
#define ZERO_UB ((int64_t)1 << 40)
/* An entry is off | g << ENTRY_G_SHIFT: off (a variant row) < 2**16, g < 63. */
#define ENTRY_G_SHIFT 16
#define ENTRY_OFF_MASK 0xFFFF

/* ---- threads and SIMD level -------------------------------------------- */

int lns_num_threads(void)
{
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

static const char *const simd_names[] = {"portable", "avx2", "avx512"};
static int simd_cap = LNS_SIMD_AVX512;

static int simd_supported(void)
{
#ifdef LNS_X86
    __builtin_cpu_init();
    /* the AVX-512 functions are compiled for all these subsets */
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")
        && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl")
        && __builtin_cpu_supports("avx512cd") && __builtin_cpu_supports("bmi2"))
        return LNS_SIMD_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("bmi2"))
        return LNS_SIMD_AVX2;
#endif
    return LNS_SIMD_PORTABLE;
}

int lns_simd_current(void)
{
    int have = simd_supported();
    return have < simd_cap ? have : simd_cap;
}

int lns_simd_limit(int32_t level)
{
    simd_cap = level < LNS_SIMD_PORTABLE ? LNS_SIMD_PORTABLE
                                         : (level > LNS_SIMD_AVX512 ? LNS_SIMD_AVX512 : level);
    return lns_simd_current();
}

const char *lns_simd_level(void)
{
    return simd_names[lns_simd_current()];
}

/* ---- sums along the last axis ------------------------------------------ */

static inline int64_t clip_shift(int64_t v)
{
    return v < 0 ? 0 : (v > 63 ? 63 : v);
}

static int64_t row_max(const int8_t *s, const int64_t *x, int64_t k)
{
    int64_t base = LNS_LOW;
    for (int64_t i = 0; i < k; i++)
        base = s[i] != 0 && x[i] > base ? x[i] : base;
    return base;
}

static void sum_linear_row(int64_t k, const int8_t *s, const int64_t *x, const int64_t *table,
                           int32_t margin, const lns_tables *t, int8_t *os, int64_t *ox)
{
    int32_t f = t->frac_bits;
    int64_t mask = ((int64_t)1 << f) - 1;
    int64_t qb = row_max(s, x, k) >> f;
    uint64_t acc = 0;
    for (int64_t i = 0; i < k; i++) {
        int64_t term = (table[x[i] & mask] << margin) >> clip_shift(qb - (x[i] >> f));
        acc += (uint64_t)((int64_t)s[i] * term);
    }
    lns_from_fixed_elem((int64_t)acc, qb - LNS_POW2_BITS - margin, t, os, ox);
}

static void sum_logadd_row(int64_t k, const int8_t *s, const int64_t *x, const lns_tables *t,
                           int8_t *os, int64_t *ox)
{
    int8_t as = 0;
    int64_t ax = 0;
    for (int64_t i = 0; i < k; i++)
        lns_add_one(as, ax, s[i], x[i], t, &as, &ax);
    *os = as;
    *ox = ax;
}

void lns_sum(int64_t rows, int64_t k, const int8_t *s, const int64_t *x,
             int32_t mode, int32_t margin, const lns_tables *t,
             int8_t *out_s, int64_t *out_x)
{
    const int64_t *table = mode == LNS_MODE_MITCHELL ? t->mitchell : t->pow2;
    #pragma omp parallel for schedule(dynamic, 16) if (rows * k >= 65536 && rows > 1)
    for (int64_t r = 0; r < rows; r++) {
        if (mode == LNS_MODE_LOGADD)
            sum_logadd_row(k, s + r * k, x + r * k, t, &out_s[r], &out_x[r]);
        else
            sum_linear_row(k, s + r * k, x + r * k, table, margin, t, &out_s[r], &out_x[r]);
    }
}

/* ---- matmul: the problem, the strategies, the scratch layout ----------- */

typedef struct {
    int64_t m, k, n;
    const int8_t *sa;
    const int64_t *xa;
    const int8_t *sb;
    const int64_t *xb;
    int8_t *os;
    int64_t *ox;
    int32_t margin;
    const int64_t *table;
    const lns_tables *t;
} mm_problem;

enum { STRATEGY_FAST, STRATEGY_GENERIC, STRATEGY_LOGADD };

static int strategy(int32_t mode, int32_t frac_bits)
{
    if (mode == LNS_MODE_LOGADD)
        return STRATEGY_LOGADD;
    return frac_bits <= FAST_MAX_F ? STRATEGY_FAST : STRATEGY_GENERIC;
}

/* Many small matrices: one batch element per thread instead of splitting each. */
static int batch_parallel(int64_t batch, int64_t m, int64_t k, int64_t n, int32_t threads)
{
    return threads > 1 && batch >= threads && m * k * n <= ((int64_t)1 << 22);
}

static int64_t ceil_div(int64_t a, int64_t b)
{
    return (a + b - 1) / b;
}

/* Where each array of the fast path lives, in int64 words.  The same
 * function sizes the scratch (lns_matmul_scratch_words) and carves it:
 * shared arrays (one per 2-D product in flight), then private ones (one
 * per thread). */
typedef struct {
    int64_t gamma, kc, panels, npad;
    int64_t amax, bmax, perm, hmax, bu, bs, entries, unsafe, unsafe_count, bias;
    int64_t shared_words;
    int64_t variants, acc, row_cc, private_words;
} fast_layout;

static fast_layout fast_plan(int64_t m, int64_t k, int64_t n, int32_t f)
{
    fast_layout l;
    l.gamma = (int64_t)1 << f;
    l.kc = FAST_KC_GAMMA >> f;
    l.panels = ceil_div(k, l.kc);
    l.npad = ceil_div(n, CW) * CW;
    int64_t b_cells = l.panels * l.kc * l.npad;  /* B padded to whole panels and chunks */
    int64_t a_cells = l.panels * m * l.kc;
    l.amax = 0;
    l.bmax = l.amax + m;
    l.perm = l.bmax + n;
    l.hmax = l.perm + n;
    l.bu = l.hmax + l.panels;
    l.bs = l.bu + b_cells;                        /* int8 */
    l.entries = l.bs + ceil_div(b_cells, 8);      /* int32 */
    l.unsafe = l.entries + ceil_div(a_cells, 2);  /* int32 */
    l.unsafe_count = l.unsafe + ceil_div(a_cells, 2);
    l.bias = l.unsafe_count + l.panels * m;
    l.shared_words = l.bias + 2 * l.panels * m;
    /* 2*gamma variant rows per k of the panel and one zero row; both blocks
     * get 8 words of slack to align them to 64 bytes. */
    l.variants = 0;
    l.acc = l.variants + (2 * l.gamma * l.kc + 1) * CW + 8;
    l.row_cc = l.acc + m * CW + 8;                 /* int8 */
    l.private_words = l.row_cc + ceil_div(m, 8);
    return l;
}

static void scratch_split(int strat, int64_t m, int64_t k, int64_t n, int32_t f,
                          int64_t *shared, int64_t *private_words)
{
    *shared = 0;
    *private_words = 0;
    if (strat == STRATEGY_FAST) {
        fast_layout l = fast_plan(m, k, n, f);
        *shared = l.shared_words;
        *private_words = l.private_words;
    } else if (strat == STRATEGY_GENERIC) {
        *shared = n;  /* column maxima */
    }
}

int64_t lns_matmul_scratch_words(int64_t batch, int64_t m, int64_t k, int64_t n,
                                 int32_t mode, int32_t frac_bits, int32_t threads)
{
    int64_t shared, private_words;
    if (threads < 1)
        threads = 1;
    scratch_split(strategy(mode, frac_bits), m, k, n, frac_bits, &shared, &private_words);
    int64_t copies = batch_parallel(batch, m, k, n, threads) ? threads : 1;
    return copies * shared + threads * private_words;
}

static void *align64(void *p)
{
    return (void *)(((uintptr_t)p + 63) & ~(uintptr_t)63);
}

/* Column maxima of B's nonzero entries over columns [j0, j1) (LNS_LOW if none). */
static void column_max(const mm_problem *p, int64_t j0, int64_t j1, int64_t *bmax)
{
    for (int64_t j = j0; j < j1; j++)
        bmax[j] = LNS_LOW;
    for (int64_t kk = 0; kk < p->k; kk++) {
        const int8_t *s = p->sb + kk * p->n;
        const int64_t *x = p->xb + kk * p->n;
        for (int64_t j = j0; j < j1; j++)
            bmax[j] = s[j] != 0 && x[j] > bmax[j] ? x[j] : bmax[j];
    }
}

/* ---- generic linear: the reference formula, vectorized over columns ---- */

static inline __attribute__((always_inline))
void generic_chunk_body(const mm_problem *p, int64_t i, int64_t j0, int64_t width,
                        const int64_t *bmax)
{
    int32_t f = p->t->frac_bits;
    int64_t mask = ((int64_t)1 << f) - 1;
    int32_t margin = p->margin;
    int64_t amax = row_max(p->sa + i * p->k, p->xa + i * p->k, p->k);
    int64_t qb[CW], e0[CW], ox[CW];
    uint64_t acc[CW];
    int8_t os[CW];
    for (int64_t c = 0; c < CW; c++) {
        int64_t q = c < width ? (amax + bmax[j0 + c]) >> f : 0;
        qb[c] = q;
        e0[c] = q - LNS_POW2_BITS - margin;
        acc[c] = 0;
    }
    for (int64_t kk = 0; kk < p->k; kk++) {
        int8_t sa = p->sa[i * p->k + kk];
        if (sa == 0)
            continue;
        int64_t xa = p->xa[i * p->k + kk];
        const int8_t *sb = p->sb + kk * p->n + j0;
        const int64_t *xb = p->xb + kk * p->n + j0;
        for (int64_t c = 0; c < width; c++) {
            int64_t prod = xa + xb[c];
            int64_t drop = clip_shift(qb[c] - (prod >> f));
            int64_t term = (p->table[prod & mask] << margin) >> drop;
            acc[c] += (uint64_t)((int64_t)(int8_t)(sa * sb[c]) * term);
        }
    }
    for (int64_t c = 0; c < CW; c++)
        lns_from_fixed_elem((int64_t)acc[c], e0[c], p->t, &os[c], &ox[c]);
    for (int64_t c = 0; c < width; c++) {
        p->os[i * p->n + j0 + c] = os[c];
        p->ox[i * p->n + j0 + c] = ox[c];
    }
}

/* ---- logadd: ⊕ in index order, vectorized over columns ----------------- */

static inline __attribute__((always_inline))
void logadd_chunk_body(const mm_problem *p, int64_t i, int64_t j0, int64_t width)
{
    const lns_tables *t = p->t;
    uint64_t n_sb = (uint64_t)t->n_sb, n_db = (uint64_t)t->n_db;
    int64_t as[CW], ax[CW];
    for (int64_t c = 0; c < CW; c++) {
        as[c] = 0;
        ax[c] = 0;
    }
    for (int64_t kk = 0; kk < p->k; kk++) {
        int8_t sa = p->sa[i * p->k + kk];
        if (sa == 0)  /* a zero product leaves every accumulator as it is */
            continue;
        int64_t xa = p->xa[i * p->k + kk];
        const int8_t *sb = p->sb + kk * p->n + j0;
        const int64_t *xb = p->xb + kk * p->n + j0;
        /* lns_add_one, written with selects only so that it vectorizes */
        for (int64_t c = 0; c < width; c++) {
            int64_t s1 = as[c], x1 = ax[c];
            int64_t s2 = (int8_t)(sa * sb[c]);
            int64_t x2 = xa + xb[c];
            int64_t a_larger = x1 >= x2;
            uint64_t d = a_larger ? (uint64_t)x1 - (uint64_t)x2 : (uint64_t)x2 - (uint64_t)x1;
            int64_t same = s1 == s2;
            int64_t c_sb = d < n_sb ? t->sb[d < n_sb ? d : 0] : 0;
            int64_t c_db = d < n_db ? t->db[d < n_db ? d : 0] : 0;
            int64_t corr = same ? c_sb : c_db;
            int64_t sign = a_larger ? s1 : s2;
            int64_t x = (int64_t)((uint64_t)(a_larger ? x1 : x2) + (uint64_t)corr);
            sign = (!same && d == 0) ? 0 : sign;
            sign = s1 == 0 ? s2 : (s2 == 0 ? s1 : sign);
            x = s1 == 0 ? x2 : (s2 == 0 ? x1 : x);
            as[c] = sign;
            ax[c] = sign != 0 ? x : 0;
        }
    }
    for (int64_t c = 0; c < width; c++) {
        p->os[i * p->n + j0 + c] = (int8_t)as[c];
        p->ox[i * p->n + j0 + c] = ax[c];
    }
}

/* ---- fast linear: variant rows ------------------------------------------ */

typedef struct {
    fast_layout l;
    int64_t *amax, *bmax, *perm, *hmax, *bu, *unsafe_count;
    int8_t *bs;
    int32_t *entries, *unsafe;
    uint64_t *bias;
    int64_t chunks, row_blocks, rows_per_block;
    int level;
} fast_state;

static fast_state fast_setup(const mm_problem *p, int64_t *shared, int32_t threads, int level)
{
    fast_state st;
    st.l = fast_plan(p->m, p->k, p->n, p->t->frac_bits);
    st.amax = shared + st.l.amax;
    st.bmax = shared + st.l.bmax;
    st.perm = shared + st.l.perm;
    st.hmax = shared + st.l.hmax;
    st.bu = shared + st.l.bu;
    st.bs = (int8_t *)(shared + st.l.bs);
    st.entries = (int32_t *)(shared + st.l.entries);
    st.unsafe = (int32_t *)(shared + st.l.unsafe);
    st.unsafe_count = shared + st.l.unsafe_count;
    st.bias = (uint64_t *)(shared + st.l.bias);
    st.chunks = st.l.npad / CW;
    /* Enough work items to keep every thread busy; rows are only split when
     * there are few chunks, since each item rebuilds its chunk's variant rows. */
    int64_t want = 2 * (int64_t)threads;
    st.row_blocks = st.chunks >= want ? 1 : ceil_div(want, st.chunks);
    int64_t max_blocks = ceil_div(p->m, 64);
    if (st.row_blocks > max_blocks)
        st.row_blocks = max_blocks;
    st.rows_per_block = ceil_div(p->m, st.row_blocks);
    st.level = level;
    return st;
}

static inline int64_t beta_of(int64_t bmax, int64_t gamma)
{
    return bmax & (gamma - 1);
}

/* Phase 2: columns sorted by beta (counting sort, stable), so that
 * cc = [rho + beta >= gamma] changes at most once along a row. */
static void fast_sort_columns(const mm_problem *p, fast_state *st)
{
    int64_t gamma = st->l.gamma;
    int64_t start[(1 << FAST_MAX_F) + 1];
    for (int64_t b = 0; b <= gamma; b++)
        start[b] = 0;
    for (int64_t j = 0; j < p->n; j++)
        start[beta_of(st->bmax[j], gamma) + 1]++;
    for (int64_t b = 0; b < gamma; b++)
        start[b + 1] += start[b];
    for (int64_t j = 0; j < p->n; j++)
        st->perm[start[beta_of(st->bmax[j], gamma)]++] = j;
}

/* Phase 3: one k panel of B in sorted column order as (ub, sign), zero b and
 * padding as (ZERO_UB, 0); and hmax, the largest (e + ub) >> f of a nonzero b. */
static void fast_prepare_panel(const mm_problem *p, fast_state *st, int64_t panel)
{
    int64_t gamma = st->l.gamma, kc = st->l.kc, npad = st->l.npad, f = p->t->frac_bits;
    int64_t ubmax = 0;
    for (int64_t c = 0; c < kc; c++) {
        int64_t kk = panel * kc + c;
        int64_t *bu = st->bu + (panel * kc + c) * npad;
        int8_t *bs = st->bs + (panel * kc + c) * npad;
        for (int64_t q = 0; q < npad; q++) {
            int64_t ub = ZERO_UB;
            int8_t sign = 0;
            if (kk < p->k && q < p->n) {
                int64_t j = st->perm[q];
                int8_t s = p->sb[kk * p->n + j];
                if (s != 0) {
                    sign = s > 0 ? 1 : -1;
                    ub = gamma * ((st->bmax[j] >> f) + 1) - p->xb[kk * p->n + j];
                    ubmax = ub > ubmax ? ub : ubmax;
                }
            }
            bu[q] = ub;
            bs[q] = sign;
        }
    }
    st->hmax[panel] = (gamma - 1 + ubmax) >> f;
}

/* Phase 4: row i's entries, kc per panel: which variant row, and g.  A zero
 * product, and an unsafe one (kept apart), point at the zero row with g = 0;
 * bias[cc] is the sum over the entries of 2^(63 - g - cc). */
static void fast_row_entries(const mm_problem *p, fast_state *st, int64_t i)
{
    const fast_layout *l = &st->l;
    int64_t gamma = l->gamma, kc = l->kc, f = p->t->frac_bits;
    const int8_t *sa = p->sa + i * p->k;
    const int64_t *xa = p->xa + i * p->k;
    int64_t amax = row_max(sa, xa, p->k);
    st->amax[i] = amax;
    int64_t top = gamma * ((amax >> f) + 1) - 1;
    int32_t zero_entry = (int32_t)(2 * gamma * kc * CW);
    for (int64_t panel = 0; panel < l->panels; panel++) {
        int64_t slot = panel * p->m + i;  /* panel-major: a panel's rows are adjacent */
        int32_t *ent = st->entries + slot * kc;
        int32_t *uns = st->unsafe + slot * kc;
        int64_t n_unsafe = 0;
        int64_t safe_g = (int64_t)p->margin - st->hmax[panel];
        uint64_t bias0 = 0, bias1 = 0;
        for (int64_t c = 0; c < kc; c++) {
            int64_t kk = panel * kc + c;
            int32_t entry = zero_entry;
            if (kk < p->k && sa[kk] != 0) {
                int64_t ua = top - xa[kk];
                int64_t g = ua >> f;
                int64_t sigma = sa[kk] < 0;
                int64_t off = ((sigma * gamma + (ua & (gamma - 1))) * kc + c) * CW;
                if (g <= safe_g)
                    entry = (int32_t)(off | (g << ENTRY_G_SHIFT));
                else if (g < 63)  /* from 63 on, every term is 0 */
                    uns[n_unsafe++] = (int32_t)(off | (g << ENTRY_G_SHIFT));
            }
            ent[c] = entry;
            int64_t g = entry >> ENTRY_G_SHIFT;
            bias0 += (uint64_t)1 << (63 - g);
            bias1 += (uint64_t)1 << (62 - g);
        }
        st->unsafe_count[slot] = n_unsafe;
        st->bias[2 * slot] = bias0;
        st->bias[2 * slot + 1] = bias1;
    }
}

/* TL1[u mod gamma] = T[gamma-1 - (u mod gamma)] << (L+1), W_e(ub) = TL1[u] >> h. */
static void fast_tl1(const mm_problem *p, int64_t gamma, int64_t *tl1)
{
    for (int64_t r = 0; r < gamma; r++)
        tl1[gamma - 1 - r] = p->table[r] << (p->margin + 1);
}

/* The variant rows of one (column chunk, k panel), offset binary, then the
 * zero row. */
static inline __attribute__((always_inline))
void fast_build_body(const mm_problem *p, const fast_state *st, int64_t chunk, int64_t panel,
                     uint64_t *v)
{
    const fast_layout *l = &st->l;
    int64_t gamma = l->gamma, kc = l->kc, f = p->t->frac_bits;
    int64_t tl1[1 << FAST_MAX_F];
    fast_tl1(p, gamma, tl1);
    for (int64_t c = 0; c < kc; c++) {
        const int64_t *bu = st->bu + (panel * kc + c) * l->npad + chunk * CW;
        const int8_t *bs = st->bs + (panel * kc + c) * l->npad + chunk * CW;
        for (int64_t e = 0; e < gamma; e++) {
            uint64_t *pos = v + (e * kc + c) * CW;
            uint64_t *neg = v + ((gamma + e) * kc + c) * CW;
            for (int64_t w = 0; w < CW; w++) {
                int64_t u = e + bu[w];
                int64_t h = u >> f;
                int64_t val = bs[w] * (tl1[u & (gamma - 1)] >> (h < 63 ? h : 63));
                pos[w] = (uint64_t)val ^ OFFSET_BINARY;
                neg[w] = (uint64_t)(-val) ^ OFFSET_BINARY;
            }
        }
    }
    uint64_t *zero = v + 2 * gamma * kc * CW;
    for (int64_t w = 0; w < CW; w++)
        zero[w] = OFFSET_BINARY;
}

/* Safe entries of rows with one cc across the chunk (row_cc 0 or 1; 2 means
 * mixed, done by fast_mixed): one load, shift and add per 8 or 4 products. */
static inline __attribute__((always_inline))
void fast_rows_body(const int32_t *ent, const uint64_t *bias, const int8_t *row_cc,
                    int64_t rows, int64_t kc, const uint64_t *v, uint64_t *acc)
{
    for (int64_t r = 0; r < rows; r++) {
        int64_t cc = row_cc[r];
        if (cc > 1)
            continue;
        uint64_t a[CW];
        uint64_t b = bias[2 * r + cc];
        for (int64_t w = 0; w < CW; w++)
            a[w] = acc[r * CW + w] - b;
        for (int64_t c = 0; c < kc; c++) {
            int32_t e = ent[r * kc + c];
            const uint64_t *src = v + (e & ENTRY_OFF_MASK);
            int64_t count = (e >> ENTRY_G_SHIFT) + cc;
            for (int64_t w = 0; w < CW; w++)
                a[w] += src[w] >> count;
        }
        for (int64_t w = 0; w < CW; w++)
            acc[r * CW + w] = a[w];
    }
}

/* Safe entries of a row whose cc turns from 0 to 1 at column first_cc1. */
static void fast_mixed(const int32_t *ent, const uint64_t *bias, int64_t kc, const uint64_t *v,
                       int64_t first_cc1, uint64_t *acc)
{
    int64_t cc[CW];
    for (int64_t w = 0; w < CW; w++) {
        cc[w] = w >= first_cc1;
        acc[w] -= bias[cc[w]];
    }
    for (int64_t c = 0; c < kc; c++) {
        const uint64_t *src = v + (ent[c] & ENTRY_OFF_MASK);
        int64_t g = ent[c] >> ENTRY_G_SHIFT;
        for (int64_t w = 0; w < CW; w++)
            acc[w] += src[w] >> (g + cc[w]);
    }
}

/* Unsafe entries: truncate each magnitude, as the reference does. */
static void fast_unsafe(const int32_t *uns, int64_t count, const uint64_t *v, int64_t first_cc1,
                        uint64_t *acc)
{
    for (int64_t c = 0; c < count; c++) {
        const uint64_t *src = v + (uns[c] & ENTRY_OFF_MASK);
        int64_t g = uns[c] >> ENTRY_G_SHIFT;
        for (int64_t w = 0; w < CW; w++) {
            int64_t val = (int64_t)(src[w] ^ OFFSET_BINARY);
            int64_t shift = g + (w >= first_cc1);
            int64_t t = val >= 0 ? val >> shift : -((-val) >> shift);
            acc[w] += (uint64_t)t;
        }
    }
}

/* Rows [r0, r1) of one chunk: accumulators to (sign, exponent), through the
 * column permutation. */
static inline __attribute__((always_inline))
void fast_finish_body(const mm_problem *p, const fast_state *st, int64_t chunk, int64_t r0,
                      int64_t r1, const uint64_t *acc)
{
    int32_t f = p->t->frac_bits;
    int64_t q0 = chunk * CW;
    int64_t width = p->n - q0 < CW ? p->n - q0 : CW;
    int64_t col[CW], bq[CW];
    for (int64_t w = 0; w < CW; w++) {
        col[w] = w < width ? st->perm[q0 + w] : 0;
        bq[w] = w < width ? st->bmax[col[w]] : 0;
    }
    for (int64_t i = r0; i < r1; i++) {
        int64_t amax = st->amax[i];
        int8_t os[CW];
        int64_t ox[CW];
        for (int64_t w = 0; w < CW; w++) {
            int64_t e0 = ((amax + bq[w]) >> f) - LNS_POW2_BITS - p->margin;
            lns_from_fixed_elem((int64_t)acc[(i - r0) * CW + w], e0, p->t, &os[w], &ox[w]);
        }
        for (int64_t w = 0; w < width; w++) {
            p->os[i * p->n + col[w]] = os[w];
            p->ox[i * p->n + col[w]] = ox[w];
        }
    }
}

/* ---- the SIMD versions --------------------------------------------------- */

typedef void (*generic_chunk_fn)(const mm_problem *, int64_t, int64_t, int64_t, const int64_t *);
typedef void (*logadd_chunk_fn)(const mm_problem *, int64_t, int64_t, int64_t);
typedef void (*fast_build_fn)(const mm_problem *, const fast_state *, int64_t, int64_t, uint64_t *);
typedef void (*fast_rows_fn)(const int32_t *, const uint64_t *, const int8_t *, int64_t, int64_t,
                             const uint64_t *, uint64_t *);
typedef void (*fast_finish_fn)(const mm_problem *, const fast_state *, int64_t, int64_t, int64_t,
                               const uint64_t *);

typedef struct {
    generic_chunk_fn generic;
    logadd_chunk_fn logadd;
    fast_build_fn build;
    fast_rows_fn rows;
    fast_finish_fn finish;
} kernel_set;

/* Each body compiled once per level: the same C, so the same integers. */
#define LNS_KERNEL_SET(suffix, target)                                                          \
    target static void generic_##suffix(const mm_problem *p, int64_t i, int64_t j0, int64_t w, \
                                        const int64_t *bmax)                                    \
    {                                                                                           \
        generic_chunk_body(p, i, j0, w, bmax);                                                  \
    }                                                                                           \
    target static void logadd_##suffix(const mm_problem *p, int64_t i, int64_t j0, int64_t w)  \
    {                                                                                           \
        logadd_chunk_body(p, i, j0, w);                                                         \
    }                                                                                           \
    target static void finish_##suffix(const mm_problem *p, const fast_state *st, int64_t chunk, \
                                       int64_t r0, int64_t r1, const uint64_t *acc)             \
    {                                                                                           \
        fast_finish_body(p, st, chunk, r0, r1, acc);                                            \
    }

#define LNS_NO_TARGET
LNS_KERNEL_SET(portable, LNS_NO_TARGET)

static void build_portable(const mm_problem *p, const fast_state *st, int64_t chunk,
                           int64_t panel, uint64_t *v)
{
    fast_build_body(p, st, chunk, panel, v);
}

static void rows_portable(const int32_t *ent, const uint64_t *bias, const int8_t *row_cc,
                          int64_t rows, int64_t kc, const uint64_t *v, uint64_t *acc)
{
    fast_rows_body(ent, bias, row_cc, rows, kc, v, acc);
}

#ifdef LNS_X86
LNS_KERNEL_SET(avx2, LNS_TARGET_AVX2)
LNS_KERNEL_SET(avx512, LNS_TARGET_AVX512)

LNS_TARGET_AVX2
static void build_avx2(const mm_problem *p, const fast_state *st, int64_t chunk, int64_t panel,
                       uint64_t *v)
{
    fast_build_body(p, st, chunk, panel, v);
}

LNS_TARGET_AVX2
static void rows_avx2(const int32_t *ent, const uint64_t *bias, const int8_t *row_cc,
                      int64_t rows, int64_t kc, const uint64_t *v, uint64_t *acc)
{
    for (int64_t r = 0; r < rows; r++) {
        int64_t cc = row_cc[r];
        if (cc > 1)
            continue;
        const int32_t *e = ent + r * kc;
        uint64_t *a = acc + r * CW;
        __m256i b = _mm256_set1_epi64x((int64_t)bias[2 * r + cc]);
        __m256i a0 = _mm256_sub_epi64(_mm256_load_si256((const __m256i *)a), b);
        __m256i a1 = _mm256_sub_epi64(_mm256_load_si256((const __m256i *)(a + 4)), b);
        __m256i a2 = _mm256_sub_epi64(_mm256_load_si256((const __m256i *)(a + 8)), b);
        __m256i a3 = _mm256_sub_epi64(_mm256_load_si256((const __m256i *)(a + 12)), b);
        for (int64_t c = 0; c < kc; c++) {
            const __m256i *src = (const __m256i *)(v + (e[c] & ENTRY_OFF_MASK));
            __m256i count = _mm256_set1_epi64x((e[c] >> ENTRY_G_SHIFT) + cc);
            a0 = _mm256_add_epi64(a0, _mm256_srlv_epi64(_mm256_load_si256(src), count));
            a1 = _mm256_add_epi64(a1, _mm256_srlv_epi64(_mm256_load_si256(src + 1), count));
            a2 = _mm256_add_epi64(a2, _mm256_srlv_epi64(_mm256_load_si256(src + 2), count));
            a3 = _mm256_add_epi64(a3, _mm256_srlv_epi64(_mm256_load_si256(src + 3), count));
        }
        _mm256_store_si256((__m256i *)a, a0);
        _mm256_store_si256((__m256i *)(a + 4), a1);
        _mm256_store_si256((__m256i *)(a + 8), a2);
        _mm256_store_si256((__m256i *)(a + 12), a3);
    }
}

/* The same variant rows as fast_build_body: TL1 sits in registers and is
 * looked up by a permute (gamma <= 8: vpermq, gamma = 16: vpermt2q), which
 * use only the low bits of u, i.e. u mod gamma. */
LNS_TARGET_AVX512
static void build_avx512(const mm_problem *p, const fast_state *st, int64_t chunk, int64_t panel,
                         uint64_t *v)
{
    const fast_layout *l = &st->l;
    int64_t gamma = l->gamma, kc = l->kc, f = p->t->frac_bits;
    int64_t tl1[1 << FAST_MAX_F], wide[16];
    fast_tl1(p, gamma, tl1);
    for (int64_t r = 0; r < 16; r++)
        wide[r] = tl1[r & (gamma - 1)];
    __m512i lo = _mm512_loadu_si512(wide), hi = _mm512_loadu_si512(wide + 8);
    __m128i fshift = _mm_cvtsi64_si128(f);
    __m512i ob = _mm512_set1_epi64((int64_t)OFFSET_BINARY), zero = _mm512_setzero_si512();
    for (int64_t c = 0; c < kc; c++) {
        const int64_t *bu = st->bu + (panel * kc + c) * l->npad + chunk * CW;
        const int8_t *bs = st->bs + (panel * kc + c) * l->npad + chunk * CW;
        __mmask16 negative = _mm_movepi8_mask(_mm_loadu_si128((const __m128i *)bs));
        __m512i ub0 = _mm512_loadu_si512(bu), ub1 = _mm512_loadu_si512(bu + 8);
        for (int64_t e = 0; e < gamma; e++) {
            __m512i ev = _mm512_set1_epi64(e);
            __m512i u0 = _mm512_add_epi64(ub0, ev), u1 = _mm512_add_epi64(ub1, ev);
            __m512i t0 = _mm512_permutex2var_epi64(lo, u0, hi);
            __m512i t1 = _mm512_permutex2var_epi64(lo, u1, hi);
            /* h >= 64 shifts to 0, as h >= 63 does in the C body */
            __m512i w0 = _mm512_srlv_epi64(t0, _mm512_srl_epi64(u0, fshift));
            __m512i w1 = _mm512_srlv_epi64(t1, _mm512_srl_epi64(u1, fshift));
            w0 = _mm512_mask_sub_epi64(w0, (__mmask8)negative, zero, w0);
            w1 = _mm512_mask_sub_epi64(w1, (__mmask8)(negative >> 8), zero, w1);
            uint64_t *pos = v + (e * kc + c) * CW;
            uint64_t *neg = v + ((gamma + e) * kc + c) * CW;
            _mm512_store_si512(pos, _mm512_xor_si512(w0, ob));
            _mm512_store_si512(pos + 8, _mm512_xor_si512(w1, ob));
            _mm512_store_si512(neg, _mm512_xor_si512(_mm512_sub_epi64(zero, w0), ob));
            _mm512_store_si512(neg + 8, _mm512_xor_si512(_mm512_sub_epi64(zero, w1), ob));
        }
    }
    _mm512_store_si512(v + 2 * gamma * kc * CW, ob);
    _mm512_store_si512(v + 2 * gamma * kc * CW + 8, ob);
}

LNS_TARGET_AVX512
static void rows_avx512(const int32_t *ent, const uint64_t *bias, const int8_t *row_cc,
                        int64_t rows, int64_t kc, const uint64_t *v, uint64_t *acc)
{
    for (int64_t r = 0; r < rows; r++) {
        int64_t cc = row_cc[r];
        if (cc > 1)
            continue;
        const int32_t *e = ent + r * kc;
        uint64_t *a = acc + r * CW;
        __m512i b = _mm512_set1_epi64((int64_t)bias[2 * r + cc]);
        __m512i a0 = _mm512_sub_epi64(_mm512_load_si512(a), b);
        __m512i a1 = _mm512_sub_epi64(_mm512_load_si512(a + 8), b);
        for (int64_t c = 0; c < kc; c++) {
            const uint64_t *src = v + (e[c] & ENTRY_OFF_MASK);
            __m512i count = _mm512_set1_epi64((e[c] >> ENTRY_G_SHIFT) + cc);
            a0 = _mm512_add_epi64(a0, _mm512_srlv_epi64(_mm512_load_si512(src), count));
            a1 = _mm512_add_epi64(a1, _mm512_srlv_epi64(_mm512_load_si512(src + 8), count));
        }
        _mm512_store_si512(a, a0);
        _mm512_store_si512(a + 8, a1);
    }
}
#endif

static kernel_set kernels_for(int level)
{
    kernel_set ks = {generic_portable, logadd_portable, build_portable, rows_portable,
                     finish_portable};
#ifdef LNS_X86
    if (level == LNS_SIMD_AVX512) {
        kernel_set wide = {generic_avx512, logadd_avx512, build_avx512, rows_avx512,
                           finish_avx512};
        ks = wide;
    } else if (level == LNS_SIMD_AVX2) {
        kernel_set mid = {generic_avx2, logadd_avx2, build_avx2, rows_avx2, finish_avx2};
        ks = mid;
    }
#endif
    return ks;
}

/* ---- fast linear: work items and drivers --------------------------------- */

/* One work item: columns of one chunk, rows [r0, r1), all panels. */
static void fast_item(const mm_problem *p, const fast_state *st, const kernel_set *ks,
                      int64_t chunk, int64_t r0, int64_t r1, int64_t *private_area)
{
    const fast_layout *l = &st->l;
    int64_t gamma = l->gamma, kc = l->kc;
    uint64_t *v = align64(private_area + l->variants);
    uint64_t *acc = align64(private_area + l->acc);
    int8_t *row_cc = (int8_t *)(private_area + l->row_cc);
    int64_t q0 = chunk * CW;
    int64_t width = p->n - q0 < CW ? p->n - q0 : CW;
    /* cc of a row is the same in every panel: in sorted beta order it turns
     * from 0 to 1 at first_cc1 (CW if never). */
    int64_t first_cc1_by_rho[1 << FAST_MAX_F];
    for (int64_t rho = 0; rho < gamma; rho++) {
        int64_t w = 0;
        while (w < width && rho + beta_of(st->bmax[st->perm[q0 + w]], gamma) < gamma)
            w++;
        first_cc1_by_rho[rho] = w < width ? w : CW;
    }
    for (int64_t i = r0; i < r1; i++) {
        int64_t first = first_cc1_by_rho[st->amax[i] & (gamma - 1)];
        row_cc[i - r0] = (int8_t)(first == CW ? 0 : (first == 0 ? 1 : 2));
    }
    memset(acc, 0, (size_t)((r1 - r0) * CW) * sizeof(uint64_t));
    for (int64_t panel = 0; panel < l->panels; panel++) {
        ks->build(p, st, chunk, panel, v);
        int64_t slot0 = panel * p->m + r0;
        ks->rows(st->entries + slot0 * kc, st->bias + 2 * slot0, row_cc, r1 - r0, kc, v, acc);
        for (int64_t i = r0; i < r1; i++) {
            int64_t slot = panel * p->m + i;
            int64_t first = first_cc1_by_rho[st->amax[i] & (gamma - 1)];
            uint64_t *a = acc + (i - r0) * CW;
            if (row_cc[i - r0] == 2)
                fast_mixed(st->entries + slot * kc, st->bias + 2 * slot, kc, v, first, a);
            if (st->unsafe_count[slot] > 0)
                fast_unsafe(st->unsafe + slot * kc, st->unsafe_count[slot], v, first, a);
        }
    }
    ks->finish(p, st, chunk, r0, r1, acc);
}

/* One 2-D product, all phases, by the calling thread alone. */
static void fast_serial(const mm_problem *p, const kernel_set *ks, int64_t *shared,
                        int64_t *private_area, int level)
{
    fast_state st = fast_setup(p, shared, 1, level);
    column_max(p, 0, p->n, st.bmax);
    fast_sort_columns(p, &st);
    for (int64_t panel = 0; panel < st.l.panels; panel++)
        fast_prepare_panel(p, &st, panel);
    for (int64_t i = 0; i < p->m; i++)
        fast_row_entries(p, &st, i);
    for (int64_t chunk = 0; chunk < st.chunks; chunk++)
        fast_item(p, &st, ks, chunk, 0, p->m, private_area);
}

/* One 2-D product, every phase split over the team. */
static void fast_parallel(const mm_problem *p, const kernel_set *ks, int64_t *shared,
                          int64_t *private_base, int64_t private_words, int32_t threads,
                          int level)
{
    fast_state st = fast_setup(p, shared, threads, level);
    int64_t items = st.chunks * st.row_blocks;
    int64_t col_blocks = ceil_div(p->n, 64);
    #pragma omp parallel num_threads(threads)
    {
        int tid = 0;
#ifdef _OPENMP
        tid = omp_get_thread_num();
#endif
        #pragma omp for schedule(static)
        for (int64_t cb = 0; cb < col_blocks; cb++) {
            int64_t j1 = (cb + 1) * 64 < p->n ? (cb + 1) * 64 : p->n;
            column_max(p, cb * 64, j1, st.bmax);
        }
        #pragma omp single
        fast_sort_columns(p, &st);
        #pragma omp for schedule(static)
        for (int64_t panel = 0; panel < st.l.panels; panel++)
            fast_prepare_panel(p, &st, panel);
        #pragma omp for schedule(static)
        for (int64_t i = 0; i < p->m; i++)
            fast_row_entries(p, &st, i);
        #pragma omp for schedule(dynamic, 1)
        for (int64_t item = 0; item < items; item++) {
            int64_t chunk = item / st.row_blocks, block = item % st.row_blocks;
            int64_t r0 = block * st.rows_per_block;
            int64_t r1 = r0 + st.rows_per_block < p->m ? r0 + st.rows_per_block : p->m;
            if (r0 < r1)
                fast_item(p, &st, ks, chunk, r0, r1, private_base + tid * private_words);
        }
    }
}

/* ---- generic and logadd drivers ---------------------------------------- */

static void rowwise_chunk(const mm_problem *p, const kernel_set *ks, int strat, int64_t i,
                          int64_t j0, const int64_t *bmax)
{
    int64_t w = p->n - j0 < CW ? p->n - j0 : CW;
    if (strat == STRATEGY_GENERIC)
        ks->generic(p, i, j0, w, bmax);
    else
        ks->logadd(p, i, j0, w);
}

static void rowwise_serial(const mm_problem *p, const kernel_set *ks, int strat, int64_t *shared)
{
    if (strat == STRATEGY_GENERIC)
        column_max(p, 0, p->n, shared);
    for (int64_t i = 0; i < p->m; i++)
        for (int64_t j0 = 0; j0 < p->n; j0 += CW)
            rowwise_chunk(p, ks, strat, i, j0, shared);
}

static void rowwise_parallel(const mm_problem *p, const kernel_set *ks, int strat,
                             int64_t *shared, int32_t threads)
{
    int64_t chunks = ceil_div(p->n, CW);
    int64_t col_blocks = ceil_div(p->n, 64);
    #pragma omp parallel num_threads(threads)
    {
        if (strat == STRATEGY_GENERIC) {
            #pragma omp for schedule(static)
            for (int64_t cb = 0; cb < col_blocks; cb++) {
                int64_t j1 = (cb + 1) * 64 < p->n ? (cb + 1) * 64 : p->n;
                column_max(p, cb * 64, j1, shared);
            }
        }
        #pragma omp for schedule(dynamic, 4)
        for (int64_t item = 0; item < p->m * chunks; item++)
            rowwise_chunk(p, ks, strat, item / chunks, (item % chunks) * CW, shared);
    }
}

int lns_matmul(int64_t batch, int64_t m, int64_t k, int64_t n,
               const int8_t *sa, const int64_t *xa, const int64_t *a_offsets,
               const int8_t *sb, const int64_t *xb, const int64_t *b_offsets,
               int32_t mode, int32_t margin, const lns_tables *t,
               int64_t *scratch, int64_t scratch_words, int32_t threads,
               int8_t *out_s, int64_t *out_x)
{
    if (threads < 1)
        threads = 1;
    if (scratch_words < lns_matmul_scratch_words(batch, m, k, n, mode, t->frac_bits, threads))
        return -1;
    if (m == 0 || n == 0)
        return 0;
    if (k == 0) {  /* empty sums are exactly zero */
        memset(out_s, 0, (size_t)(batch * m * n));
        memset(out_x, 0, (size_t)(batch * m * n) * sizeof(int64_t));
        return 0;
    }
    int strat = strategy(mode, t->frac_bits);
    int level = lns_simd_current();
    kernel_set ks = kernels_for(level);
    int64_t shared, private_words;
    scratch_split(strat, m, k, n, t->frac_bits, &shared, &private_words);
    mm_problem base = {m, k, n, 0, 0, 0, 0, 0, 0, margin,
                       mode == LNS_MODE_MITCHELL ? t->mitchell : t->pow2, t};
    if (batch_parallel(batch, m, k, n, threads)) {
        /* copies of the shared area first, then one private area per thread */
        int64_t *private_base = scratch + threads * shared;
        #pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
        for (int64_t b = 0; b < batch; b++) {
            int tid = 0;
#ifdef _OPENMP
            tid = omp_get_thread_num();
#endif
            mm_problem p = base;
            p.sa = sa + a_offsets[b];
            p.xa = xa + a_offsets[b];
            p.sb = sb + b_offsets[b];
            p.xb = xb + b_offsets[b];
            p.os = out_s + b * m * n;
            p.ox = out_x + b * m * n;
            if (strat == STRATEGY_FAST)
                fast_serial(&p, &ks, scratch + tid * shared, private_base + tid * private_words,
                            level);
            else
                rowwise_serial(&p, &ks, strat, scratch + tid * shared);
        }
        return 0;
    }
    for (int64_t b = 0; b < batch; b++) {
        mm_problem p = base;
        p.sa = sa + a_offsets[b];
        p.xa = xa + a_offsets[b];
        p.sb = sb + b_offsets[b];
        p.xb = xb + b_offsets[b];
        p.os = out_s + b * m * n;
        p.ox = out_x + b * m * n;
        if (strat == STRATEGY_FAST)
            fast_parallel(&p, &ks, scratch, scratch + shared, private_words, threads, level);
        else
            rowwise_parallel(&p, &ks, strat, scratch, threads);
    }
    return 0;
}
