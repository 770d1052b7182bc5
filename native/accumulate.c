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
 *   load, one shift by g and one add: a row of A only picks a variant row
 *   and a shift count per k.
 *   The shift must truncate the magnitude, as the reference does.  W_e is a
 *   multiple of 2^(L+1-h) (h = (e+ub) >> f), so for g <= L - hmax (hmax over
 *   the panel) every shift by g + cc is exact ("safe"): the signed sum can be
 *   shifted as it is, and cc = 1 halves a row's partial sum over the panel
 *   once instead of shifting each term.  Columns are sorted by beta so that
 *   cc changes at most once along a row.  Products further down ("unsafe":
 *   both factors far below their maxima) are summed apart with
 *   sign-magnitude truncation.  Variant rows are kept in offset binary
 *   (value ^ 2^63) and shifted logically: that equals the arithmetic shift
 *   plus 2^(63-g), and those constants are summed per row in advance and
 *   taken off once (bias).
 *   The k panels are taken FAST_GROUP_PANELS at a time: B's prepared rows
 *   and A's per-product entries are held for one group only, so that a
 *   long sum needs no more scratch than 1024 products' worth (at gamma 8);
 *   with more than one group the row sums carry over in a shared array.
 * - generic linear (any gamma): the reference formula per product,
 *   written so that the compiler vectorizes it over a chunk of columns.
 * - logadd: ⊕ per product in index order, vectorized over columns.  With
 *   AVX-512, in int32 lanes where an exact zero is an exponent far below
 *   every real one (the "zero level", see "logadd with AVX-512"), so that the
 *   zero-operand rules of ⊕ fall out of its ordinary case.
 *
 * Both cores: OpenMP over column chunks and row blocks (or over batch
 * elements when they are many and small).  Every loop is scheduled
 * dynamically: on a shared machine a thread may lose its core for a while,
 * and the others should not wait for it at the next barrier.
 */
#include <string.h>

#include "lnsnet_native.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#ifdef LNS_X86
#include <immintrin.h>
#endif

/* Products of fewer multiply-adds than this run on the calling thread. */
#define SERIAL_BELOW ((int64_t)1 << 20)
/* The reference's base for a row without nonzero entries: int64 min // 4. */
#define LNS_LOW (INT64_MIN / 4)

/* Columns per chunk: the width of one fast-path microkernel call. */
#define CW 16
/* Fast path: gamma <= 2**FAST_MAX_F, k panel of FAST_KC_GAMMA / gamma rows,
 * so that a chunk's 2*gamma*kc variant rows (CW int64 each) fill 32 KiB of L1. */
#define FAST_MAX_F 4
#define FAST_KC_GAMMA 128
/* Panels whose row entries are worked out at a time (a "group"): the
 * entries of a long sum are not all held at once. */
#define FAST_GROUP_PANELS 64
#define OFFSET_BINARY 0x8000000000000000ull
/* ub of a zero b, and the most any ub is stored as: so far down that every
 * W_e is 0 (h = (e + ub) >> f >= 63 for every gamma of the fast path). */
#define ZERO_UB 1024
/* An unsafe entry: the word offset of its variant row (< 2**16) and g (< 63). */
#define UNSAFE_ENTRY(off, g) ((uint32_t)(off) | (uint32_t)(g) << 16)
#define UNSAFE_OFF(e) ((e) & 0xFFFFu)
#define UNSAFE_G(e) ((int64_t)((e) >> 16))

/* ---- threads and SIMD level -------------------------------------------- */

int lns_num_threads(void)
{
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

void lns_set_threads(int32_t threads)
{
#ifdef _OPENMP
    omp_set_num_threads(threads);
#else
    (void)threads;
#endif
}

static const char *const simd_names[] = {"portable", "avx2", "avx512"};
static int simd_cap = LNS_SIMD_AVX512;

static int simd_supported(void)
{
#ifdef LNS_X86
    __builtin_cpu_init();
    /* the AVX-512 functions are compiled for all these subsets (LNS_TARGET_AVX512) */
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")
        && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl")
        && __builtin_cpu_supports("avx512cd"))
        return LNS_SIMD_AVX512;
    if (__builtin_cpu_supports("avx2"))
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

static int64_t row_max(const int8_t *s, const int32_t *x, int64_t k)
{
    int64_t base = LNS_LOW;
    for (int64_t i = 0; i < k; i++)
        base = s[i] != 0 && x[i] > base ? x[i] : base;
    return base;
}

static void sum_linear_row(int64_t k, const int8_t *s, const int32_t *x, const int64_t *table,
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

static void sum_logadd_row(int64_t k, const int8_t *s, const int32_t *x, const lns_tables *t,
                           int8_t *os, int64_t *ox)
{
    int8_t as = 0;
    int64_t ax = 0;
    for (int64_t i = 0; i < k; i++)
        lns_add_one(as, ax, s[i], x[i], t, &as, &ax);
    *os = as;
    *ox = ax;
}

void lns_sum(int64_t rows, int64_t k, const int8_t *s, const int32_t *x,
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
    const int32_t *xa;
    const int8_t *sb;
    const int32_t *xb;
    int8_t *os;
    int64_t *ox;
    int32_t margin;
    const int64_t *table;
    const lns_tables *t;
} mm_problem;

enum { STRATEGY_FAST, STRATEGY_GENERIC, STRATEGY_LOGADD };

/* The strategy the scratch is sized for: the fast layout holds the generic
 * one's too, so lns_matmul may still turn to generic (fast_fits). */
static int strategy(int32_t mode, int32_t frac_bits)
{
    if (mode == LNS_MODE_LOGADD)
        return STRATEGY_LOGADD;
    return frac_bits <= FAST_MAX_F ? STRATEGY_FAST : STRATEGY_GENERIC;
}

/* Where cc = 1, the fast path sums a panel at twice the reference's scale
 * before halving.  The margin L leaves the reference's whole sum below
 * 2^63 and no bit more, so the doubled partial sum of a panel's n terms
 * (each below 2^(POW2_BITS + 2 + L)) fits only if n <= 2^(62 - POW2_BITS - 1 - L):
 * true when K > kc, and when K <= kc only for K a power of two. */
static int fast_fits(int64_t k, int32_t frac_bits, int32_t margin)
{
    int64_t kc = FAST_KC_GAMMA >> frac_bits;
    int64_t terms = k < kc ? k : kc;
    int64_t room = 62 - LNS_POW2_BITS - 1 - margin;
    return room >= 0 && room < 62 && terms <= ((int64_t)1 << room);
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
    int64_t gamma, kc, panels, group, npad;
    int64_t amax, bmax, perm, hmax, sums, bu, bs, counts, offsets, unsafe, unsafe_count, unsafe_rows, bias;
    int64_t shared_words;
    int64_t variants, acc, row_first, private_words;
} fast_layout;

/* With one group, each work item sums its rows over all of k and rounds
 * them at once, in a private accumulator; with more, the sums carry over
 * from group to group in a shared one (sums), rounded after the last. */
static int fast_one_group(const fast_layout *l)
{
    return l->panels <= l->group;
}

static fast_layout fast_plan(int64_t m, int64_t k, int64_t n, int32_t f)
{
    fast_layout l;
    l.gamma = (int64_t)1 << f;
    l.kc = FAST_KC_GAMMA >> f;
    l.panels = ceil_div(k, l.kc);
    l.group = l.panels < FAST_GROUP_PANELS ? l.panels : FAST_GROUP_PANELS;
    l.npad = ceil_div(n, CW) * CW;
    int64_t a_cells = l.group * m * l.kc;       /* one group's entries */
    int64_t b_cells = l.group * l.kc * l.npad;  /* one group's rows of B */
    l.amax = 0;
    l.bmax = l.amax + m;
    l.perm = l.bmax + n;
    l.hmax = l.perm + n;
    l.sums = l.hmax + l.panels;                  /* chunk-major: (chunk, row, CW) */
    l.bu = l.sums + (fast_one_group(&l) ? 0 : m * l.npad + 8);  /* int32 */
    l.bs = l.bu + ceil_div(b_cells, 2);                         /* int8 */
    l.counts = l.bs + ceil_div(b_cells, 8);
    l.offsets = l.counts + a_cells;               /* uint16 */
    l.unsafe = l.offsets + ceil_div(a_cells, 4);  /* uint32 */
    l.unsafe_count = l.unsafe + ceil_div(a_cells, 2);
    l.unsafe_rows = l.unsafe_count + l.group * m;
    l.bias = l.unsafe_rows + l.group;
    l.shared_words = l.bias + l.group * m;
    /* 2*gamma variant rows per k of the panel and one zero row; both blocks
     * get 8 words of slack to align them to 64 bytes. */
    l.variants = 0;
    l.acc = l.variants + (2 * l.gamma * l.kc + 1) * CW + 8;
    l.row_first = l.acc + (fast_one_group(&l) ? m * CW + 8 : 0);  /* int8 */
    l.private_words = l.row_first + ceil_div(m, 8);
    return l;
}

/* The AVX-512 logadd path: B as int32 exponents (zero b at the zero level)
 * and 16-bit masks of its negative signs, columns padded to LOGADD_GROUP;
 * and SB | DB as one int32 table (see logadd_gauss). */
#define LOGADD_GROUP 64

typedef struct {
    int64_t npad, nmax, xb, negb, gauss, gauss8, words;
} logadd_layout;

static logadd_layout logadd_plan(int64_t k, int64_t n, const lns_tables *t)
{
    logadd_layout l;
    l.npad = ceil_div(n, LOGADD_GROUP) * LOGADD_GROUP;
    l.nmax = t->n;
    l.xb = 0;                                        /* int32 */
    l.negb = l.xb + ceil_div(k * l.npad, 2);         /* uint16, one per 16 columns */
    l.gauss = l.negb + ceil_div(k * l.npad / 16, 4); /* int32, 2 * (nmax + 1) */
    l.gauss8 = l.gauss + l.nmax + 1;                 /* int8, 128 */
    l.words = l.gauss8 + 16;
    return l;
}

static void scratch_split(int strat, int64_t m, int64_t k, int64_t n, const lns_tables *t,
                          int64_t *shared, int64_t *private_words)
{
    *shared = 0;
    *private_words = 0;
    if (strat == STRATEGY_FAST) {
        fast_layout l = fast_plan(m, k, n, t->frac_bits);
        *shared = l.shared_words;
        *private_words = l.private_words;
    } else if (strat == STRATEGY_GENERIC) {
        *shared = n;  /* column maxima */
    } else {
        *shared = logadd_plan(k, n, t).words;
    }
}

int64_t lns_matmul_scratch_words(int64_t batch, int64_t m, int64_t k, int64_t n,
                                 int32_t mode, const lns_tables *t, int32_t threads)
{
    int64_t shared, private_words;
    if (threads < 1)
        threads = 1;
    scratch_split(strategy(mode, t->frac_bits), m, k, n, t, &shared, &private_words);
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
        const int32_t *x = p->xb + kk * p->n;
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
        const int32_t *xb = p->xb + kk * p->n + j0;
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

/* whole: the tables are held whole (t->n <= t->dense), read with selects
 * so that the loop vectorizes; otherwise through lns_sb and lns_db. */
static inline __attribute__((always_inline))
void logadd_chunk_tables(const mm_problem *p, int64_t i, int64_t j0, int64_t width, int whole)
{
    const lns_tables *t = p->t;
    uint64_t n = (uint64_t)t->n;
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
        const int32_t *xb = p->xb + kk * p->n + j0;
        /* lns_add_one, written with selects only so that it vectorizes */
        for (int64_t c = 0; c < width; c++) {
            int64_t s1 = as[c], x1 = ax[c];
            int64_t s2 = (int8_t)(sa * sb[c]);
            int64_t x2 = xa + xb[c];
            int64_t a_larger = x1 >= x2;
            uint64_t d = a_larger ? (uint64_t)x1 - (uint64_t)x2 : (uint64_t)x2 - (uint64_t)x1;
            int64_t same = s1 == s2;
            int64_t corr;
            if (whole)
                corr = d < n ? (same ? t->sb : t->db)[d < n ? d : 0] : 0;
            else
                corr = same ? lns_sb(t, d) : lns_db(t, d);
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

static inline __attribute__((always_inline))
void logadd_chunk_body(const mm_problem *p, int64_t i, int64_t j0, int64_t width)
{
    if (p->t->n <= p->t->dense)
        logadd_chunk_tables(p, i, j0, width, 1);
    else
        logadd_chunk_tables(p, i, j0, width, 0);
}

/* ---- fast linear: variant rows ------------------------------------------ */

typedef struct {
    fast_layout l;
    int64_t *amax, *bmax, *perm, *hmax, *counts, *unsafe_count, *unsafe_rows;
    int32_t *bu;
    int8_t *bs;
    uint16_t *offsets;
    uint32_t *unsafe;
    uint64_t *sums, *bias;
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
    st.bu = (int32_t *)(shared + st.l.bu);
    st.bs = (int8_t *)(shared + st.l.bs);
    st.sums = align64(shared + st.l.sums);
    if (!fast_one_group(&st.l))
        memset(st.sums, 0, (size_t)(p->m * st.l.npad) * sizeof(uint64_t));
    st.counts = shared + st.l.counts;
    st.offsets = (uint16_t *)(shared + st.l.offsets);
    st.unsafe = (uint32_t *)(shared + st.l.unsafe);
    st.unsafe_count = shared + st.l.unsafe_count;
    st.unsafe_rows = shared + st.l.unsafe_rows;
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

/* Phase 3, per group of panels: panel (the group's q-th) of B in sorted
 * column order as (ub, sign), ub at most ZERO_UB, zero b and padding as
 * (ZERO_UB, 0); and hmax, the largest (e + ub) >> f of a nonzero b.  Kept
 * for one group only: all of a long sum's B (LeNet's conv1 weight gradient
 * sums 50,176 products) took 14 MiB. */
static void fast_prepare_panel(const mm_problem *p, fast_state *st, int64_t panel, int64_t q)
{
    int64_t gamma = st->l.gamma, kc = st->l.kc, npad = st->l.npad, f = p->t->frac_bits;
    int64_t ubmax = 0;
    for (int64_t c = 0; c < kc; c++) {
        int64_t kk = panel * kc + c;
        int32_t *bu = st->bu + (q * kc + c) * npad;
        int8_t *bs = st->bs + (q * kc + c) * npad;
        for (int64_t w = 0; w < npad; w++) {
            int64_t ub = ZERO_UB;
            int8_t sign = 0;
            if (kk < p->k && w < p->n) {
                int64_t j = st->perm[w];
                int8_t s = p->sb[kk * p->n + j];
                if (s != 0) {
                    sign = s > 0 ? 1 : -1;
                    ub = gamma * ((st->bmax[j] >> f) + 1) - p->xb[kk * p->n + j];
                    ubmax = ub > ubmax ? ub : ubmax;
                }
            }
            bu[w] = (int32_t)(ub < ZERO_UB ? ub : ZERO_UB);
            bs[w] = sign;
        }
    }
    st->hmax[panel] = (gamma - 1 + ubmax) >> f;
}

/* Phase 4: row maxima of A. */
static void fast_row_max(const mm_problem *p, fast_state *st, int64_t i)
{
    st->amax[i] = row_max(p->sa + i * p->k, p->xa + i * p->k, p->k);
}

/* Phase 5, per group of panels [p0, p1): row i's entries, kc per panel: the
 * byte offset of the variant row and g.  A zero product, and an unsafe one
 * (listed apart), point at the zero row with g = 0; bias is the sum over the
 * entries of 2^(63 - g). */
static void fast_row_entries(const mm_problem *p, fast_state *st, int64_t i, int64_t p0,
                             int64_t p1)
{
    const fast_layout *l = &st->l;
    int64_t gamma = l->gamma, kc = l->kc, f = p->t->frac_bits;
    const int8_t *sa = p->sa + i * p->k;
    const int32_t *xa = p->xa + i * p->k;
    int64_t top = gamma * ((st->amax[i] >> f) + 1) - 1;
    int64_t zero_row = 2 * gamma * kc * CW;
    for (int64_t panel = p0; panel < p1; panel++) {
        int64_t slot = (panel - p0) * p->m + i;  /* panel-major: a panel's rows are adjacent */
        int64_t *cnt = st->counts + slot * kc;
        uint16_t *off = st->offsets + slot * kc;
        uint32_t *uns = st->unsafe + slot * kc;
        int64_t n_unsafe = 0;
        int64_t safe_g = (int64_t)p->margin - st->hmax[panel];
        uint64_t bias = 0;
        for (int64_t c = 0; c < kc; c++) {
            int64_t kk = panel * kc + c;
            int64_t row = zero_row, g = 0;
            if (kk < p->k && sa[kk] != 0) {
                int64_t ua = top - xa[kk];
                int64_t sigma = sa[kk] < 0;
                int64_t variant = ((sigma * gamma + (ua & (gamma - 1))) * kc + c) * CW;
                if (ua >> f <= safe_g) {
                    row = variant;
                    g = ua >> f;
                } else if (ua >> f < 63) {  /* from 63 on, every term is 0 */
                    uns[n_unsafe++] = UNSAFE_ENTRY(variant, ua >> f);
                }
            }
            cnt[c] = g;
            off[c] = (uint16_t)(row * 8);
            bias += (uint64_t)1 << (63 - g);
        }
        st->unsafe_count[slot] = n_unsafe;
        st->bias[slot] = bias;
    }
}

/* Phase 6: how many rows of the group's panel q have unsafe entries (mostly none). */
static void fast_count_unsafe(const mm_problem *p, fast_state *st, int64_t q)
{
    int64_t rows = 0;
    for (int64_t i = 0; i < p->m; i++)
        rows += st->unsafe_count[q * p->m + i] > 0;
    st->unsafe_rows[q] = rows;
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
void fast_build_body(const mm_problem *p, const fast_state *st, int64_t chunk, int64_t q,
                     uint64_t *v)
{
    const fast_layout *l = &st->l;
    int64_t gamma = l->gamma, kc = l->kc, f = p->t->frac_bits;
    int64_t tl1[1 << FAST_MAX_F];
    fast_tl1(p, gamma, tl1);
    for (int64_t c = 0; c < kc; c++) {
        const int32_t *bu = st->bu + (q * kc + c) * l->npad + chunk * CW;
        const int8_t *bs = st->bs + (q * kc + c) * l->npad + chunk * CW;
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

/* Safe entries of rows [0, rows) of a panel: one load, shift and add per 8
 * or 4 products.  The panel's partial sum is taken with the counts g; where
 * cc = 1 (columns from first[r] on) it is then halved, which is exact since
 * every safe term is a multiple of 2^(g+1): sum(V >> (g+1)) = sum(V >> g) / 2.
 * The sum starts at -bias, which cancels the offset-binary constants. */
static inline __attribute__((always_inline))
void fast_rows_body(const int64_t *cnt, const uint16_t *off, const uint64_t *bias,
                    const int8_t *first, int64_t rows, int64_t kc, const uint64_t *v,
                    uint64_t *acc)
{
    for (int64_t r = 0; r < rows; r++) {
        uint64_t sum[CW];
        for (int64_t w = 0; w < CW; w++)
            sum[w] = 0 - bias[r];
        for (int64_t c = 0; c < kc; c++) {
            const uint64_t *src = v + off[r * kc + c] / 8;
            int64_t g = cnt[r * kc + c];
            for (int64_t w = 0; w < CW; w++)
                sum[w] += src[w] >> g;
        }
        for (int64_t w = 0; w < CW; w++) {
            int64_t part = (int64_t)sum[w];
            acc[r * CW + w] += (uint64_t)(w >= first[r] ? part / 2 : part);
        }
    }
}

/* Unsafe entries: truncate each magnitude, as the reference does. */
static void fast_unsafe(const uint32_t *uns, int64_t count, const uint64_t *v, int64_t first_cc1,
                        uint64_t *acc)
{
    for (int64_t c = 0; c < count; c++) {
        const uint64_t *src = v + UNSAFE_OFF(uns[c]);
        int64_t g = UNSAFE_G(uns[c]);
        for (int64_t w = 0; w < CW; w++) {
            int64_t val = (int64_t)(src[w] ^ OFFSET_BINARY);
            int64_t shift = g + (w >= first_cc1);
            int64_t t = val >= 0 ? val >> shift : -((-val) >> shift);
            acc[w] += (uint64_t)t;
        }
    }
}

/* The output columns of one chunk (through the permutation) and their
 * column maxima; lanes past the matrix get column 0 and are not written.
 * Returns how many lanes are real. */
static inline int64_t chunk_columns(const mm_problem *p, const fast_state *st, int64_t chunk,
                                    int64_t col[CW], int64_t bq[CW])
{
    int64_t q0 = chunk * CW;
    int64_t width = p->n - q0 < CW ? p->n - q0 : CW;
    for (int64_t w = 0; w < CW; w++) {
        col[w] = w < width ? st->perm[q0 + w] : 0;
        bq[w] = w < width ? st->bmax[col[w]] : 0;
    }
    return width;
}

/* Rows [r0, r1) of one chunk: accumulators to (sign, exponent), through the
 * column permutation. */
static inline __attribute__((always_inline))
void fast_finish_body(const mm_problem *p, const fast_state *st, int64_t chunk, int64_t r0,
                      int64_t r1, const uint64_t *acc)
{
    int32_t f = p->t->frac_bits;
    int64_t col[CW], bq[CW];
    int64_t width = chunk_columns(p, st, chunk, col, bq);
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
typedef void (*fast_rows_fn)(const int64_t *, const uint16_t *, const uint64_t *, const int8_t *,
                             int64_t, int64_t, const uint64_t *, uint64_t *);
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
    }

#define LNS_NO_TARGET
LNS_KERNEL_SET(portable, LNS_NO_TARGET)

static void rows_portable(const int64_t *cnt, const uint16_t *off, const uint64_t *bias,
                          const int8_t *first, int64_t rows, int64_t kc, const uint64_t *v,
                          uint64_t *acc)
{
    fast_rows_body(cnt, off, bias, first, rows, kc, v, acc);
}

static void build_portable(const mm_problem *p, const fast_state *st, int64_t chunk,
                           int64_t q, uint64_t *v)
{
    fast_build_body(p, st, chunk, q, v);
}

static void finish_portable(const mm_problem *p, const fast_state *st, int64_t chunk, int64_t r0,
                            int64_t r1, const uint64_t *acc)
{
    fast_finish_body(p, st, chunk, r0, r1, acc);
}

#ifdef LNS_X86
LNS_KERNEL_SET(avx2, LNS_TARGET_AVX2)
LNS_KERNEL_SET(avx512, LNS_TARGET_AVX512)

LNS_TARGET_AVX2
static void build_avx2(const mm_problem *p, const fast_state *st, int64_t chunk, int64_t q,
                       uint64_t *v)
{
    fast_build_body(p, st, chunk, q, v);
}

LNS_TARGET_AVX2
static void finish_avx2(const mm_problem *p, const fast_state *st, int64_t chunk, int64_t r0,
                        int64_t r1, const uint64_t *acc)
{
    fast_finish_body(p, st, chunk, r0, r1, acc);
}

LNS_TARGET_AVX2
static void rows_avx2(const int64_t *cnt, const uint16_t *off, const uint64_t *bias,
                      const int8_t *first, int64_t rows, int64_t kc, const uint64_t *v,
                      uint64_t *acc)
{
    __m256i lane = _mm256_set_epi64x(3, 2, 1, 0), quarter = _mm256_set1_epi64x(4);
    __m256i top_bit = _mm256_set1_epi64x(INT64_MIN);
    for (int64_t r = 0; r < rows; r++) {
        __m256i s[4];
        __m256i start = _mm256_set1_epi64x((int64_t)(0 - bias[r]));
        for (int q = 0; q < 4; q++)
            s[q] = start;
        for (int64_t c = 0; c < kc; c++) {
            const __m256i *src = (const __m256i *)((const char *)v + off[r * kc + c]);
            __m256i count = _mm256_set1_epi64x(cnt[r * kc + c]);
            for (int q = 0; q < 4; q++)
                s[q] = _mm256_add_epi64(s[q], _mm256_srlv_epi64(_mm256_load_si256(src + q), count));
        }
        /* halve where cc = 1: an arithmetic shift by one, which AVX2 lacks */
        __m256i at = _mm256_set1_epi64x(first[r]), idx = lane;
        for (int q = 0; q < 4; q++, idx = _mm256_add_epi64(idx, quarter)) {
            __m256i cc1 = _mm256_cmpgt_epi64(idx, _mm256_sub_epi64(at, _mm256_set1_epi64x(1)));
            __m256i half = _mm256_or_si256(_mm256_srli_epi64(s[q], 1), _mm256_and_si256(s[q], top_bit));
            __m256i part = _mm256_blendv_epi8(s[q], half, cc1);
            __m256i *a = (__m256i *)(acc + r * CW) + q;
            _mm256_store_si256(a, _mm256_add_epi64(_mm256_load_si256(a), part));
        }
    }
}

/* The same variant rows as fast_build_body: TL1 sits in registers and is
 * looked up by a permute (gamma <= 8: vpermq, gamma = 16: vpermt2q), which
 * use only the low bits of u, i.e. u mod gamma. */
LNS_TARGET_AVX512
static void build_avx512(const mm_problem *p, const fast_state *st, int64_t chunk, int64_t q,
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
        const int32_t *bu = st->bu + (q * kc + c) * l->npad + chunk * CW;
        const int8_t *bs = st->bs + (q * kc + c) * l->npad + chunk * CW;
        __mmask16 negative = _mm_movepi8_mask(_mm_loadu_si128((const __m128i *)bs));
        __m512i ub0 = _mm512_cvtepi32_epi64(_mm256_loadu_si256((const __m256i *)bu));
        __m512i ub1 = _mm512_cvtepi32_epi64(_mm256_loadu_si256((const __m256i *)(bu + 8)));
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
static void rows_avx512(const int64_t *cnt, const uint16_t *off, const uint64_t *bias,
                        const int8_t *first, int64_t rows, int64_t kc, const uint64_t *v,
                        uint64_t *acc)
{
    __m512i lane = _mm512_set_epi64(7, 6, 5, 4, 3, 2, 1, 0), eight = _mm512_set1_epi64(8);
    __m512i one = _mm512_set1_epi64(1);
    for (int64_t r = 0; r < rows; r++) {
        const int64_t *cr = cnt + r * kc;
        const uint16_t *orow = off + r * kc;
        __m512i s0 = _mm512_set1_epi64((int64_t)(0 - bias[r])), s1 = s0;
        for (int64_t c = 0; c < kc; c++) {
            const uint64_t *src = (const uint64_t *)((const char *)v + orow[c]);
            __m512i count = _mm512_set1_epi64(cr[c]);  /* a broadcast load: no ALU */
            s0 = _mm512_add_epi64(s0, _mm512_srlv_epi64(_mm512_load_si512(src), count));
            s1 = _mm512_add_epi64(s1, _mm512_srlv_epi64(_mm512_load_si512(src + 8), count));
        }
        __m512i at = _mm512_set1_epi64(first[r]);
        __m512i cc0 = _mm512_maskz_mov_epi64(_mm512_cmpge_epi64_mask(lane, at), one);
        __m512i cc1 = _mm512_maskz_mov_epi64(
            _mm512_cmpge_epi64_mask(_mm512_add_epi64(lane, eight), at), one);
        uint64_t *a = acc + r * CW;
        _mm512_store_si512(a, _mm512_add_epi64(_mm512_load_si512(a), _mm512_srav_epi64(s0, cc0)));
        _mm512_store_si512(a + 8,
                           _mm512_add_epi64(_mm512_load_si512(a + 8), _mm512_srav_epi64(s1, cc1)));
    }
}

LNS_TARGET_AVX512
static void finish_avx512(const mm_problem *p, const fast_state *st, int64_t chunk, int64_t r0,
                          int64_t r1, const uint64_t *acc)
{
    int32_t f = p->t->frac_bits;
    int64_t col[CW], bq[CW];
    int64_t width = chunk_columns(p, st, chunk, col, bq);
    __m128i fshift = _mm_cvtsi64_si128(f);
    __m512i shift = _mm512_set1_epi64(LNS_POW2_BITS + p->margin);
    __m512i bq0 = _mm512_loadu_si512(bq), bq1 = _mm512_loadu_si512(bq + 8);
    for (int64_t i = r0; i < r1; i++) {
        __m512i amax = _mm512_set1_epi64(st->amax[i]);
        __m512i e0a = _mm512_sub_epi64(_mm512_sra_epi64(_mm512_add_epi64(amax, bq0), fshift), shift);
        __m512i e0b = _mm512_sub_epi64(_mm512_sra_epi64(_mm512_add_epi64(amax, bq1), fshift), shift);
        int8_t os[CW];
        int64_t ox[CW];
        __m128i s0, s1;
        __m512i x0, x1;
        lns_from_fixed_avx512(_mm512_load_si512(acc + (i - r0) * CW), e0a, p->t, &s0, &x0);
        lns_from_fixed_avx512(_mm512_load_si512(acc + (i - r0) * CW + 8), e0b, p->t, &s1, &x1);
        _mm_storel_epi64((__m128i *)os, s0);
        _mm_storel_epi64((__m128i *)(os + 8), s1);
        _mm512_storeu_si512(ox, x0);
        _mm512_storeu_si512(ox + 8, x1);
        for (int64_t w = 0; w < width; w++) {
            p->os[i * p->n + col[w]] = os[w];
            p->ox[i * p->n + col[w]] = ox[w];
        }
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

/* One work item: columns of one chunk, rows [r0, r1), the panels [p0, p1)
 * of one group (rounded here when it is the only one). */
static void fast_item(const mm_problem *p, const fast_state *st, const kernel_set *ks,
                      int64_t chunk, int64_t r0, int64_t r1, int64_t p0, int64_t p1,
                      int64_t *private_area)
{
    const fast_layout *l = &st->l;
    int64_t gamma = l->gamma, kc = l->kc;
    uint64_t *v = align64(private_area + l->variants);
    int one_group = fast_one_group(l);
    uint64_t *acc = one_group ? align64(private_area + l->acc) : st->sums + (chunk * p->m + r0) * CW;
    int8_t *row_first = (int8_t *)(private_area + l->row_first);
    int64_t q0 = chunk * CW;
    int64_t width = p->n - q0 < CW ? p->n - q0 : CW;
    /* cc of a row is the same in every panel: in sorted beta order it turns
     * from 0 to 1 at one column (CW if never). */
    int8_t first_by_rho[1 << FAST_MAX_F];
    for (int64_t rho = 0; rho < gamma; rho++) {
        int64_t w = 0;
        while (w < width && rho + beta_of(st->bmax[st->perm[q0 + w]], gamma) < gamma)
            w++;
        first_by_rho[rho] = (int8_t)(w < width ? w : CW);
    }
    for (int64_t i = r0; i < r1; i++)
        row_first[i - r0] = first_by_rho[st->amax[i] & (gamma - 1)];
    if (one_group)
        memset(acc, 0, (size_t)((r1 - r0) * CW) * sizeof(uint64_t));
    for (int64_t q = 0; q < p1 - p0; q++) {
        ks->build(p, st, chunk, q, v);
        int64_t slot0 = q * p->m + r0;
        ks->rows(st->counts + slot0 * kc, st->offsets + slot0 * kc, st->bias + slot0, row_first,
                 r1 - r0, kc, v, acc);
        if (st->unsafe_rows[q] == 0)
            continue;
        for (int64_t i = r0; i < r1; i++) {
            int64_t slot = q * p->m + i;
            if (st->unsafe_count[slot] > 0)
                fast_unsafe(st->unsafe + slot * kc, st->unsafe_count[slot], v, row_first[i - r0],
                            acc + (i - r0) * CW);
        }
    }
    if (one_group)
        ks->finish(p, st, chunk, r0, r1, acc);
}

/* After the last of several groups: the shared sums of one item, rounded. */
static void fast_finish_item(const mm_problem *p, const fast_state *st, const kernel_set *ks,
                             int64_t chunk, int64_t r0, int64_t r1)
{
    ks->finish(p, st, chunk, r0, r1, st->sums + (chunk * p->m + r0) * CW);
}

/* One 2-D product, all phases, by the calling thread alone. */
static void fast_serial(const mm_problem *p, const kernel_set *ks, int64_t *shared,
                        int64_t *private_area, int level)
{
    fast_state st = fast_setup(p, shared, 1, level);
    column_max(p, 0, p->n, st.bmax);
    fast_sort_columns(p, &st);
    for (int64_t i = 0; i < p->m; i++)
        fast_row_max(p, &st, i);
    for (int64_t p0 = 0; p0 < st.l.panels; p0 += st.l.group) {
        int64_t p1 = p0 + st.l.group < st.l.panels ? p0 + st.l.group : st.l.panels;
        for (int64_t panel = p0; panel < p1; panel++)
            fast_prepare_panel(p, &st, panel, panel - p0);
        for (int64_t i = 0; i < p->m; i++)
            fast_row_entries(p, &st, i, p0, p1);
        for (int64_t q = 0; q < p1 - p0; q++)
            fast_count_unsafe(p, &st, q);
        for (int64_t chunk = 0; chunk < st.chunks; chunk++)
            fast_item(p, &st, ks, chunk, 0, p->m, p0, p1, private_area);
    }
    for (int64_t chunk = 0; !fast_one_group(&st.l) && chunk < st.chunks; chunk++)
        fast_finish_item(p, &st, ks, chunk, 0, p->m);
}

/* Work item `item` of the team: its column chunk and rows [r0, r1); 0 if no rows. */
static int fast_item_place(const mm_problem *p, const fast_state *st, int64_t item,
                           int64_t *chunk, int64_t *r0, int64_t *r1)
{
    *chunk = item / st->row_blocks;
    *r0 = item % st->row_blocks * st->rows_per_block;
    *r1 = *r0 + st->rows_per_block < p->m ? *r0 + st->rows_per_block : p->m;
    return *r0 < *r1;
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
        #pragma omp for schedule(dynamic, 1)
        for (int64_t cb = 0; cb < col_blocks; cb++) {
            int64_t j1 = (cb + 1) * 64 < p->n ? (cb + 1) * 64 : p->n;
            column_max(p, cb * 64, j1, st.bmax);
        }
        #pragma omp single
        fast_sort_columns(p, &st);
        #pragma omp for schedule(dynamic, 64)
        for (int64_t i = 0; i < p->m; i++)
            fast_row_max(p, &st, i);
        for (int64_t p0 = 0; p0 < st.l.panels; p0 += st.l.group) {
            int64_t p1 = p0 + st.l.group < st.l.panels ? p0 + st.l.group : st.l.panels;
            #pragma omp for schedule(dynamic, 1)
            for (int64_t panel = p0; panel < p1; panel++)
                fast_prepare_panel(p, &st, panel, panel - p0);
            #pragma omp for schedule(dynamic, 16)
            for (int64_t i = 0; i < p->m; i++)
                fast_row_entries(p, &st, i, p0, p1);
            #pragma omp for schedule(dynamic, 1)
            for (int64_t q = 0; q < p1 - p0; q++)
                fast_count_unsafe(p, &st, q);
            #pragma omp for schedule(dynamic, 1)
            for (int64_t item = 0; item < items; item++) {
                int64_t chunk, r0, r1;
                if (fast_item_place(p, &st, item, &chunk, &r0, &r1))
                    fast_item(p, &st, ks, chunk, r0, r1, p0, p1, private_base + tid * private_words);
            }
        }
        if (!fast_one_group(&st.l)) {
            #pragma omp for schedule(dynamic, 1)
            for (int64_t item = 0; item < items; item++) {
                int64_t chunk, r0, r1;
                if (fast_item_place(p, &st, item, &chunk, &r0, &r1))
                    fast_finish_item(p, &st, ks, chunk, r0, r1);
            }
        }
    }
}

/* ---- logadd with AVX-512 ------------------------------------------------ */

/* Exponents of real values stay within +-2^27: inputs within +-LOGADD_INPUT_MAX
 * make products within +-2^26; a sum rises at most gamma per step (K gamma
 * <= LOGADD_DRIFT_MAX) and falls at most -DB[1] below the product just added.
 * An exact zero is an exponent near ZERO_LEVEL, so far below (more than
 * nmax) that ⊕ with a real value returns the real one, as the contract's
 * zero rule does; cancellation adds CANCEL, sending the sum to the zero
 * level; ZERO_FLOOR keeps repeated cancellations inside int32. */
#define LOGADD_INPUT_MAX ((int64_t)1 << 25)
#define LOGADD_DRIFT_MAX ((int64_t)1 << 26)
#define ZERO_LEVEL (-(1 << 29))
#define ZERO_B (ZERO_LEVEL - (1 << 25))
#define CANCEL (-(1 << 29))
#define ZERO_FLOOR (ZERO_LEVEL - (1 << 27))
#define ZERO_BELOW (-(1 << 28))

typedef struct {
    logadd_layout l;
    int32_t *xb, *gauss;
    int8_t *gauss8;
    uint16_t *negb;
} logadd_state;

static logadd_state logadd_setup(const mm_problem *p, int64_t *shared)
{
    logadd_state st;
    st.l = logadd_plan(p->k, p->n, p->t);
    st.xb = (int32_t *)(shared + st.l.xb);
    st.negb = (uint16_t *)(shared + st.l.negb);
    st.gauss = (int32_t *)(shared + st.l.gauss);
    st.gauss8 = (int8_t *)(shared + st.l.gauss8);
    return st;
}

/* Where entry kk of column group q0 starts: group-major, so that a group's
 * k x 64 slice is one stretch of memory, read front to back.  (Row-major,
 * at n = 1024 each step of kk jumped 4 KiB, a page: past the stride the
 * hardware prefetchers follow.) */
static inline int64_t logadd_cell(const mm_problem *p, int64_t kk, int64_t q0)
{
    return (q0 / LOGADD_GROUP * p->k + kk) * LOGADD_GROUP;
}

/* Row kk of B as int32 exponents and sign masks; returns max |x| of its nonzeros. */
static int64_t logadd_encode_row(const mm_problem *p, const logadd_state *st, int64_t kk)
{
    int64_t npad = st->l.npad, largest = 0;
    for (int64_t q = 0; q < npad; q += 16) {
        int32_t *xb = st->xb + logadd_cell(p, kk, q - q % LOGADD_GROUP) + q % LOGADD_GROUP;
        uint16_t mask = 0;
        for (int64_t w = 0; w < 16; w++) {
            int64_t j = q + w;
            int8_t s = j < p->n ? p->sb[kk * p->n + j] : 0;
            int64_t x = s != 0 ? p->xb[kk * p->n + j] : 0;
            int64_t mag = x < 0 ? -x : x;
            largest = mag > largest ? mag : largest;
            xb[w] = s != 0 && mag <= LOGADD_INPUT_MAX ? (int32_t)x : ZERO_B;
            mask |= (uint16_t)((s < 0) << w);
        }
        st->negb[(logadd_cell(p, kk, q - q % LOGADD_GROUP) + q % LOGADD_GROUP) / 16] = mask;
    }
    return largest;
}

static int64_t logadd_row_largest(const mm_problem *p, int64_t i)
{
    int64_t largest = 0;
    for (int64_t kk = 0; kk < p->k; kk++) {
        int64_t x = p->xa[i * p->k + kk];
        int64_t mag = p->sa[i * p->k + kk] != 0 ? (x < 0 ? -x : x) : 0;
        largest = mag > largest ? mag : largest;
    }
    return largest;
}

/* SB then DB, each padded with zeros to nmax + 1 entries; DB[0] is CANCEL.
 * When the corrections fit in bytes and both halves in 128 entries, also
 * as bytes (DB[0] = 0 there: cancellation is applied apart); returns whether. */
static int logadd_gauss(const lns_tables *t, const logadd_state *st)
{
    int64_t nmax = st->l.nmax;
    int bytes = 2 * (nmax + 1) <= 128;
    for (int64_t d = 0; d <= nmax; d++) {
        int32_t sb = (int32_t)lns_sb(t, (uint64_t)d);
        int32_t db = d == 0 ? 0 : (int32_t)lns_db(t, (uint64_t)d);
        st->gauss[d] = sb;
        st->gauss[nmax + 1 + d] = d == 0 ? CANCEL : db;
        bytes = bytes && sb >= -128 && sb <= 127 && db >= -128 && db <= 127;
    }
    for (int64_t e = 0; bytes && e < 128; e++)
        st->gauss8[e] = e < 2 * (nmax + 1) && e != nmax + 1 ? (int8_t)st->gauss[e] : 0;
    return bytes;
}

static int logadd_fits(const mm_problem *p, int64_t largest)
{
    int64_t gamma = (int64_t)1 << p->t->frac_bits;
    int64_t fall = -lns_db(p->t, 1);
    return largest <= LOGADD_INPUT_MAX && p->k * gamma <= LOGADD_DRIFT_MAX
           && fall <= LOGADD_DRIFT_MAX;
}

#ifdef LNS_X86
/* The correction for 16 lanes, from the int32 table by a gather. */
LNS_TARGET_AVX512 static inline __attribute__((always_inline))
__m512i gauss_gather(__m512i idx, __m512i d, __mmask16 differ, const int32_t *gauss,
                     __m512i lo, __m512i hi)
{
    (void)d, (void)differ, (void)lo, (void)hi;
    return _mm512_i32gather_epi32(idx, gauss, 4);
}

/* The same from the byte table held in two registers (lo, hi): a byte
 * permute picks each lane's low byte, shifts sign-extend it; the byte table
 * has DB[0] = 0, so cancellation (opposite signs, d = 0) adds CANCEL here. */
LNS_TARGET_AVX512_VBMI static inline __attribute__((always_inline))
__m512i gauss_permute(__m512i idx, __m512i d, __mmask16 differ, const int32_t *gauss,
                      __m512i lo, __m512i hi)
{
    (void)gauss;
    __m512i bytes = _mm512_permutex2var_epi8(lo, idx, hi);
    __m512i corr = _mm512_srai_epi32(_mm512_slli_epi32(bytes, 24), 24);
    __mmask16 cancel = _mm512_mask_testn_epi32_mask(differ, d, d);
    return _mm512_mask_add_epi32(corr, cancel, corr, _mm512_set1_epi32(CANCEL));
}

/* One ⊕ on 16 lanes: the sum (x, neg) with the product (x2, neg2). */
#define LOGADD_STEP(lookup, sum, sum_neg, product, product_neg)                           \
    do {                                                                                  \
        __m512i step_p = (product);                                                       \
        __mmask16 step_pneg = (product_neg);                                              \
        __mmask16 step_larger = _mm512_cmpge_epi32_mask(sum, step_p);                     \
        __m512i step_d = _mm512_abs_epi32(_mm512_sub_epi32(sum, step_p));                 \
        __m512i step_max = _mm512_max_epi32(sum, step_p);                                 \
        __mmask16 step_differ = (__mmask16)(sum_neg ^ step_pneg);                         \
        __m512i step_idx = _mm512_min_epu32(step_d, nmax);                                \
        step_idx = _mm512_mask_add_epi32(step_idx, step_differ, step_idx, db_start);      \
        __m512i step_corr = lookup(step_idx, step_d, step_differ, gauss, lo, hi);         \
        sum = _mm512_max_epi32(_mm512_add_epi32(step_max, step_corr), floor);             \
        sum_neg = (__mmask16)((step_larger & sum_neg) | (~step_larger & step_pneg));      \
    } while (0)

/* Row i, columns [q0, q0 + 64): four independent chains of 16 lanes, so
 * that one chain's table lookup overlaps the others' arithmetic.  Written
 * once as a macro for the two lookups. */
#define LOGADD_GROUP_FN(name, target, lookup)                                                 \
    target static void name(const mm_problem *p, const logadd_state *st, int64_t i, int64_t q0) \
    {                                                                                         \
        const int8_t *sa = p->sa + i * p->k;                                                  \
        const int32_t *xa = p->xa + i * p->k;                                                 \
        const int32_t *gauss = st->gauss;                                                     \
        __m512i lo = _mm512_loadu_si512(st->gauss8), hi = _mm512_loadu_si512(st->gauss8 + 64); \
        __m512i nmax = _mm512_set1_epi32((int32_t)st->l.nmax);                                \
        __m512i db_start = _mm512_set1_epi32((int32_t)st->l.nmax + 1);                        \
        __m512i floor = _mm512_set1_epi32(ZERO_FLOOR);                                        \
        __m512i s0 = _mm512_set1_epi32(ZERO_LEVEL), s1 = s0, s2 = s0, s3 = s0;                \
        __mmask16 n0 = 0, n1 = 0, n2 = 0, n3 = 0;                                             \
        for (int64_t kk = 0; kk < p->k; kk++) {                                               \
            if (sa[kk] == 0) /* a zero product leaves every sum as it is */                   \
                continue;                                                                     \
            __m512i xav = _mm512_set1_epi32((int32_t)xa[kk]);                                 \
            __mmask16 flip = sa[kk] < 0 ? 0xFFFF : 0;                                         \
            const int32_t *xb = st->xb + logadd_cell(p, kk, q0);                              \
            const uint16_t *negb = st->negb + logadd_cell(p, kk, q0) / 16;                    \
            LOGADD_STEP(lookup, s0, n0, _mm512_add_epi32(xav, _mm512_loadu_si512(xb)),        \
                        negb[0] ^ flip);                                                      \
            LOGADD_STEP(lookup, s1, n1, _mm512_add_epi32(xav, _mm512_loadu_si512(xb + 16)),   \
                        negb[1] ^ flip);                                                      \
            LOGADD_STEP(lookup, s2, n2, _mm512_add_epi32(xav, _mm512_loadu_si512(xb + 32)),   \
                        negb[2] ^ flip);                                                      \
            LOGADD_STEP(lookup, s3, n3, _mm512_add_epi32(xav, _mm512_loadu_si512(xb + 48)),   \
                        negb[3] ^ flip);                                                      \
        }                                                                                     \
        logadd_store(p, i, q0, s0, s1, s2, s3, n0, n1, n2, n3);                               \
    }

/* The four chains' sums to (sign, exponent): the zero level is exact zero. */
LNS_TARGET_AVX512
static void logadd_store(const mm_problem *p, int64_t i, int64_t q0, __m512i x0, __m512i x1,
                         __m512i x2, __m512i x3, __mmask16 n0, __mmask16 n1, __mmask16 n2,
                         __mmask16 n3)
{
    __m512i x[4] = {x0, x1, x2, x3};
    __mmask16 neg[4] = {n0, n1, n2, n3};
    __m512i below = _mm512_set1_epi32(ZERO_BELOW);
    for (int q = 0; q < 4; q++) {
        __mmask16 real = _mm512_cmpge_epi32_mask(x[q], below);
        __m512i sign = _mm512_mask_blend_epi32(neg[q], _mm512_set1_epi32(1), _mm512_set1_epi32(-1));
        sign = _mm512_maskz_mov_epi32(real, sign);
        __m512i xs = _mm512_maskz_mov_epi32(real, x[q]);
        int8_t os[16];
        int64_t ox[16];
        _mm_storeu_si128((__m128i *)os, _mm512_cvtepi32_epi8(sign));
        _mm512_storeu_si512(ox, _mm512_cvtepi32_epi64(_mm512_castsi512_si256(xs)));
        _mm512_storeu_si512(ox + 8, _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(xs, 1)));
        int64_t j0 = q0 + 16 * q;
        int64_t width = p->n - j0 < 16 ? p->n - j0 : 16;
        for (int64_t w = 0; w < width; w++) {
            p->os[i * p->n + j0 + w] = os[w];
            p->ox[i * p->n + j0 + w] = ox[w];
        }
    }
}

LOGADD_GROUP_FN(logadd_group_gather, LNS_TARGET_AVX512, gauss_gather)
LOGADD_GROUP_FN(logadd_group_permute, LNS_TARGET_AVX512_VBMI, gauss_permute)

typedef void (*logadd_group_fn)(const mm_problem *, const logadd_state *, int64_t, int64_t);

static logadd_group_fn pick_logadd_group(int bytes)
{
    return bytes && __builtin_cpu_supports("avx512vbmi") ? logadd_group_permute
                                                         : logadd_group_gather;
}
#endif

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

#ifdef LNS_X86
/* Encode B's rows for the int32 lanes and find the largest exponent of A and
 * B; 1 when they fit those lanes.  threads == 1 runs on the calling thread. */
static int logadd_prepare_avx512(const mm_problem *p, logadd_state *st, int32_t threads)
{
    int64_t largest = 0;
    #pragma omp parallel for if(threads > 1) schedule(dynamic, 16) reduction(max : largest) num_threads(threads)
    for (int64_t kk = 0; kk < p->k; kk++) {
        int64_t row = logadd_encode_row(p, st, kk);
        largest = row > largest ? row : largest;
    }
    #pragma omp parallel for if(threads > 1) schedule(dynamic, 16) reduction(max : largest) num_threads(threads)
    for (int64_t i = 0; i < p->m; i++) {
        int64_t row = logadd_row_largest(p, i);
        largest = row > largest ? row : largest;
    }
    return logadd_fits(p, largest);
}

/* logadd with AVX-512 when the exponents fit its int32 lanes, by the calling
 * thread alone; returns 0 (having done nothing visible) when they do not. */
static int logadd_serial_avx512(const mm_problem *p, int64_t *shared)
{
    logadd_state st = logadd_setup(p, shared);
    if (!logadd_prepare_avx512(p, &st, 1))
        return 0;
    logadd_group_fn group = pick_logadd_group(logadd_gauss(p->t, &st));
    /* column group outside, rows inside: see logadd_parallel_avx512 */
    for (int64_t q0 = 0; q0 < p->n; q0 += LOGADD_GROUP)
        for (int64_t i = 0; i < p->m; i++)
            group(p, &st, i, q0);
    return 1;
}

static int logadd_parallel_avx512(const mm_problem *p, int64_t *shared, int32_t threads)
{
    logadd_state st = logadd_setup(p, shared);
    if (!logadd_prepare_avx512(p, &st, threads))
        return 0;
    logadd_group_fn group = pick_logadd_group(logadd_gauss(p->t, &st));
    int64_t groups = st.l.npad / LOGADD_GROUP;
    /* Items in column-group order: consecutive items read the same k x 64
     * slice of B (256 KiB at k = 1024), which stays in cache, where row
     * order streamed all of B again for every row. */
    #pragma omp parallel for schedule(dynamic, 2) num_threads(threads)
    for (int64_t item = 0; item < p->m * groups; item++)
        group(p, &st, item % p->m, (item / p->m) * LOGADD_GROUP);
    return 1;
}
#endif

/* The AVX-512 logadd path when the level and the exponents allow it; 0 when
 * the caller must run the portable one. */
static int logadd_int32(const mm_problem *p, int64_t *shared, int32_t threads, int serial,
                        int level)
{
#ifdef LNS_X86
    if (level == LNS_SIMD_AVX512)
        return serial ? logadd_serial_avx512(p, shared) : logadd_parallel_avx512(p, shared, threads);
#endif
    (void)p, (void)shared, (void)threads, (void)serial, (void)level;
    return 0;
}

static void rowwise_parallel(const mm_problem *p, const kernel_set *ks, int strat,
                             int64_t *shared, int32_t threads)
{
    int64_t chunks = ceil_div(p->n, CW);
    int64_t col_blocks = ceil_div(p->n, 64);
    #pragma omp parallel num_threads(threads)
    {
        if (strat == STRATEGY_GENERIC) {
            #pragma omp for schedule(dynamic, 1)
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
               const int8_t *sa, const int32_t *xa, const int64_t *a_offsets,
               const int8_t *sb, const int32_t *xb, const int64_t *b_offsets,
               int32_t mode, int32_t margin, const lns_tables *t,
               int64_t *scratch, int64_t scratch_words, int32_t threads,
               int8_t *out_s, int64_t *out_x)
{
    if (threads < 1)
        threads = 1;
    if (scratch_words < lns_matmul_scratch_words(batch, m, k, n, mode, t, threads))
        return -1;
    /* A small product is done before a second thread would have started
     * (and on a busy machine each barrier can cost a scheduler time slice);
     * fewer threads only use less of the scratch. */
    if (batch * m * k * n < SERIAL_BELOW)
        threads = 1;
    if (m == 0 || n == 0)
        return 0;
    if (k == 0) {  /* empty sums are exactly zero */
        memset(out_s, 0, (size_t)(batch * m * n));
        memset(out_x, 0, (size_t)(batch * m * n) * sizeof(int64_t));
        return 0;
    }
    int strat = strategy(mode, t->frac_bits);
    if (strat == STRATEGY_FAST && !fast_fits(k, t->frac_bits, margin))
        strat = STRATEGY_GENERIC;
    int level = lns_simd_current();
    kernel_set ks = kernels_for(level);
    int64_t shared, private_words;
    scratch_split(strat, m, k, n, t, &shared, &private_words);
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
            else if (!(strat == STRATEGY_LOGADD
                       && logadd_int32(&p, scratch + tid * shared, 1, 1, level)))
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
        else if (!(strat == STRATEGY_LOGADD && logadd_int32(&p, scratch, threads, 0, level)))
            rowwise_parallel(&p, &ks, strat, scratch, threads);
    }
    return 0;
}
