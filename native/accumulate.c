/* Reductions of LNS products: the C twin of lnsnet/kernels/accumulate.py.
 *
 * lns_sum reduces rows of a (rows, k) array; lns_matmul multiplies (batches
 * of) (m, k) by (k, n).  Linear and mitchell modes must produce exactly the
 * reference's int64 accumulator, then round it with lns_from_fixed_one;
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

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
#define LNS_X86 1
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

/* ---- threads and SIMD level -------------------------------------------- */

int lns_num_threads(void)
{
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

enum { SIMD_PORTABLE = 0, SIMD_AVX2 = 1, SIMD_AVX512 = 2 };
static const char *const simd_names[] = {"portable", "avx2", "avx512"};
static int simd_cap = SIMD_AVX512;

static int simd_supported(void)
{
#ifdef LNS_X86
    __builtin_cpu_init();
    /* the AVX-512 functions are compiled for all four subsets */
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")
        && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
        return SIMD_AVX512;
    if (__builtin_cpu_supports("avx2"))
        return SIMD_AVX2;
#endif
    return SIMD_PORTABLE;
}

static int simd_level(void)
{
    int have = simd_supported();
    return have < simd_cap ? have : simd_cap;
}

int lns_simd_limit(int32_t level)
{
    simd_cap = level < SIMD_PORTABLE ? SIMD_PORTABLE : (level > SIMD_AVX512 ? SIMD_AVX512 : level);
    return simd_level();
}

const char *lns_simd_level(void)
{
    return simd_names[simd_level()];
}

/* ---- sums along the last axis ------------------------------------------ */

static int64_t clip_shift(int64_t v)
{
    return v < 0 ? 0 : (v > 63 ? 63 : v);
}

static void sum_linear_row(int64_t k, const int8_t *s, const int64_t *x, const int64_t *table,
                           int32_t margin, const lns_tables *t, int8_t *os, int64_t *ox)
{
    int32_t f = t->frac_bits;
    int64_t mask = ((int64_t)1 << f) - 1;
    int64_t base = LNS_LOW;
    for (int64_t i = 0; i < k; i++)
        if (s[i] != 0 && x[i] > base)
            base = x[i];
    int64_t qb = base >> f;
    uint64_t acc = 0;
    for (int64_t i = 0; i < k; i++) {
        int64_t term = (table[x[i] & mask] << margin) >> clip_shift(qb - (x[i] >> f));
        acc += (uint64_t)((int64_t)s[i] * term);
    }
    lns_from_fixed_one((int64_t)acc, qb - LNS_POW2_BITS - margin, t, os, ox);
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
 * function sizes the scratch (lns_matmul_scratch_words) and carves it. */
typedef struct {
    int64_t kc, panels, gamma;
    int64_t amax, bmax, perm, hmax, entries, unsafe, unsafe_count, bias;
    int64_t shared_words;
    int64_t variants, variant_words, acc, private_words;
} fast_layout;

static fast_layout fast_plan(int64_t m, int64_t k, int64_t n, int32_t f)
{
    fast_layout l;
    l.gamma = (int64_t)1 << f;
    l.kc = FAST_KC_GAMMA >> f;
    l.panels = ceil_div(k, l.kc);
    int64_t slots = m * l.panels * l.kc;
    l.amax = 0;
    l.bmax = l.amax + m;
    l.perm = l.bmax + n;
    l.hmax = l.perm + n;
    l.entries = l.hmax + l.panels;
    l.unsafe = l.entries + slots;
    l.unsafe_count = l.unsafe + slots;
    l.bias = l.unsafe_count + m * l.panels;
    l.shared_words = l.bias + 2 * m * l.panels;
    /* 2*gamma variant rows per k of the panel, one zero row, and 8 words
     * of slack to align the block to 64 bytes. */
    l.variant_words = (2 * l.gamma * l.kc + 1) * CW;
    l.variants = 0;
    l.acc = l.variants + l.variant_words + 8;
    l.private_words = l.acc + m * CW;
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
        *shared = n;
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

/* Column maxima of B's nonzero entries over columns [j0, j1) (LNS_LOW if none). */
static void column_max(const mm_problem *p, int64_t j0, int64_t j1, int64_t *bmax)
{
    for (int64_t j = j0; j < j1; j++)
        bmax[j] = LNS_LOW;
    for (int64_t kk = 0; kk < p->k; kk++) {
        const int8_t *s = p->sb + kk * p->n;
        const int64_t *x = p->xb + kk * p->n;
        for (int64_t j = j0; j < j1; j++) {
            int64_t v = s[j] != 0 && x[j] > bmax[j] ? x[j] : bmax[j];
            bmax[j] = v;
        }
    }
}

static int64_t row_max(const int8_t *s, const int64_t *x, int64_t k)
{
    int64_t base = LNS_LOW;
    for (int64_t i = 0; i < k; i++)
        if (s[i] != 0 && x[i] > base)
            base = x[i];
    return base;
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
    int64_t qb[CW];
    uint64_t acc[CW];
    for (int64_t c = 0; c < CW; c++) {
        qb[c] = c < width ? (amax + bmax[j0 + c]) >> f : 0;
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
    for (int64_t c = 0; c < width; c++) {
        int64_t e0 = ((amax + bmax[j0 + c]) >> f) - LNS_POW2_BITS - margin;
        lns_from_fixed_one((int64_t)acc[c], e0, p->t, &p->os[i * p->n + j0 + c],
                           &p->ox[i * p->n + j0 + c]);
    }
}

static void generic_chunk_portable(const mm_problem *p, int64_t i, int64_t j0, int64_t w,
                                   const int64_t *bmax)
{
    generic_chunk_body(p, i, j0, w, bmax);
}

#ifdef LNS_X86
__attribute__((target("avx2")))
static void generic_chunk_avx2(const mm_problem *p, int64_t i, int64_t j0, int64_t w,
                               const int64_t *bmax)
{
    generic_chunk_body(p, i, j0, w, bmax);
}

__attribute__((target("avx512f,avx512bw,avx512dq,avx512vl")))
static void generic_chunk_avx512(const mm_problem *p, int64_t i, int64_t j0, int64_t w,
                                 const int64_t *bmax)
{
    generic_chunk_body(p, i, j0, w, bmax);
}
#endif

typedef void (*generic_chunk_fn)(const mm_problem *, int64_t, int64_t, int64_t, const int64_t *);

static generic_chunk_fn pick_generic(int level)
{
#ifdef LNS_X86
    if (level == SIMD_AVX512)
        return generic_chunk_avx512;
    if (level == SIMD_AVX2)
        return generic_chunk_avx2;
#endif
    (void)level;
    return generic_chunk_portable;
}

/* ---- logadd: ⊕ in index order, vectorized over columns ----------------- */

static inline __attribute__((always_inline))
void logadd_chunk_body(const mm_problem *p, int64_t i, int64_t j0, int64_t width)
{
    const lns_tables *t = p->t;
    int64_t n_sb = t->n_sb, n_db = t->n_db;
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
        /* lns_add_one, branch-free so that it vectorizes. */
        for (int64_t c = 0; c < width; c++) {
            int64_t s1 = as[c], x1 = ax[c];
            int64_t s2 = (int8_t)(sa * sb[c]);
            int64_t x2 = xa + xb[c];
            int64_t a_larger = x1 >= x2;
            uint64_t d = a_larger ? (uint64_t)x1 - (uint64_t)x2 : (uint64_t)x2 - (uint64_t)x1;
            int64_t same = s1 == s2;
            int64_t in_sb = d < (uint64_t)n_sb, in_db = d < (uint64_t)n_db;
            int64_t c_sb = t->sb[in_sb ? d : 0];
            int64_t c_db = t->db[in_db ? d : 0];
            int64_t corr = same ? (in_sb ? c_sb : 0) : (in_db ? c_db : 0);
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

static void logadd_chunk_portable(const mm_problem *p, int64_t i, int64_t j0, int64_t w)
{
    logadd_chunk_body(p, i, j0, w);
}

#ifdef LNS_X86
__attribute__((target("avx2")))
static void logadd_chunk_avx2(const mm_problem *p, int64_t i, int64_t j0, int64_t w)
{
    logadd_chunk_body(p, i, j0, w);
}

__attribute__((target("avx512f,avx512bw,avx512dq,avx512vl")))
static void logadd_chunk_avx512(const mm_problem *p, int64_t i, int64_t j0, int64_t w)
{
    logadd_chunk_body(p, i, j0, w);
}
#endif

typedef void (*logadd_chunk_fn)(const mm_problem *, int64_t, int64_t, int64_t);

static logadd_chunk_fn pick_logadd(int level)
{
#ifdef LNS_X86
    if (level == SIMD_AVX512)
        return logadd_chunk_avx512;
    if (level == SIMD_AVX2)
        return logadd_chunk_avx2;
#endif
    (void)level;
    return logadd_chunk_portable;
}

/* ---- fast linear: variant rows ------------------------------------------ */

typedef struct {
    fast_layout l;
    int64_t *shared;
    int64_t *amax, *bmax, *perm, *hmax, *entries, *unsafe, *unsafe_count;
    uint64_t *bias;
    int64_t chunks, row_blocks, rows_per_block;
    int level;
} fast_state;

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

/* Phase 3: hmax of each k panel, the largest (e + ub) >> f of a nonzero b. */
static void fast_panel_hmax(const mm_problem *p, fast_state *st, int64_t panel)
{
    int64_t gamma = st->l.gamma, f = p->t->frac_bits;
    int64_t ubmax = 0;
    int64_t k1 = (panel + 1) * st->l.kc < p->k ? (panel + 1) * st->l.kc : p->k;
    for (int64_t kk = panel * st->l.kc; kk < k1; kk++) {
        const int8_t *s = p->sb + kk * p->n;
        const int64_t *x = p->xb + kk * p->n;
        for (int64_t j = 0; j < p->n; j++) {
            int64_t ub = gamma * ((st->bmax[j] >> f) + 1) - x[j];
            ubmax = s[j] != 0 && ub > ubmax ? ub : ubmax;
        }
    }
    st->hmax[panel] = (gamma - 1 + ubmax) >> f;
}

/* Phase 4: row i's entries, per panel kc of them: (variant row offset, g)
 * packed as offset | g << 32; a zero or unsafe product points at the zero row. */
static void fast_row_entries(const mm_problem *p, fast_state *st, int64_t i)
{
    const fast_layout *l = &st->l;
    int64_t gamma = l->gamma, kc = l->kc, f = p->t->frac_bits;
    const int8_t *sa = p->sa + i * p->k;
    const int64_t *xa = p->xa + i * p->k;
    int64_t amax = row_max(sa, xa, p->k);
    st->amax[i] = amax;
    int64_t top = gamma * ((amax >> f) + 1) - 1;
    int64_t zero_entry = 2 * gamma * kc * CW;
    for (int64_t panel = 0; panel < l->panels; panel++) {
        int64_t slot = panel * p->m + i;  /* panel-major: a panel's rows are adjacent */
        int64_t *ent = st->entries + slot * kc;
        int64_t *uns = st->unsafe + slot * kc;
        int64_t n_unsafe = 0;
        int64_t safe_g = (int64_t)p->margin - st->hmax[panel];
        uint64_t bias0 = 0, bias1 = 0;
        for (int64_t c = 0; c < kc; c++) {
            int64_t kk = panel * kc + c;
            int64_t entry = zero_entry;
            if (kk < p->k && sa[kk] != 0) {
                int64_t ua = top - xa[kk];
                int64_t g = ua >> f;
                int64_t sigma = sa[kk] < 0;
                int64_t off = ((sigma * gamma + (ua & (gamma - 1))) * kc + c) * CW;
                if (g <= safe_g)
                    entry = off | (g << 32);
                else if (g < 63)  /* beyond that every term is 0 */
                    uns[n_unsafe++] = off | (g << 32);
            }
            ent[c] = entry;
            int64_t g = entry >> 32;
            bias0 += (uint64_t)1 << (63 - g);
            bias1 += (uint64_t)1 << (62 - g);
        }
        st->unsafe_count[slot] = n_unsafe;
        st->bias[2 * slot] = bias0;
        st->bias[2 * slot + 1] = bias1;
    }
}

/* The variant rows of one (column chunk, k panel), offset binary.  Columns
 * past n and zero b give 0; the zero row follows the 2*gamma*kc rows. */
static inline __attribute__((always_inline))
void fast_build_body(const mm_problem *p, const fast_state *st, int64_t chunk, int64_t panel,
                     uint64_t *v)
{
    const fast_layout *l = &st->l;
    int64_t gamma = l->gamma, kc = l->kc, f = p->t->frac_bits;
    int64_t tl1[1 << FAST_MAX_F];
    for (int64_t r = 0; r < gamma; r++)
        tl1[gamma - 1 - r] = p->table[r] << (p->margin + 1);  /* indexed by (e+ub) mod gamma */
    int64_t q0 = chunk * CW;
    for (int64_t c = 0; c < kc; c++) {
        int64_t kk = panel * kc + c;
        int64_t ub[CW], sgn[CW];
        for (int64_t w = 0; w < CW; w++) {
            int64_t q = q0 + w;
            ub[w] = 0;
            sgn[w] = 0;
            if (kk < p->k && q < p->n) {
                int64_t j = st->perm[q];
                int8_t s = p->sb[kk * p->n + j];
                sgn[w] = (s > 0) - (s < 0);
                ub[w] = gamma * ((st->bmax[j] >> f) + 1) - p->xb[kk * p->n + j];
            }
        }
        for (int64_t e = 0; e < gamma; e++) {
            uint64_t *pos = v + (e * kc + c) * CW;
            uint64_t *neg = v + ((gamma + e) * kc + c) * CW;
            for (int64_t w = 0; w < CW; w++) {
                int64_t u = e + ub[w];
                int64_t h = u >> f;
                int64_t wv = h < 63 ? tl1[u & (gamma - 1)] >> (h < 63 ? h : 0) : 0;
                int64_t val = sgn[w] * wv;
                pos[w] = (uint64_t)val ^ OFFSET_BINARY;
                neg[w] = (uint64_t)(-val) ^ OFFSET_BINARY;
            }
        }
    }
    uint64_t *zero = v + 2 * gamma * kc * CW;
    for (int64_t w = 0; w < CW; w++)
        zero[w] = OFFSET_BINARY;
}

/* Safe entries with the same cc on every column: one shift count per entry;
 * bias is the sum of the offset-binary constants 2^(63 - count). */
static inline __attribute__((always_inline))
void fast_uniform_body(const int64_t *ent, int64_t kc, const uint64_t *v, int64_t cc,
                       uint64_t bias, uint64_t *acc)
{
    uint64_t a[CW];
    for (int64_t w = 0; w < CW; w++)
        a[w] = acc[w] - bias;
    for (int64_t c = 0; c < kc; c++) {
        const uint64_t *src = v + (uint32_t)ent[c];
        int64_t count = (ent[c] >> 32) + cc;
        for (int64_t w = 0; w < CW; w++)
            a[w] += src[w] >> count;
    }
    for (int64_t w = 0; w < CW; w++)
        acc[w] = a[w];
}

/* Safe entries where cc turns from 0 to 1 at column first_cc1 of the chunk;
 * bias[cc] as in fast_uniform_body. */
static void fast_mixed(const int64_t *ent, int64_t kc, const uint64_t *v, int64_t first_cc1,
                       const uint64_t *bias, uint64_t *acc)
{
    int64_t cc[CW];
    for (int64_t w = 0; w < CW; w++) {
        cc[w] = w >= first_cc1;
        acc[w] -= bias[cc[w]];
    }
    for (int64_t c = 0; c < kc; c++) {
        const uint64_t *src = v + (uint32_t)ent[c];
        int64_t g = ent[c] >> 32;
        for (int64_t w = 0; w < CW; w++)
            acc[w] += src[w] >> (g + cc[w]);
    }
}

/* Unsafe entries: truncate each magnitude, as the reference does. */
static void fast_unsafe(const int64_t *uns, int64_t count, const uint64_t *v, int64_t first_cc1,
                        uint64_t *acc)
{
    for (int64_t c = 0; c < count; c++) {
        const uint64_t *src = v + (uint32_t)uns[c];
        int64_t g = uns[c] >> 32;
        for (int64_t w = 0; w < CW; w++) {
            int64_t val = (int64_t)(src[w] ^ OFFSET_BINARY);
            int64_t shift = g + (w >= first_cc1);
            int64_t t = val >= 0 ? val >> shift : -((-val) >> shift);
            acc[w] += (uint64_t)t;
        }
    }
}

static void fast_build_portable(const mm_problem *p, const fast_state *st, int64_t chunk,
                                int64_t panel, uint64_t *v)
{
    fast_build_body(p, st, chunk, panel, v);
}

static void fast_uniform_portable(const int64_t *ent, int64_t kc, const uint64_t *v, int64_t cc,
                                  uint64_t bias, uint64_t *acc)
{
    fast_uniform_body(ent, kc, v, cc, bias, acc);
}

#ifdef LNS_X86
__attribute__((target("avx2")))
static void fast_build_avx2(const mm_problem *p, const fast_state *st, int64_t chunk,
                            int64_t panel, uint64_t *v)
{
    fast_build_body(p, st, chunk, panel, v);
}

__attribute__((target("avx2")))
static void fast_uniform_avx2(const int64_t *ent, int64_t kc, const uint64_t *v, int64_t cc,
                              uint64_t bias, uint64_t *acc)
{
    __m256i b = _mm256_set1_epi64x((int64_t)bias);
    __m256i a0 = _mm256_sub_epi64(_mm256_loadu_si256((const __m256i *)acc), b);
    __m256i a1 = _mm256_sub_epi64(_mm256_loadu_si256((const __m256i *)(acc + 4)), b);
    __m256i a2 = _mm256_sub_epi64(_mm256_loadu_si256((const __m256i *)(acc + 8)), b);
    __m256i a3 = _mm256_sub_epi64(_mm256_loadu_si256((const __m256i *)(acc + 12)), b);
    for (int64_t c = 0; c < kc; c++) {
        const uint64_t *src = v + (uint32_t)ent[c];
        __m256i count = _mm256_set1_epi64x((ent[c] >> 32) + cc);
        a0 = _mm256_add_epi64(a0, _mm256_srlv_epi64(_mm256_load_si256((const __m256i *)src), count));
        a1 = _mm256_add_epi64(a1, _mm256_srlv_epi64(_mm256_load_si256((const __m256i *)(src + 4)), count));
        a2 = _mm256_add_epi64(a2, _mm256_srlv_epi64(_mm256_load_si256((const __m256i *)(src + 8)), count));
        a3 = _mm256_add_epi64(a3, _mm256_srlv_epi64(_mm256_load_si256((const __m256i *)(src + 12)), count));
    }
    _mm256_storeu_si256((__m256i *)acc, a0);
    _mm256_storeu_si256((__m256i *)(acc + 4), a1);
    _mm256_storeu_si256((__m256i *)(acc + 8), a2);
    _mm256_storeu_si256((__m256i *)(acc + 12), a3);
}

__attribute__((target("avx512f,avx512bw,avx512dq,avx512vl")))
static void fast_build_avx512(const mm_problem *p, const fast_state *st, int64_t chunk,
                              int64_t panel, uint64_t *v)
{
    fast_build_body(p, st, chunk, panel, v);
}

__attribute__((target("avx512f")))
static void fast_uniform_avx512(const int64_t *ent, int64_t kc, const uint64_t *v, int64_t cc,
                                uint64_t bias, uint64_t *acc)
{
    __m512i b = _mm512_set1_epi64((int64_t)bias);
    __m512i a0 = _mm512_sub_epi64(_mm512_loadu_si512(acc), b);
    __m512i a1 = _mm512_sub_epi64(_mm512_loadu_si512(acc + 8), b);
    for (int64_t c = 0; c < kc; c++) {
        const uint64_t *src = v + (uint32_t)ent[c];
        __m512i count = _mm512_set1_epi64((ent[c] >> 32) + cc);
        a0 = _mm512_add_epi64(a0, _mm512_srlv_epi64(_mm512_load_si512(src), count));
        a1 = _mm512_add_epi64(a1, _mm512_srlv_epi64(_mm512_load_si512(src + 8), count));
    }
    _mm512_storeu_si512(acc, a0);
    _mm512_storeu_si512(acc + 8, a1);
}
#endif

typedef void (*fast_build_fn)(const mm_problem *, const fast_state *, int64_t, int64_t, uint64_t *);
typedef void (*fast_uniform_fn)(const int64_t *, int64_t, const uint64_t *, int64_t, uint64_t,
                                uint64_t *);

/* One work item: columns of one chunk, rows [r0, r1), all panels. */
static void fast_item(const mm_problem *p, const fast_state *st, int64_t chunk, int64_t r0,
                      int64_t r1, int64_t *private_area)
{
    const fast_layout *l = &st->l;
    int64_t gamma = l->gamma, kc = l->kc, f = p->t->frac_bits;
    /* Variant rows aligned to 64 bytes for whole-vector loads. */
    uintptr_t base = (uintptr_t)(private_area + l->variants);
    uint64_t *v = (uint64_t *)((base + 63) & ~(uintptr_t)63);
    uint64_t *acc = (uint64_t *)(private_area + l->acc);
    fast_build_fn build = fast_build_portable;
    fast_uniform_fn uniform = fast_uniform_portable;
#ifdef LNS_X86
    if (st->level == SIMD_AVX512) {
        build = fast_build_avx512;
        uniform = fast_uniform_avx512;
    } else if (st->level == SIMD_AVX2) {
        build = fast_build_avx2;
        uniform = fast_uniform_avx2;
    }
#endif
    int64_t q0 = chunk * CW;
    int64_t width = p->n - q0 < CW ? p->n - q0 : CW;
    int64_t beta[CW];
    for (int64_t w = 0; w < CW; w++)
        beta[w] = w < width ? beta_of(st->bmax[st->perm[q0 + w]], gamma) : 0;
    memset(acc, 0, (size_t)((r1 - r0) * CW) * sizeof(uint64_t));
    /* cc of a row is the same in every panel: the threshold in sorted beta
     * order.  first_cc1: the first column of the chunk with cc = 1 (CW if none). */
    int64_t first_cc1_by_rho[1 << FAST_MAX_F];
    for (int64_t rho = 0; rho < gamma; rho++) {
        int64_t w = 0;
        while (w < width && rho + beta[w] < gamma)
            w++;
        first_cc1_by_rho[rho] = w < width ? w : CW;
    }
    for (int64_t panel = 0; panel < l->panels; panel++) {
        build(p, st, chunk, panel, v);
        int64_t slot0 = panel * p->m;
        for (int64_t i = r0; i < r1; i++) {
            uint64_t *a = acc + (i - r0) * CW;
            int64_t slot = slot0 + i;
            int64_t first_cc1 = first_cc1_by_rho[st->amax[i] & (gamma - 1)];
            if (first_cc1 == 0 || first_cc1 == CW) {
                int64_t cc = first_cc1 == 0;
                uniform(st->entries + slot * kc, kc, v, cc, st->bias[2 * slot + cc], a);
            } else {
                fast_mixed(st->entries + slot * kc, kc, v, first_cc1, st->bias + 2 * slot, a);
            }
            if (st->unsafe_count[slot] > 0)
                fast_unsafe(st->unsafe + slot * kc, st->unsafe_count[slot], v, first_cc1, a);
        }
    }
    for (int64_t i = r0; i < r1; i++) {
        for (int64_t w = 0; w < width; w++) {
            int64_t j = st->perm[q0 + w];
            int64_t e0 = ((st->amax[i] + st->bmax[j]) >> f) - LNS_POW2_BITS - p->margin;
            lns_from_fixed_one((int64_t)acc[(i - r0) * CW + w], e0, p->t, &p->os[i * p->n + j],
                               &p->ox[i * p->n + j]);
        }
    }
}

static fast_state fast_setup(const mm_problem *p, int64_t *shared, int32_t threads, int level)
{
    fast_state st;
    st.l = fast_plan(p->m, p->k, p->n, p->t->frac_bits);
    st.amax = shared + st.l.amax;
    st.bmax = shared + st.l.bmax;
    st.perm = shared + st.l.perm;
    st.hmax = shared + st.l.hmax;
    st.entries = shared + st.l.entries;
    st.unsafe = shared + st.l.unsafe;
    st.unsafe_count = shared + st.l.unsafe_count;
    st.bias = (uint64_t *)(shared + st.l.bias);
    st.chunks = ceil_div(p->n, CW);
    /* Enough work items to keep every thread busy; rows are only split when
     * there are few chunks, since each item rebuilds its chunk's variant rows. */
    int64_t want = 2 * (int64_t)threads;
    st.row_blocks = st.chunks >= want ? 1 : ceil_div(want, st.chunks);
    int64_t max_blocks = ceil_div(p->m, 64);
    if (st.row_blocks > max_blocks)
        st.row_blocks = max_blocks;
    if (st.row_blocks < 1)
        st.row_blocks = 1;
    st.rows_per_block = ceil_div(p->m, st.row_blocks);
    st.level = level;
    return st;
}

/* One 2-D product, all phases, by the calling thread alone. */
static void fast_serial(const mm_problem *p, int64_t *shared, int64_t *private_area, int level)
{
    fast_state st = fast_setup(p, shared, 1, level);
    column_max(p, 0, p->n, st.bmax);
    fast_sort_columns(p, &st);
    for (int64_t panel = 0; panel < st.l.panels; panel++)
        fast_panel_hmax(p, &st, panel);
    for (int64_t i = 0; i < p->m; i++)
        fast_row_entries(p, &st, i);
    for (int64_t chunk = 0; chunk < st.chunks; chunk++)
        fast_item(p, &st, chunk, 0, p->m, private_area);
}

/* One 2-D product, every phase split over the team. */
static void fast_parallel(const mm_problem *p, int64_t *shared, int64_t *private_base,
                          int64_t private_words, int32_t threads, int level)
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
            fast_panel_hmax(p, &st, panel);
        #pragma omp for schedule(static)
        for (int64_t i = 0; i < p->m; i++)
            fast_row_entries(p, &st, i);
        #pragma omp for schedule(dynamic, 1)
        for (int64_t item = 0; item < items; item++) {
            int64_t chunk = item / st.row_blocks, block = item % st.row_blocks;
            int64_t r0 = block * st.rows_per_block;
            int64_t r1 = r0 + st.rows_per_block < p->m ? r0 + st.rows_per_block : p->m;
            if (r0 < r1)
                fast_item(p, &st, chunk, r0, r1, private_base + tid * private_words);
        }
    }
}

/* ---- generic and logadd drivers ---------------------------------------- */

static void rowwise_serial(const mm_problem *p, int strat, int64_t *shared, int level)
{
    generic_chunk_fn generic = pick_generic(level);
    logadd_chunk_fn logadd = pick_logadd(level);
    if (strat == STRATEGY_GENERIC)
        column_max(p, 0, p->n, shared);
    for (int64_t i = 0; i < p->m; i++)
        for (int64_t j0 = 0; j0 < p->n; j0 += CW) {
            int64_t w = p->n - j0 < CW ? p->n - j0 : CW;
            if (strat == STRATEGY_GENERIC)
                generic(p, i, j0, w, shared);
            else
                logadd(p, i, j0, w);
        }
}

static void rowwise_parallel(const mm_problem *p, int strat, int64_t *shared, int32_t threads,
                             int level)
{
    generic_chunk_fn generic = pick_generic(level);
    logadd_chunk_fn logadd = pick_logadd(level);
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
        for (int64_t item = 0; item < p->m * chunks; item++) {
            int64_t i = item / chunks, j0 = (item % chunks) * CW;
            int64_t w = p->n - j0 < CW ? p->n - j0 : CW;
            if (strat == STRATEGY_GENERIC)
                generic(p, i, j0, w, shared);
            else
                logadd(p, i, j0, w);
        }
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
    int level = simd_level();
    int64_t shared, private_words;
    scratch_split(strat, m, k, n, t->frac_bits, &shared, &private_words);
    int by_batch = batch_parallel(batch, m, k, n, threads);
    mm_problem base = {m, k, n, 0, 0, 0, 0, 0, 0, margin,
                       mode == LNS_MODE_MITCHELL ? t->mitchell : t->pow2, t};
    if (by_batch) {
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
                fast_serial(&p, scratch + tid * shared, private_base + tid * private_words, level);
            else
                rowwise_serial(&p, strat, scratch + tid * shared, level);
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
            fast_parallel(&p, scratch, scratch + shared, private_words, threads, level);
        else
            rowwise_parallel(&p, strat, scratch, threads, level);
    }
    return 0;
}
