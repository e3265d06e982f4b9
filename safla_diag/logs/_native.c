/*
 * The log scanner's native kernel: one pass over a chunk of whole lines, without the GIL.
 *
 * It does, in C, what safla_diag/logs/_scan.py's vectorised fast path does with numpy, and gives
 * the same answers (tests/logs/test_native.py checks the two against each other):
 *
 *   - lines end at '\n' (the reader has already turned NUL bytes into '\n');
 *   - a line with control bytes making up 1/20 of it or more is garbage, counted and skipped;
 *   - a line starting with a blank, or empty, continues the record before it;
 *   - any other line that starts with the file's prefix shape (exact bytes, and digits where
 *     digits vary) and carries a level word at one of the known offsets is a record of that
 *     level, counted here; chosen levels' records are also returned with their template keys;
 *   - every other such line is returned for the Python parser.
 *
 * A template key is the message with every run of hex digits holding a decimal digit collapsed
 * to one '0' (safla_diag/logs/_templates.py: keys_of), after the record's tag byte.
 *
 * No library offers this: regular-expression engines (re, re2, hyperscan) report matches one by
 * one to Python, and millions of records per second cannot cross into Python one by one.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#define MAX_OFFSETS 16
#define MAX_LEVELS 64
#define MAX_WORDS 256
#define MESSAGE_BYTES 4096
#define WORD_BITS 10
#define WORD_SLOTS (1 << WORD_BITS) /* the level words' hash table: at most MAX_WORDS of them */

typedef struct {
    char *data;
    size_t len, cap;
} Out;

static int
out_reserve(Out *o, size_t more)
{
    if (o->len + more <= o->cap)
        return 0;
    size_t cap = o->cap ? o->cap : 4096;
    while (cap < o->len + more)
        cap *= 2;
    char *data = realloc(o->data, cap);
    if (data == NULL)
        return -1;
    o->data = data;
    o->cap = cap;
    return 0;
}

static int
out_i64(Out *o, int64_t v)
{
    if (out_reserve(o, 8) < 0)
        return -1;
    memcpy(o->data + o->len, &v, 8);
    o->len += 8;
    return 0;
}

/* The control bytes of _bytes._Luts.ctrl: C0 but tab, LF, CR and ESC; and DEL. */
static inline int
is_ctrl(unsigned char c)
{
    return (c < 32 && c != 9 && c != 10 && c != 13 && c != 27) || c == 127;
}

static inline int
is_letter(unsigned char c)
{
    return c < 128 && (unsigned char)((c | 0x20) - 'a') < 26;
}

static inline int
is_hex(unsigned char c)
{
    return (unsigned char)(c - '0') < 10 || (unsigned char)((c | 0x20) - 'a') < 6;
}

/* A record's shape: the prefix its lines start with and the offsets of its level word. The file's
   sniffed format is shape 0; shapes learned further on (another format inside the same file: a
   concatenation, a rotated log of another service) follow, tried in order. */
typedef struct {
    const unsigned char *prefix;
    Py_ssize_t plen;
    int offsets[MAX_OFFSETS];
    int noffsets;
    int has_levels;
    Py_ssize_t gap; /* bytes from the level word's end to the message, as the parser cuts it;
                       -1: not fixed, the parser makes the chosen records' keys */
    unsigned omask; /* the offsets as bits from the first, when they span 16 bytes; else 0 */
#ifdef __SSE2__
    __m128i p_val, p_exact; /* the prefix's exact bytes and where they are */
    unsigned p_digits;      /* where the prefix has digits, one bit per byte */
#endif
} Shape;

#define MAX_SHAPES 32

typedef struct {
    const unsigned char *buf;
    Py_ssize_t size; /* the whole buffer: reads past cut stay below it */
    Py_ssize_t cut;
    Shape shapes[MAX_SHAPES];
    int nshapes;
    Py_ssize_t stop_run; /* stop before this many slow lines in a row (0: never) */
    uint64_t words[MAX_WORDS];
    unsigned char word_level[MAX_WORDS];
    int nwords;
    short word_index[WORD_SLOTS]; /* open addressing: the word's index, or -1 */
    const unsigned char *left, *right, *initial, *ctrl, *tags;
    int fast, bare, nlevels;
} Spec;

typedef struct {
    const unsigned char *ptr;
    Py_ssize_t len;
    uint64_t hash;
} KnownLine;

typedef struct {
    KnownLine *slots;
    size_t mask; /* slots - 1, a power of two less one; 0: no table */
    Py_ssize_t longest;
} Known;

typedef struct {
    size_t at;    /* where the key starts in Result.keys */
    size_t len;   /* its length */
    uint64_t hash;
    int64_t index; /* its number, in order of first record; -1: an empty slot */
} KeySlot;

/* count, first (line, start, end), last (line, start, end), and where the first record ends
   (its continuation lines included, as the parser's record_end finds it), or -1 when a line
   after it is one only the parser can judge */
#define KEY_STATS 8
#define MAX_CONTINUATION 500 /* lines after a record taken as its continuation, at most */

typedef struct {
    int64_t lines, garbage, records;
    int64_t counts[MAX_LEVELS];
    Out slow;  /* (line, start, end) per line for the parser */
    Out picks; /* per distinct key: KEY_STATS int64s (count, first and last record) */
    Out keys;  /* the distinct keys (tag + key), '\n'-separated, in order of first record */
    int64_t nkeys;
    KeySlot *slots; /* the distinct keys' hash table */
    size_t mask;    /* its size less one (a power of two), 0 before the first key */
    /* The current run of slow lines: its length, first line, start, and slow's length then. */
    Py_ssize_t run, run_line, run_start;
    size_t run_slow;
    Py_ssize_t stopped; /* where the scan stopped before a run (the run's start), or -1 */
    /* The key whose first record is the latest one seen, while its end is still being found
       (-1: none), and how many lines after it were taken as its continuation. */
    int64_t open;
    Py_ssize_t open_lines;
} Result;

/* The line [s, e) after an open first record is a continuation (extend), the start of a
   record (close), or one only the parser can judge (unknown: the end goes to Python). */
enum { EXTEND, CLOSE, UNKNOWN };

static inline void
follow(Result *r, int what, Py_ssize_t e)
{
    if (r->open < 0)
        return;
    int64_t *end = (int64_t *)r->picks.data + r->open * KEY_STATS + 7;
    if (what == EXTEND && r->open_lines < MAX_CONTINUATION) {
        *end = e;
        if (++r->open_lines < MAX_CONTINUATION)
            return; /* after that many, the parser's record_end stops too */
    } else if (what == UNKNOWN) {
        *end = -1;
    }
    r->open = -1;
}

/* The slot of a word in the level words' hash table. */
static inline unsigned
word_slot(uint64_t w)
{
    return (unsigned)((w * 0x9E3779B97F4A7C15ULL) >> (64 - WORD_BITS));
}

/* The level word at offset o of the line [s, e), checked to its end: its level, or -1. */
static inline int
word_at(const Spec *sp, Py_ssize_t s, Py_ssize_t e, int o, Py_ssize_t *msg_at)
{
    const unsigned char *b = sp->buf;
    Py_ssize_t q = s + o;
    if (q + 9 > sp->size || !sp->initial[b[q]])
        return -1;
    int n;
    uint64_t w;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    /* The word's leading ASCII letters, eight bytes at once: a byte is a letter when it is
       below 0x80 and, with bit 5 set, between 'a' and 'z'. */
    uint64_t g;
    memcpy(&g, b + q, 8);
    const uint64_t high = 0x8080808080808080ULL;
    uint64_t x = g | 0x2020202020202020ULL;
    uint64_t letters = ((x | high) - 0x6161616161616161ULL) &
                       (0xFAFAFAFAFAFAFAFAULL - (x & ~high)) & ~g & high;
    uint64_t stop = ~letters & high;
    n = stop ? __builtin_ctzll(stop) / 8 : 8;
    w = n == 8 ? g : g & ((1ULL << (8 * n)) - 1);
#else
    n = 0;
    w = 0;
    while (n < 8 && is_letter(b[q + n])) {
        w |= (uint64_t)b[q + n] << (8 * n); /* as Python's int.from_bytes(word, "little") */
        n++;
    }
#endif
    if (n < 3 || !sp->right[b[q + n]] || q + n > e)
        return -1;
    for (unsigned slot = word_slot(w);; slot = (slot + 1) & (WORD_SLOTS - 1)) {
        int k = sp->word_index[slot];
        if (k < 0)
            return -1;
        if (sp->words[k] == w) {
            *msg_at = q + n;
            return sp->word_level[k];
        }
    }
}

/* The level word at the first of the known offsets that has one: its level, or -1. */
static inline int
level_of(const Spec *sp, const Shape *sh, Py_ssize_t s, Py_ssize_t e, Py_ssize_t *msg_at)
{
    const unsigned char *b = sp->buf;
    if (sh->noffsets == 0 || s + sh->offsets[sh->noffsets - 1] + 9 > sp->size)
        return -1; /* past the buffer's padding: never the case for a reader's chunk */
#ifdef __SSE2__
    if (sh->omask && s + sh->offsets[0] + 16 <= sp->size) {
        /* Offsets within 16 bytes: every position after a delimiter (the left table, checked
           at the call) and at a letter, 16 at once, kept where an offset is. A letter that no
           level word starts with is refused by word_at's first test. */
        const unsigned char *q = b + s + sh->offsets[0];
        __m128i prev = _mm_loadu_si128((const __m128i *)(q - 1));
        __m128i cur = _mm_loadu_si128((const __m128i *)q);
        __m128i left = _mm_or_si128(
            _mm_or_si128(_mm_cmpeq_epi8(prev, _mm_set1_epi8(' ')),
                         _mm_cmpeq_epi8(prev, _mm_set1_epi8('\t'))),
            _mm_or_si128(
                _mm_or_si128(_mm_cmpeq_epi8(prev, _mm_set1_epi8('[')),
                             _mm_cmpeq_epi8(prev, _mm_set1_epi8('<'))),
                _mm_or_si128(_mm_cmpeq_epi8(prev, _mm_set1_epi8('(')),
                             _mm_cmpeq_epi8(prev, _mm_set1_epi8('"')))));
        __m128i x = _mm_sub_epi8(_mm_or_si128(cur, _mm_set1_epi8(0x20)), _mm_set1_epi8('a'));
        __m128i letter = _mm_cmpeq_epi8(_mm_min_epu8(x, _mm_set1_epi8(25)), x);
        unsigned cand = (unsigned)_mm_movemask_epi8(_mm_and_si128(left, letter)) & sh->omask;
        while (cand) {
            int k = __builtin_ctz(cand);
            cand &= cand - 1;
            int level = word_at(sp, s, e, sh->offsets[0] + k, msg_at);
            if (level >= 0)
                return level;
        }
        return -1;
    }
#endif
    /* The offsets right after a delimiter where a level word can begin, one bit each, without
       a branch per offset. */
    unsigned cand = 0;
    for (int k = 0; k < sh->noffsets; k++) {
        const unsigned char *q = b + s + sh->offsets[k];
        cand |= (unsigned)(sp->left[q[-1]] & sp->initial[q[0]]) << k;
    }
    while (cand) {
        int k = __builtin_ctz(cand);
        cand &= cand - 1;
        int level = word_at(sp, s, e, sh->offsets[k], msg_at);
        if (level >= 0)
            return level;
    }
    return -1;
}

/* Whether a level word follows a delimiter anywhere in the line's first LEVEL_SCAN bytes. */
#define LEVEL_SCAN 256
static inline int
any_level_word(const Spec *sp, Py_ssize_t s, Py_ssize_t e)
{
    const unsigned char *b = sp->buf;
    Py_ssize_t end = e - s > LEVEL_SCAN ? s + LEVEL_SCAN : e, at = 0;
    for (Py_ssize_t q = s + 1; q < end; q++)
        if (sp->left[b[q - 1]] && sp->initial[b[q]] && word_at(sp, s, e, (int)(q - s), &at) >= 0)
            return 1;
    return 0;
}

/* Template keys and known non-record lines are looked up by this hash: eight bytes at a time,
   a multiply and a fold per word (a byte-at-a-time FNV-1a cost a multiply per byte). */
static inline uint64_t
hash_bytes(const unsigned char *p, Py_ssize_t n)
{
    uint64_t h = 0x9E3779B97F4A7C15ULL ^ (uint64_t)n, w;
    Py_ssize_t k = 0;
    for (; k + 8 <= n; k += 8) {
        memcpy(&w, p + k, 8);
        h = (h ^ w) * 0xff51afd7ed558ccdULL;
        h ^= h >> 32;
    }
    w = 0;
    memcpy(&w, p + k, (size_t)(n - k));
    h = (h ^ w) * 0xc4ceb9fe1a85ec53ULL;
    return h ^ (h >> 33);
}

/* The first decimal digit in b[p:end], or end. */
static inline Py_ssize_t
next_digit(const unsigned char *b, Py_ssize_t size, Py_ssize_t p, Py_ssize_t end)
{
#ifdef __SSE2__
    const __m128i zero = _mm_set1_epi8('0'), nine = _mm_set1_epi8(9);
    while (p + 16 <= size && p < end) {
        __m128i d = _mm_sub_epi8(_mm_loadu_si128((const __m128i *)(b + p)), zero);
        unsigned m = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(_mm_min_epu8(d, nine), d));
        if (m) {
            Py_ssize_t at = p + __builtin_ctz(m);
            return at < end ? at : end;
        }
        p += 16;
    }
#endif
    while (p < end && (unsigned char)(b[p] - '0') >= 10)
        p++;
    return p < end ? p : end;
}

#ifdef __SSE2__
/* Of 16 bytes: the hex digits (is_hex), one bit each. */
static inline unsigned
hex16(const unsigned char *p)
{
    __m128i x = _mm_loadu_si128((const __m128i *)p);
    __m128i d = _mm_sub_epi8(x, _mm_set1_epi8('0'));
    __m128i l = _mm_sub_epi8(_mm_or_si128(x, _mm_set1_epi8(0x20)), _mm_set1_epi8('a'));
    __m128i digit = _mm_cmpeq_epi8(_mm_min_epu8(d, _mm_set1_epi8(9)), d);
    __m128i letter = _mm_cmpeq_epi8(_mm_min_epu8(l, _mm_set1_epi8(5)), l);
    return (unsigned)_mm_movemask_epi8(_mm_or_si128(digit, letter));
}
#endif

/* The first byte in b[p:end] that is not a hex digit, or end: 16 bytes at a time (a byte loop
   here was most of a template key's cost, a mispredicted exit per run of digits). */
static inline Py_ssize_t
hex_end(const unsigned char *b, Py_ssize_t size, Py_ssize_t p, Py_ssize_t end)
{
#ifdef __SSE2__
    while (p < end && p + 16 <= size) {
        unsigned m = ~hex16(b + p) & 0xFFFFu;
        if (m) {
            Py_ssize_t at = p + __builtin_ctz(m);
            return at < end ? at : end;
        }
        p += 16;
    }
#endif
    while (p < end && is_hex(b[p]))
        p++;
    return p < end ? p : end;
}

/* Where the run of hex digits that ends before d starts, not before floor (floor <= d). */
static inline Py_ssize_t
hex_start(const unsigned char *b, Py_ssize_t floor, Py_ssize_t d)
{
#ifdef __SSE2__
    while (d > floor && d >= 16) {
        unsigned m = ~hex16(b + d - 16) & 0xFFFFu;
        if (m) {
            Py_ssize_t at = d - 16 + (31 - __builtin_clz(m)) + 1; /* after the last non-hex */
            return at > floor ? at : floor;
        }
        d -= 16;
    }
    if (d <= floor)
        return floor;
#endif
    while (d > floor && is_hex(b[d - 1]))
        d--;
    return d;
}

/* b[p:end] with every run of hex digits that holds a decimal digit written as one '0', into o
   (room for end - p bytes); returns the end of what was written. b is readable up to size.
   Copy up to each decimal digit, then replace the run around it (runs are maximal, so the one
   around a digit starts after what was copied). */
static char *
collapse_into(const unsigned char *b, Py_ssize_t size, Py_ssize_t p, Py_ssize_t end, char *o)
{
    while (p < end) {
        Py_ssize_t d = next_digit(b, size, p, end);
        if (d == end) {
            memcpy(o, b + p, (size_t)(end - p));
            return o + (end - p);
        }
        Py_ssize_t run = hex_start(b, p, d);
        memcpy(o, b + p, (size_t)(run - p));
        o += run - p;
        *o++ = '0';
        p = hex_end(b, size, d + 1, end);
    }
    return o;
}

/* Double the distinct keys' hash table (or make its first). */
static int
keys_grow(Result *r)
{
    size_t cap = r->mask ? 2 * (r->mask + 1) : 256;
    KeySlot *slots = malloc(cap * sizeof(KeySlot));
    if (slots == NULL)
        return -1;
    for (size_t k = 0; k < cap; k++)
        slots[k].index = -1;
    for (size_t k = 0; r->mask && k <= r->mask; k++) {
        if (r->slots[k].index < 0)
            continue;
        size_t slot = r->slots[k].hash & (cap - 1);
        while (slots[slot].index >= 0)
            slot = (slot + 1) & (cap - 1);
        slots[slot] = r->slots[k];
    }
    free(r->slots);
    r->slots = slots;
    r->mask = cap - 1;
    return 0;
}

/* A chosen record: make its template key and add it to its key's figures. */
static int
add_pick(const Spec *sp, Result *r, int64_t i, Py_ssize_t s, Py_ssize_t e, Py_ssize_t body,
         int level)
{
    const unsigned char *b = sp->buf;
    Py_ssize_t end = e < body + MESSAGE_BYTES ? e : body + MESSAGE_BYTES;
    if (body > end)
        body = end;
    if (end > body && b[end - 1] == '\r')
        end--;
    if (out_reserve(&r->keys, (size_t)(end - body) + 2) < 0)
        return -1;
    size_t mark = r->keys.len;
    char *o = r->keys.data + mark;
    if (r->nkeys)
        *o++ = '\n';
    char *key = o;
    *o++ = (char)sp->tags[level];
    o = collapse_into(b, sp->size, body, end, o);
    size_t len = (size_t)(o - key);
    uint64_t h = hash_bytes((const unsigned char *)key, (Py_ssize_t)len);
    if (r->mask == 0 && keys_grow(r) < 0)
        return -1;
    size_t slot = h & r->mask;
    for (; r->slots[slot].index >= 0; slot = (slot + 1) & r->mask) {
        KeySlot *k = &r->slots[slot];
        if (k->hash == h && k->len == len && memcmp(r->keys.data + k->at, key, len) == 0) {
            int64_t *st = (int64_t *)(r->picks.data) + k->index * KEY_STATS;
            st[0]++;
            st[4] = i;
            st[5] = s;
            st[6] = e;
            r->keys.len = mark; /* the key is known: drop the copy */
            return 0;
        }
    }
    int64_t st[KEY_STATS] = {1, i, s, e, i, s, e, e};
    if (out_reserve(&r->picks, sizeof st) < 0)
        return -1;
    memcpy(r->picks.data + r->picks.len, st, sizeof st);
    r->picks.len += sizeof st;
    r->open = r->nkeys; /* the lines after it tell where it ends */
    r->open_lines = 0;
    r->slots[slot] = (KeySlot){(size_t)(key - r->keys.data), len, h, r->nkeys};
    r->keys.len = (size_t)(o - r->keys.data);
    r->nkeys++;
    if (2 * (size_t)r->nkeys > r->mask && keys_grow(r) < 0)
        return -1;
    return 0;
}


/* -- the memo: a file's template keys across chunks ------------------------------------------ */

/* Per distinct key of a file (since the memo was last cleared): its records, the order of the
   latest (chunk << 32 | line) and that record's first head_bytes, and its first record: its order,
   its bytes (up to EXAMPLE_BYTES, continuation lines included) and the length of its first line in
   them (up to MESSAGE_BYTES). Python sees a key only when the kernel could not tell where its first
   record ends (or the record may be JSON); the rest stays here until the file ends, so a chunk
   costs the same for 5 keys or 500. */
typedef struct {
    size_t at, len; /* the key's bytes in Memo.keys */
    uint64_t hash;
    int64_t count, last_order, first_order;
    Py_ssize_t head_len;
    size_t first_at;        /* the first record's bytes in Memo.firsts */
    Py_ssize_t first_len;
    Py_ssize_t first_line;  /* the first line's length in them; -1: the record is Python's */
} MemoItem;

#define EXAMPLE_BYTES 16000 /* of a key's first record: its example (4 000 characters) */

typedef struct {
    Out keys;            /* every key's bytes, back to back */
    MemoItem *items;
    size_t nitems, cap;
    int64_t *slots;      /* open addressing: an item's index, or -1 */
    size_t mask;         /* slots less one (a power of two); 0 before the first key */
    char *heads;         /* head_bytes per item */
    Py_ssize_t head_bytes;
    Out firsts;          /* the items' first records, back to back */
} Memo;

#define MEMO_NAME "safla_diag.logs._native.memo"

static void
memo_free(Memo *m)
{
    free(m->keys.data);
    free(m->items);
    free(m->slots);
    free(m->heads);
    free(m->firsts.data);
}

static void
memo_destroy(PyObject *capsule)
{
    Memo *m = PyCapsule_GetPointer(capsule, MEMO_NAME);
    if (m != NULL) {
        memo_free(m);
        free(m);
    }
}

static void
memo_clear(Memo *m)
{
    Py_ssize_t head_bytes = m->head_bytes;
    memo_free(m);
    memset(m, 0, sizeof *m);
    m->head_bytes = head_bytes;
}

static int
memo_grow(Memo *m)
{
    size_t cap = m->mask ? 2 * (m->mask + 1) : 256;
    int64_t *slots = malloc(cap * sizeof(int64_t));
    if (slots == NULL)
        return -1;
    for (size_t k = 0; k < cap; k++)
        slots[k] = -1;
    for (size_t k = 0; k < m->nitems; k++) {
        size_t slot = m->items[k].hash & (cap - 1);
        while (slots[slot] >= 0)
            slot = (slot + 1) & (cap - 1);
        slots[slot] = (int64_t)k;
    }
    free(m->slots);
    m->slots = slots;
    m->mask = cap - 1;
    return 0;
}

/* The memo's item for a key (its hash given), added when new (*added: counts and orders zero,
   no first record); NULL when memory runs out. */
static MemoItem *
memo_item(Memo *m, const char *key, size_t len, uint64_t hash, int *added)
{
    *added = 0;
    if (m->mask == 0 && memo_grow(m) < 0)
        return NULL;
    size_t slot = hash & m->mask;
    for (; m->slots[slot] >= 0; slot = (slot + 1) & m->mask) {
        MemoItem *c = &m->items[m->slots[slot]];
        if (c->hash == hash && c->len == len && memcmp(m->keys.data + c->at, key, len) == 0)
            return c;
    }
    if (m->nitems == m->cap) {
        size_t cap = m->cap ? 2 * m->cap : 256;
        MemoItem *items = realloc(m->items, cap * sizeof(MemoItem));
        if (items == NULL)
            return NULL;
        m->items = items;
        char *heads = realloc(m->heads, cap * (size_t)m->head_bytes + 1);
        if (heads == NULL)
            return NULL;
        m->heads = heads;
        m->cap = cap;
    }
    if (out_reserve(&m->keys, len) < 0)
        return NULL;
    memcpy(m->keys.data + m->keys.len, key, len);
    MemoItem *it = &m->items[m->nitems];
    *it = (MemoItem){m->keys.len, len, hash, 0, 0, 0, 0, 0, 0, -1};
    m->keys.len += len;
    m->slots[slot] = (int64_t)m->nitems++;
    if (2 * m->nitems > m->mask && memo_grow(m) < 0) /* the items stay where they are */
        return NULL;
    *added = 1;
    return it;
}

/* Keep b[s:s+n] as the item's first record, its first line `line` bytes long. */
static int
memo_keep_first(Memo *m, MemoItem *it, const char *b, Py_ssize_t n, Py_ssize_t line)
{
    if (out_reserve(&m->firsts, (size_t)n) < 0)
        return -1;
    memcpy(m->firsts.data + m->firsts.len, b, (size_t)n);
    it->first_at = m->firsts.len;
    it->first_len = n;
    it->first_line = line;
    m->firsts.len += (size_t)n;
    return 0;
}

/* Fold a chunk's distinct keys (Result.keys/picks/slots) into the memo; the keys new to it whose
   first record's end is unknown (or that may be JSON) go to fresh_keys/fresh_picks, in the chunk's
   order of first record. */
static int
memo_fold(Memo *m, const Spec *sp, const Result *r, int64_t order_base, Out *fresh_keys,
          Out *fresh_picks)
{
    const unsigned char *b = sp->buf;
    if (r->nkeys == 0)
        return 0;
    /* The chunk's keys by index: its hash table holds them in no order. */
    const KeySlot **by_index = malloc((size_t)r->nkeys * sizeof *by_index);
    if (by_index == NULL)
        return -1;
    for (size_t k = 0; k <= r->mask; k++)
        if (r->slots[k].index >= 0)
            by_index[r->slots[k].index] = &r->slots[k];
    int rc = -1;
    for (int64_t j = 0; j < r->nkeys; j++) {
        const KeySlot *ks = by_index[j];
        const char *key = r->keys.data + ks->at;
        const int64_t *st = (const int64_t *)r->picks.data + j * KEY_STATS;
        int added;
        MemoItem *it = memo_item(m, key, ks->len, ks->hash, &added);
        if (it == NULL)
            goto done;
        if (added) {
            it->first_order = order_base + st[1];
            Py_ssize_t s1 = (Py_ssize_t)st[2], e1 = (Py_ssize_t)st[3], end = (Py_ssize_t)st[7];
            Py_ssize_t line = e1 - s1 < MESSAGE_BYTES ? e1 - s1 : MESSAGE_BYTES, lead = s1;
            while (lead < s1 + line && (b[lead] == ' ' || (b[lead] >= 9 && b[lead] <= 13)))
                lead++;
            if (end >= 0 && (lead == s1 + line || b[lead] != '{')) {
                /* Its first record, kept here: Python needs nothing of this key until the end. */
                Py_ssize_t n = end - s1 < EXAMPLE_BYTES ? end - s1 : EXAMPLE_BYTES;
                if (memo_keep_first(m, it, (const char *)b + s1, n, line) < 0)
                    goto done;
            } else {
                /* Python finds where it ends (or reads its JSON): the key goes back to it. */
                if (out_reserve(fresh_keys, ks->len + 1) < 0 ||
                    out_reserve(fresh_picks, KEY_STATS * 8) < 0)
                    goto done;
                if (fresh_keys->len)
                    fresh_keys->data[fresh_keys->len++] = '\n';
                memcpy(fresh_keys->data + fresh_keys->len, key, ks->len);
                fresh_keys->len += ks->len;
                memcpy(fresh_picks->data + fresh_picks->len, st, KEY_STATS * 8);
                fresh_picks->len += KEY_STATS * 8;
            }
        }
        it->count += st[0];
        it->last_order = order_base + st[4];
        Py_ssize_t s = (Py_ssize_t)st[5], e = (Py_ssize_t)st[6];
        Py_ssize_t n = e - s < m->head_bytes ? e - s : m->head_bytes;
        memcpy(m->heads + (size_t)(it - m->items) * (size_t)m->head_bytes, b + s, (size_t)n);
        it->head_len = n;
    }
    rc = 0;
done:
    free(by_index);
    return rc;
}

/* Size a chunk's key table and buffers for the keys its file has met so far (the memo's), so
   that a chunk of a file with many templates does not grow them from nothing each time; up to
   PRESIZE_KEYS keys (a file of many more rarely has them all in one chunk: the table grows). */
#define PRESIZE_KEYS 2048

static int
keys_presize(Result *r, const Memo *m)
{
    size_t keys = m->nitems < PRESIZE_KEYS ? m->nitems : PRESIZE_KEYS;
    size_t cap = 256;
    while (cap < 4 * keys)
        cap *= 2;
    KeySlot *slots = malloc(cap * sizeof(KeySlot));
    if (slots == NULL)
        return -1;
    for (size_t k = 0; k < cap; k++)
        slots[k].index = -1;
    free(r->slots);
    r->slots = slots;
    r->mask = cap - 1;
    if (out_reserve(&r->picks, keys * KEY_STATS * 8) < 0 ||
        out_reserve(&r->keys, m->keys.len / m->nitems * keys + 2 * keys) < 0)
        return -1;
    return 0;
}

PyDoc_STRVAR(memo_doc,
"memo(head_bytes)\n--\n\n"
"A new, empty memo of template keys for scan(): per key, its records, the order of its latest\n"
"record and that record's first head_bytes.");

static PyObject *
py_memo(PyObject *self, PyObject *args)
{
    Py_ssize_t head_bytes;
    if (!PyArg_ParseTuple(args, "n", &head_bytes))
        return NULL;
    if (head_bytes < 1 || head_bytes > 65536) {
        PyErr_SetString(PyExc_ValueError, "head_bytes must be between 1 and 65536");
        return NULL;
    }
    Memo *m = calloc(1, sizeof(Memo));
    if (m == NULL)
        return PyErr_NoMemory();
    m->head_bytes = head_bytes;
    PyObject *capsule = PyCapsule_New(m, MEMO_NAME, memo_destroy);
    if (capsule == NULL)
        free(m);
    return capsule;
}

PyDoc_STRVAR(memo_items_doc,
"memo_items(memo, clear)\n--\n\n"
"The memo's keys, in order of first record: a list of (key, records, order of the latest,\n"
"its head, order of the first, its bytes or None, the length of its first line in them); None\n"
"for a key scan() handed back to Python. With clear, the memo is emptied.");

static PyObject *
py_memo_items(PyObject *self, PyObject *args)
{
    PyObject *capsule;
    int clear;
    if (!PyArg_ParseTuple(args, "Op", &capsule, &clear))
        return NULL;
    Memo *m = PyCapsule_GetPointer(capsule, MEMO_NAME);
    if (m == NULL)
        return NULL;
    PyObject *out = PyList_New((Py_ssize_t)m->nitems);
    if (out == NULL)
        return NULL;
    for (size_t k = 0; k < m->nitems; k++) {
        const MemoItem *it = &m->items[k];
        PyObject *first = it->first_line < 0
                              ? Py_NewRef(Py_None)
                              : PyBytes_FromStringAndSize(m->firsts.data + it->first_at,
                                                          it->first_len);
        if (first == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyObject *row = Py_BuildValue("y#LLy#LNn", m->keys.data + it->at, (Py_ssize_t)it->len,
                                      (long long)it->count, (long long)it->last_order,
                                      m->heads + k * (size_t)m->head_bytes, it->head_len,
                                      (long long)it->first_order, first, it->first_line);
        if (row == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, (Py_ssize_t)k, row);
    }
    if (clear)
        memo_clear(m);
    return out;
}

/* Whether b[s:e] is one of the lines already known not to start a record (tracebacks). */
static int
known_line(const Spec *sp, const Known *kn, Py_ssize_t s, Py_ssize_t e)
{
    Py_ssize_t n = e - s;
    if (kn->mask == 0 || n > kn->longest)
        return 0;
    uint64_t h = hash_bytes(sp->buf + s, n);
    for (size_t slot = h & kn->mask;; slot = (slot + 1) & kn->mask) {
        const KnownLine *k = &kn->slots[slot];
        if (k->ptr == NULL)
            return 0;
        if (k->hash == h && k->len == n && memcmp(k->ptr, sp->buf + s, (size_t)n) == 0)
            return 1;
    }
}

static inline int
prefix_ok(const Spec *sp, const Shape *sh, Py_ssize_t s, Py_ssize_t len)
{
    const unsigned char *b = sp->buf;
    if (len < sh->plen)
        return 0;
#ifdef __SSE2__
    if (s + 16 <= sp->size) {
        __m128i x = _mm_loadu_si128((const __m128i *)(b + s));
        __m128i off = _mm_and_si128(_mm_xor_si128(x, sh->p_val), sh->p_exact);
        if (_mm_movemask_epi8(_mm_cmpeq_epi8(off, _mm_setzero_si128())) != 0xFFFF)
            return 0;
        __m128i d = _mm_sub_epi8(x, _mm_set1_epi8('0'));
        unsigned dig = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(_mm_min_epu8(d, _mm_set1_epi8(9)), d));
        return (dig & sh->p_digits) == sh->p_digits;
    }
#endif
    for (Py_ssize_t k = 0; k < sh->plen; k++) {
        unsigned char want = sh->prefix[k], got = b[s + k];
        if (want ? got != want : (unsigned char)(got - '0') >= 10)
            return 0;
    }
    return 1;
}

static int
add_span(Out *o, int64_t i, Py_ssize_t s, Py_ssize_t e)
{
    return out_i64(o, i) < 0 || out_i64(o, s) < 0 || out_i64(o, e) < 0 ? -1 : 0;
}

/* What the parser's record_end makes of a line after a record (neither blank-led nor garbage):
   without a format every such line starts a record; with one, a line of the sniffed shape's
   prefix does, a line it knows is not a record continues the record, and it judges the rest. */
static int
verdict(const Spec *sp, const Known *kn, Py_ssize_t s, Py_ssize_t e)
{
    if (sp->bare)
        return CLOSE;
    const Shape *sh = &sp->shapes[0]; /* the sniffed shape (no prefix: not used) */
    if (sp->fast && sp->nshapes > 0 && sh->plen > 0 && prefix_ok(sp, sh, s, e - s))
        return CLOSE;
    if (known_line(sp, kn, s, e - s > MESSAGE_BYTES ? s + MESSAGE_BYTES : e))
        return EXTEND;
    return UNKNOWN;
}

/* One line [s, e), number i, holding bad control bytes. */
static inline int
line(const Spec *sp, const Known *kn, Result *r, int64_t bad, int64_t i, Py_ssize_t s,
     Py_ssize_t e)
{
    const unsigned char *b = sp->buf;
    Py_ssize_t len = e - s;
    if (bad > 0 && bad * 20 >= len) { /* garbage: counted, never a record */
        r->run = 0;
        r->garbage++;
        follow(r, EXTEND, e);
        return 0;
    }
    if (len == 0 || b[s] == ' ' || b[s] == '\t') {
        follow(r, EXTEND, e);
        return 0;
    }
    if (r->open >= 0)
        follow(r, verdict(sp, kn, s, e), e);
    if (sp->fast) {
        for (int k = 0; k < sp->nshapes; k++) {
            const Shape *sh = &sp->shapes[k];
            if (sh->plen == 0 || !prefix_ok(sp, sh, s, len))
                continue;
            if (!sh->has_levels) {
                /* A learned shape without levels (Thunderbird's) may share its prefix with a
                   format that has them (BGL's): a line with a level word is not claimed. */
                if (k > 0 && any_level_word(sp, s, e))
                    continue;
                r->run = 0;
                r->records++;
                return 0;
            }
            Py_ssize_t body = 0;
            int level = level_of(sp, sh, s, e, &body);
            if (level >= 0) {
                r->run = 0;
                if (sp->tags[level] && sh->gap < 0)
                    return add_span(&r->slow, i, s, e); /* the parser cuts its message */
                r->records++;
                r->counts[level]++;
                return sp->tags[level] ? add_pick(sp, r, i, s, e, body + sh->gap, level) : 0;
            }
        }
    }
    Py_ssize_t head_end = e - s > MESSAGE_BYTES ? s + MESSAGE_BYTES : e;
    if (known_line(sp, kn, s, head_end)) {
        r->run = 0;
        r->records += sp->bare; /* without a format, every line is a record */
        return 0;
    }
    if (r->run++ == 0) {
        r->run_line = (Py_ssize_t)i;
        r->run_start = s;
        r->run_slow = r->slow.len;
    }
    if (sp->stop_run > 0 && r->run >= sp->stop_run) {
        /* Lines no shape reads, one after another: maybe another format begins. The scan ends
           before them (their spans dropped), for the caller to learn it and scan on. */
        r->slow.len = r->run_slow;
        r->stopped = r->run_start;
        return 1;
    }
    return add_span(&r->slow, i, s, e);
}

#ifdef __SSE2__
/* Of 64 bytes: the newlines, and the bytes below 32 or DEL (a superset of the control bytes). */
static inline void
masks64_sse2(const unsigned char *p, uint64_t *nl, uint64_t *low)
{
    const __m128i lf = _mm_set1_epi8('\n'), c31 = _mm_set1_epi8(31), c127 = _mm_set1_epi8(127);
    uint64_t m = 0, l = 0;
    for (int k = 0; k < 4; k++) {
        __m128i x = _mm_loadu_si128((const __m128i *)(p + 16 * k));
        __m128i small =
            _mm_or_si128(_mm_cmpeq_epi8(_mm_min_epu8(x, c31), x), _mm_cmpeq_epi8(x, c127));
        m |= (uint64_t)(unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(x, lf)) << (16 * k);
        l |= (uint64_t)(unsigned)_mm_movemask_epi8(small) << (16 * k);
    }
    *nl = m;
    *low = l;
}

/* Of 64 bytes: the control bytes (is_ctrl). */
static inline uint64_t
ctrl64_sse2(const unsigned char *p)
{
    uint64_t cm = 0;
    for (int k = 0; k < 4; k++) {
        __m128i x = _mm_loadu_si128((const __m128i *)(p + 16 * k));
        __m128i keep = _mm_or_si128(
            _mm_or_si128(_mm_cmpeq_epi8(x, _mm_set1_epi8(9)), _mm_cmpeq_epi8(x, _mm_set1_epi8(10))),
            _mm_or_si128(_mm_cmpeq_epi8(x, _mm_set1_epi8(13)), _mm_cmpeq_epi8(x, _mm_set1_epi8(27))));
        __m128i low = _mm_cmpeq_epi8(_mm_min_epu8(x, _mm_set1_epi8(31)), x);
        __m128i hit = _mm_or_si128(_mm_andnot_si128(keep, low), _mm_cmpeq_epi8(x, _mm_set1_epi8(127)));
        cm |= (uint64_t)(unsigned)_mm_movemask_epi8(hit) << (16 * k);
    }
    return cm;
}
#endif

#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__)
#define HAVE_AVX2_CLONE 1
#include <immintrin.h>
#define AVX2 __attribute__((target("avx2")))

AVX2 static inline void
masks64_avx2(const unsigned char *p, uint64_t *nl, uint64_t *low)
{
    const __m256i lf = _mm256_set1_epi8('\n'), c31 = _mm256_set1_epi8(31),
                  c127 = _mm256_set1_epi8(127);
    uint64_t m = 0, l = 0;
    for (int k = 0; k < 2; k++) {
        __m256i x = _mm256_loadu_si256((const __m256i *)(p + 32 * k));
        __m256i small = _mm256_or_si256(_mm256_cmpeq_epi8(_mm256_min_epu8(x, c31), x),
                                        _mm256_cmpeq_epi8(x, c127));
        m |= (uint64_t)(uint32_t)_mm256_movemask_epi8(_mm256_cmpeq_epi8(x, lf)) << (32 * k);
        l |= (uint64_t)(uint32_t)_mm256_movemask_epi8(small) << (32 * k);
    }
    *nl = m;
    *low = l;
}
#endif

/* Lines [base, end) of the 64-byte block at base whose newlines are m, control bytes cm. */
#define BLOCK_LINES()                                                                          \
    do {                                                                                       \
        uint64_t done = 0;                                                                     \
        while (m) {                                                                            \
            int bit = __builtin_ctzll(m);                                                      \
            uint64_t upto = bit == 63 ? ~0ULL : (2ULL << bit) - 1;                             \
            m &= m - 1;                                                                        \
            if (cm)                                                                            \
                bad += __builtin_popcountll(cm & upto & ~done);                                \
            done = upto;                                                                       \
            Py_ssize_t e = base + bit;                                                         \
            int rc_ = line(sp, kn, r, bad, i++, s, e);                                        \
            if (rc_ != 0) {                                                                    \
                if (rc_ < 0)                                                                   \
                    return -1;                                                                 \
                r->lines = r->run_line; /* stopped before a run of unknown lines */           \
                return 0;                                                                      \
            }                                                                                  \
            s = e + 1;                                                                         \
            bad = 0;                                                                           \
        }                                                                                      \
        if (cm)                                                                                \
            bad += __builtin_popcountll(cm & ~done);                                           \
    } while (0)

/* The lines after the last whole 64-byte block, one byte at a time. */
static int
scan_tail(const Spec *sp, const Known *kn, Result *r, Py_ssize_t base, Py_ssize_t s, int64_t i,
          int64_t bad)
{
    const unsigned char *b = sp->buf;
    for (Py_ssize_t e = base; e < sp->cut; e++) {
        if (b[e] != '\n') {
            bad += is_ctrl(b[e]);
            continue;
        }
        int rc = line(sp, kn, r, bad, i++, s, e);
        if (rc != 0) {
            if (rc < 0)
                return -1;
            r->lines = r->run_line;
            return 0;
        }
        s = e + 1;
        bad = 0;
    }
    r->lines = i;
    return 0;
}

/* The whole chunk: 64 bytes at a time, their newlines and control bytes as bit masks, so that
   there is no call and no second pass per line. */
static int
scan_sse2(const Spec *sp, const Known *kn, Result *r)
{
    Py_ssize_t s = 0, base = 0;
    int64_t i = 0, bad = 0; /* bad: control bytes since the line's start */
#ifdef __SSE2__
    const unsigned char *b = sp->buf;
    for (; base + 64 <= sp->cut; base += 64) {
        uint64_t m, low, cm = 0;
        masks64_sse2(b + base, &m, &low);
        if (low != m) /* something below 32 besides newlines: find the control bytes */
            cm = ctrl64_sse2(b + base);
        BLOCK_LINES();
    }
#endif
    return scan_tail(sp, kn, r, base, s, i, bad);
}

#ifdef HAVE_AVX2_CLONE
/* scan_sse2 with 32-byte loads, where the processor has them (checked once, at import). */
AVX2 static int
scan_avx2(const Spec *sp, const Known *kn, Result *r)
{
    Py_ssize_t s = 0, base = 0;
    int64_t i = 0, bad = 0;
    const unsigned char *b = sp->buf;
    for (; base + 64 <= sp->cut; base += 64) {
        uint64_t m, low, cm = 0;
        masks64_avx2(b + base, &m, &low);
        if (low != m)
            cm = ctrl64_sse2(b + base);
        BLOCK_LINES();
    }
    return scan_tail(sp, kn, r, base, s, i, bad);
}
#endif

static int use_avx2 = 0;

static int
scan(const Spec *sp, const Known *kn, Result *r)
{
#ifdef HAVE_AVX2_CLONE
    if (use_avx2)
        return scan_avx2(sp, kn, r);
#endif
    return scan_sse2(sp, kn, r);
}

/* The known lines' table, from their '\n'-joined bytes. */
static int
known_build(Known *kn, const unsigned char *p, Py_ssize_t n)
{
    memset(kn, 0, sizeof *kn);
    if (n == 0)
        return 0;
    size_t count = 1;
    for (Py_ssize_t k = 0; k < n; k++)
        count += p[k] == '\n';
    size_t cap = 8;
    while (cap < 2 * count)
        cap *= 2;
    kn->slots = calloc(cap, sizeof(KnownLine));
    if (kn->slots == NULL)
        return -1;
    kn->mask = cap - 1;
    Py_ssize_t s = 0;
    while (s <= n) {
        const unsigned char *nlp = memchr(p + s, '\n', (size_t)(n - s));
        Py_ssize_t e = nlp ? nlp - p : n;
        uint64_t h = hash_bytes(p + s, e - s);
        size_t slot = h & kn->mask;
        while (kn->slots[slot].ptr != NULL)
            slot = (slot + 1) & kn->mask;
        kn->slots[slot] = (KnownLine){p + s, e - s, h};
        if (e - s > kn->longest)
            kn->longest = e - s;
        s = e + 1;
    }
    return 0;
}

static int
table(PyObject *obj, const unsigned char **out, Py_ssize_t want, const char *what)
{
    if (!PyBytes_Check(obj) || (want >= 0 && PyBytes_GET_SIZE(obj) != want)) {
        PyErr_Format(PyExc_ValueError, "%s: expected %zd bytes", what, want);
        return -1;
    }
    *out = (const unsigned char *)PyBytes_AS_STRING(obj);
    return 0;
}

/* A shape from its prefix (bytes: 0 for a digit) and its level offsets; -1 with an exception. */
static int
shape_init(Shape *sh, PyObject *prefix, PyObject *offsets, int has_levels, Py_ssize_t size)
{
    memset(sh, 0, sizeof *sh);
    if (!PyBytes_Check(prefix)) {
        PyErr_SetString(PyExc_TypeError, "a prefix must be bytes");
        return -1;
    }
    sh->prefix = (const unsigned char *)PyBytes_AS_STRING(prefix);
    sh->plen = PyBytes_GET_SIZE(prefix);
    sh->has_levels = has_levels;
    if (sh->plen > 16) {
        PyErr_SetString(PyExc_ValueError, "prefix longer than 16 bytes");
        return -1;
    }
#ifdef __SSE2__
    {
        unsigned char val[16] = {0}, exact[16] = {0};
        for (Py_ssize_t k = 0; k < sh->plen; k++) {
            if (sh->prefix[k]) {
                val[k] = sh->prefix[k];
                exact[k] = 0xFF;
            }
            else {
                sh->p_digits |= 1u << k;
            }
        }
        sh->p_val = _mm_loadu_si128((const __m128i *)val);
        sh->p_exact = _mm_loadu_si128((const __m128i *)exact);
    }
#endif
    PyObject *offs = PySequence_Fast(offsets, "offsets must be a sequence");
    if (offs == NULL)
        return -1;
    Py_ssize_t noff = PySequence_Fast_GET_SIZE(offs);
    for (Py_ssize_t k = 0; k < noff && sh->noffsets < MAX_OFFSETS; k++) {
        long off = PyLong_AsLong(PySequence_Fast_GET_ITEM(offs, k));
        if (off == -1 && PyErr_Occurred()) {
            Py_DECREF(offs);
            return -1;
        }
        if (off > 0 && off < size)
            sh->offsets[sh->noffsets++] = (int)off;
    }
    Py_DECREF(offs);
    for (int x = 1; x < sh->noffsets; x++) /* sorted: the first level found is the leftmost */
        for (int y = x; y > 0 && sh->offsets[y - 1] > sh->offsets[y]; y--) {
            int t = sh->offsets[y];
            sh->offsets[y] = sh->offsets[y - 1];
            sh->offsets[y - 1] = t;
        }
    sh->omask = 0;
    if (sh->noffsets > 0 && sh->offsets[sh->noffsets - 1] - sh->offsets[0] < 16)
        for (int k = 0; k < sh->noffsets; k++)
            sh->omask |= 1u << (sh->offsets[k] - sh->offsets[0]);
    if (getenv("SAFLA_DIAG_NO_SIMD_LEVELS")) /* the tests compare both ways */
        sh->omask = 0;
    return 0;
}

PyDoc_STRVAR(scan_doc,
"scan(buf, cut, prefix, offsets, words, levels, left, right, initial, ctrl, tags, fast,\n"
"     has_levels, bare, known, memo=None, order_base=0, shapes=(), stop_run=0)\n"
"--\n\n"
"Scan buf[:cut] (whole lines). Returns (lines, garbage_lines, records, counts, slow, stats,\n"
"keys): counts per level index; slow as packed int64 (line, start, end) triples; keys the\n"
"distinct template keys of the chosen records, '\\n'-joined in order of first record, and\n"
"stats eight packed int64 per key: count, first (line, start, end), last (line, start, end),\n"
"and where the first record ends with its continuation lines (-1: left to the parser).\n"
"With a memo (see memo()), the keys are folded into it (the latest record's order is\n"
"order_base + its line) and only those new to it are returned.\n"
"shapes: more (prefix, offsets, has_levels[, gap]) tried after the first, in order (gap: bytes\n"
"from the level word to the message). With stop_run, the\n"
"scan stops before that many lines in a row that no shape reads; the eighth item returned is\n"
"where (their first line's start), or -1 when it read to cut.");

static PyObject *
py_scan(PyObject *self, PyObject *args)
{
    Py_buffer view;
    Py_ssize_t cut;
    PyObject *prefix, *offsets, *words, *levels, *left, *right, *initial, *ctrl, *tags, *known;
    PyObject *memo_obj = Py_None, *shapes_obj = NULL, *shapes_seq = NULL;
    long long order_base = 0;
    Py_ssize_t stop_run = 0;
    int fast, has_levels, bare;
    if (!PyArg_ParseTuple(args, "y*nSOSSSSSSSpppS|OLOn", &view, &cut, &prefix, &offsets, &words,
                          &levels, &left, &right, &initial, &ctrl, &tags, &fast, &has_levels,
                          &bare, &known, &memo_obj, &order_base, &shapes_obj, &stop_run))
        return NULL;
    Memo *memo = NULL;
    Out fresh_keys = {0}, fresh_picks = {0};
    Known kn;
    memset(&kn, 0, sizeof kn);
    Spec sp;
    memset(&sp, 0, sizeof sp);
    Result r;
    memset(&r, 0, sizeof r);
    PyObject *res = NULL;
    sp.buf = view.buf;
    sp.size = view.len;
    sp.cut = cut;
    sp.fast = fast;
    sp.bare = bare;
    sp.stop_run = stop_run > 0 ? stop_run : 0;
    r.stopped = -1;
    r.open = -1;
    if (memo_obj != Py_None) {
        memo = PyCapsule_GetPointer(memo_obj, MEMO_NAME);
        if (memo == NULL)
            goto done;
    }
    if (cut < 0 || cut > view.len) {
        PyErr_SetString(PyExc_ValueError, "cut outside the buffer");
        goto done;
    }
    if (table(left, &sp.left, 256, "left") < 0 ||
        table(right, &sp.right, 256, "right") < 0 ||
        table(initial, &sp.initial, 256, "initial") < 0 || table(ctrl, &sp.ctrl, 256, "ctrl") < 0 ||
        table(tags, &sp.tags, -1, "tags") < 0)
        goto done;
    for (int c = 0; c < 256; c++) {
        /* The sixteen-byte tests hard-code these two tables: they must be what they test. */
        int left_char = c == ' ' || c == '\t' || c == '[' || c == '<' || c == '(' || c == '"';
        if ((sp.ctrl[c] != 0) != is_ctrl((unsigned char)c) || (sp.left[c] != 0) != left_char) {
            PyErr_SetString(PyExc_ValueError, "ctrl or left is not the kernel's table");
            goto done;
        }
    }
    sp.nlevels = (int)PyBytes_GET_SIZE(tags);
    if (sp.nlevels > MAX_LEVELS) {
        PyErr_SetString(PyExc_ValueError, "too many levels");
        goto done;
    }
    if (shape_init(&sp.shapes[0], prefix, offsets, has_levels, view.len) < 0)
        goto done;
    sp.nshapes = 1;
    if (shapes_obj != NULL && shapes_obj != Py_None) {
        shapes_seq = PySequence_Fast(shapes_obj, "shapes must be a sequence");
        if (shapes_seq == NULL)
            goto done;
        /* shapes_seq holds the shapes' bytes until this call returns. */
        Py_ssize_t n = PySequence_Fast_GET_SIZE(shapes_seq);
        for (Py_ssize_t k = 0; k < n && sp.nshapes < MAX_SHAPES; k++) {
            PyObject *pre, *offs;
            int lv;
            Py_ssize_t gap = 0;
            if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(shapes_seq, k), "SOp|n", &pre, &offs,
                                  &lv, &gap) ||
                shape_init(&sp.shapes[sp.nshapes], pre, offs, lv, view.len) < 0)
                goto done;
            if (gap < -1 || gap > 64) {
                PyErr_SetString(PyExc_ValueError, "a shape's gap must be -1 to 64");
                goto done;
            }
            sp.shapes[sp.nshapes++].gap = gap;
        }
    }
    Py_ssize_t nw = PyBytes_GET_SIZE(words) / 8;
    if (PyBytes_GET_SIZE(words) % 8 || nw > MAX_WORDS || PyBytes_GET_SIZE(levels) != nw) {
        PyErr_SetString(PyExc_ValueError, "words and levels do not match");
        goto done;
    }
    sp.nwords = (int)nw;
    memcpy(sp.words, PyBytes_AS_STRING(words), (size_t)nw * 8);
    memcpy(sp.word_level, PyBytes_AS_STRING(levels), (size_t)nw);
    memset(sp.word_index, 0xFF, sizeof sp.word_index);
    for (int k = 0; k < sp.nwords; k++) {
        if (sp.word_level[k] >= sp.nlevels || (k && sp.words[k - 1] >= sp.words[k])) {
            PyErr_SetString(PyExc_ValueError, "words must be sorted, their levels known");
            goto done;
        }
        unsigned slot = word_slot(sp.words[k]);
        while (sp.word_index[slot] >= 0)
            slot = (slot + 1) & (WORD_SLOTS - 1);
        sp.word_index[slot] = (short)k;
    }
    if (known_build(&kn, (const unsigned char *)PyBytes_AS_STRING(known),
                    PyBytes_GET_SIZE(known)) < 0) {
        PyErr_NoMemory();
        goto done;
    }
    int rc = 0;
    Py_BEGIN_ALLOW_THREADS
    if (memo != NULL && memo->nitems)
        rc = keys_presize(&r, memo); /* a chunk holds about the keys the last ones did */
    if (rc == 0)
        rc = scan(&sp, &kn, &r);
    if (rc == 0 && memo != NULL) /* the memo is its file's alone: no other thread touches it */
        rc = memo_fold(memo, &sp, &r, order_base, &fresh_keys, &fresh_picks);
    Py_END_ALLOW_THREADS
    if (rc < 0) {
        PyErr_NoMemory();
        goto done;
    }
    PyObject *counts = PyTuple_New(sp.nlevels);
    if (counts == NULL)
        goto done;
    for (int k = 0; k < sp.nlevels; k++) {
        PyObject *c = PyLong_FromLongLong(r.counts[k]);
        if (c == NULL) {
            Py_DECREF(counts);
            goto done;
        }
        PyTuple_SET_ITEM(counts, k, c);
    }
    const Out *picks = memo ? &fresh_picks : &r.picks, *keys = memo ? &fresh_keys : &r.keys;
    res = Py_BuildValue("LLLNy#y#y#n", (long long)r.lines, (long long)r.garbage,
                        (long long)r.records, counts, r.slow.data ? r.slow.data : "",
                        (Py_ssize_t)r.slow.len, picks->data ? picks->data : "",
                        (Py_ssize_t)picks->len, keys->data ? keys->data : "",
                        (Py_ssize_t)keys->len, r.stopped);
done:
    Py_XDECREF(shapes_seq);
    free(fresh_keys.data);
    free(fresh_picks.data);
    free(kn.slots);
    free(r.slots);
    free(r.slow.data);
    free(r.picks.data);
    free(r.keys.data);
    PyBuffer_Release(&view);
    return res;
}

PyDoc_STRVAR(collapse_doc,
"collapse(data)\n--\n\n"
"data with every run of hex digits that holds a decimal digit collapsed to one '0' (the\n"
"template key of _mine.shape, for bytes), computed without the GIL.");

static PyObject *
py_collapse(PyObject *self, PyObject *arg)
{
    (void)self;
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    const unsigned char *b = view.buf;
    Py_ssize_t n = view.len, w = 0;
    unsigned char *o = malloc(n > 0 ? (size_t)n : 1);
    if (o == NULL) {
        PyBuffer_Release(&view);
        return PyErr_NoMemory();
    }
    Py_BEGIN_ALLOW_THREADS
    w = (char *)collapse_into(b, n, 0, n, (char *)o) - (char *)o;
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    PyObject *res = PyBytes_FromStringAndSize((const char *)o, w);
    free(o);
    return res;
}

/* -- masking the common template keys (_mine.mask, for text that needs only two of its rules) -- */

/* Python's str.isspace() in ASCII, which is also what \s matches in a str pattern. */
static inline int
is_space(unsigned char c)
{
    return c == ' ' || (c >= 9 && c <= 13) || (c >= 0x1c && c <= 0x1f);
}

/* _mine._DELIM: \s = : , ; ( ) [ ] { } " ' < > | (a table: this is asked of every byte) */
static unsigned char delim_table[256];

static void
delim_init(void)
{
    for (int c = 0; c < 256; c++)
        delim_table[c] = (unsigned char)(is_space((unsigned char)c) ||
                                         (c != 0 && strchr("=:,;()[]{}\"'<>|", c) != NULL));
}

static inline int
is_delim(unsigned char c)
{
    return delim_table[c];
}

/* Where needle[0:m] first occurs in t[0:n], or NULL (memmem is not everywhere). */
static const unsigned char *
find_sub(const unsigned char *t, Py_ssize_t n, const char *needle, Py_ssize_t m)
{
    if (m == 0)
        return t;
    for (Py_ssize_t k = 0; k + m <= n; k++) {
        const unsigned char *p = memchr(t + k, (unsigned char)needle[0], (size_t)(n - m - k + 1));
        if (p == NULL)
            return NULL;
        k = p - t;
        if (memcmp(p, needle, (size_t)m) == 0)
            return p;
    }
    return NULL;
}

#define HOLDS_MAX_WORDS 64

/* Whether a \0-separated list of lower-case words has one inside t[0:n]: one pass over t, trying
   at each byte only the words that begin with it (a search per word costs a pass per word). */
static int
holds_any(const unsigned char *t, Py_ssize_t n, const char *words, Py_ssize_t wlen)
{
    int first[256], next[HOLDS_MAX_WORDS];
    Py_ssize_t at[HOLDS_MAX_WORDS];
    size_t len[HOLDS_MAX_WORDS];
    int nw = 0;
    for (int c = 0; c < 256; c++)
        first[c] = -1;
    for (Py_ssize_t a = 0; a < wlen;) {
        const char *w = words + a;
        size_t l = strnlen(w, (size_t)(wlen - a));
        if (l) {
            if (nw == HOLDS_MAX_WORDS) { /* a longer list: a search per word */
                if (find_sub(t, n, w, (Py_ssize_t)l) != NULL)
                    return 1;
            } else {
                unsigned char c0 = (unsigned char)w[0];
                at[nw] = a;
                len[nw] = l;
                next[nw] = first[c0];
                first[c0] = nw++;
            }
        }
        a += (Py_ssize_t)l + 1;
    }
    for (Py_ssize_t k = 0; k < n; k++)
        for (int j = first[t[k]]; j >= 0; j = next[j])
            if (len[j] <= (size_t)(n - k) &&
                (len[j] == 1 || t[k + 1] == (unsigned char)words[at[j] + 1]) &&
                memcmp(t + k, words + at[j], len[j]) == 0)
                return 1;
    return 0;
}

PyDoc_STRVAR(mask_simple_doc,
"mask_simple(key, start, auth, cores)\n--\n\n"
"_mine.mask(key[start:].decode()) for the keys it can answer alone, else None: ASCII text that\n"
"redact() leaves as it is (none of the \\0-separated auth words in it lower-cased, and, when it\n"
"holds '=' or ':', none of the secret cores in it lower-cased without '_', '.' and '-') and that\n"
"none of the masking rules before the last two could match (no '/', ':\\\\', '0.0.0.0', '::',\n"
"five ':' or '0x'). Those two rules mask each run of non-delimiters that is a signed 0 or 0.0\n"
"as <NUM> and any other holding a 0 as <*>; then blanks collapse and the ends are stripped.\n"
"Keys over 64 KiB are left to mask() too.");

#define MASK_SIMPLE_MAX (1 << 16)

static PyObject *
py_mask_simple(PyObject *self, PyObject *args)
{
    (void)self;
    Py_buffer view;
    Py_ssize_t start;
    const char *auth, *cores;
    Py_ssize_t auth_len, cores_len;
    if (!PyArg_ParseTuple(args, "y*ny#y#", &view, &start, &auth, &auth_len, &cores, &cores_len))
        return NULL;
    PyObject *res = NULL;
    unsigned char *low = NULL, *out = NULL;
    const unsigned char *b = (const unsigned char *)view.buf;
    Py_ssize_t n = view.len;
    if (start < 0 || start > n) {
        PyErr_SetString(PyExc_ValueError, "start outside the key");
        goto done;
    }
    b += start;
    n -= start;
    /* str.lstrip(_LEAD): " \t-:|]>)" */
    while (n > 0 && b[0] != 0 && strchr(" \t-:|]>)", b[0]) != NULL) {
        b++;
        n--;
    }
    if (n > MASK_SIMPLE_MAX) /* its output may be five times as long: mask() takes a long key */
        goto answer_none;
    Py_ssize_t colons = 0;
    int eq_or_colon = 0, zero = 0;
    for (Py_ssize_t k = 0; k < n; k++) {
        unsigned char c = b[k];
        if (c >= 128 || c == '/')
            goto answer_none;
        if (c == ':') {
            colons++;
            eq_or_colon = 1;
            if (k + 1 < n && (b[k + 1] == ':' || b[k + 1] == '\\'))
                goto answer_none;
        }
        else if (c == '=')
            eq_or_colon = 1;
        else if (c == '0') {
            zero = 1;
            if (k + 1 < n && (b[k + 1] == 'x' || b[k + 1] == 'X'))
                goto answer_none;
        }
    }
    if (colons >= 5 || find_sub(b, n, "0.0.0.0", 7) != NULL)
        goto answer_none;
    low = malloc(n > 0 ? (size_t)n : 1);
    out = malloc(n > 0 ? (size_t)(5 * n) : 1); /* "0" -> "<NUM>" at most */
    if (low == NULL || out == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t k = 0; k < n; k++)
        low[k] = (unsigned char)((b[k] >= 'A' && b[k] <= 'Z') ? b[k] + 32 : b[k]);
    if (holds_any(low, n, auth, auth_len))
        goto answer_none;
    if (eq_or_colon) {
        Py_ssize_t m = 0;
        for (Py_ssize_t k = 0; k < n; k++)
            if (low[k] != '_' && low[k] != '.' && low[k] != '-')
                low[m++] = low[k];
        if (holds_any(low, m, cores, cores_len))
            goto answer_none;
    }
    /* The two rules, one token at a time, and blanks ([ \t\r\n]+) collapsed to one space. */
    Py_ssize_t w = 0, k = 0;
    while (k < n) {
        unsigned char c = b[k];
        if (is_delim(c)) {
            if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
                while (k < n && (b[k] == ' ' || b[k] == '\t' || b[k] == '\r' || b[k] == '\n'))
                    k++;
                out[w++] = ' ';
                continue;
            }
            out[w++] = c;
            k++;
            continue;
        }
        Py_ssize_t e = k;
        while (e < n && !is_delim(b[e]))
            e++;
        const unsigned char *t = b + k;
        Py_ssize_t len = e - k;
        if (zero && memchr(t, '0', (size_t)len) != NULL) {
            Py_ssize_t q = (t[0] == '-' || t[0] == '+') ? 1 : 0;
            int num = (len == q + 1 && t[q] == '0') ||
                      (len == q + 3 && t[q] == '0' && t[q + 1] == '.' && t[q + 2] == '0');
            const char *ph = num ? "<NUM>" : "<*>";
            size_t pl = num ? 5 : 3;
            memcpy(out + w, ph, pl);
            w += (Py_ssize_t)pl;
        }
        else {
            memcpy(out + w, t, (size_t)len);
            w += len;
        }
        k = e;
    }
    /* str.strip() */
    Py_ssize_t lo = 0, hi = w;
    while (lo < hi && is_space(out[lo]))
        lo++;
    while (hi > lo && is_space(out[hi - 1]))
        hi--;
    res = PyUnicode_DecodeASCII((const char *)out + lo, hi - lo, NULL);
    goto done;
answer_none:
    res = Py_NewRef(Py_None);
done:
    free(low);
    free(out);
    PyBuffer_Release(&view);
    return res;
}

PyDoc_STRVAR(memo_merge_doc,
"memo_merge(into, other)\n--\n\n"
"Add the keys of other (the memo of a later part of the same file) to into: records summed, the\n"
"latest record's order and head and the first record kept from whichever memo has them; other\n"
"is emptied. The two must keep heads of the same size.");

static PyObject *
py_memo_merge(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *into_obj, *other_obj;
    if (!PyArg_ParseTuple(args, "OO", &into_obj, &other_obj))
        return NULL;
    Memo *d = PyCapsule_GetPointer(into_obj, MEMO_NAME);
    if (d == NULL)
        return NULL;
    Memo *o = PyCapsule_GetPointer(other_obj, MEMO_NAME);
    if (o == NULL)
        return NULL;
    if (d == o || d->head_bytes != o->head_bytes) {
        PyErr_SetString(PyExc_ValueError, "two memos keeping heads of the same size are needed");
        return NULL;
    }
    for (size_t k = 0; k < o->nitems; k++) {
        const MemoItem *s = &o->items[k];
        int added;
        MemoItem *it = memo_item(d, o->keys.data + s->at, s->len, s->hash, &added);
        if (it == NULL)
            return PyErr_NoMemory();
        it->count += s->count;
        if (added || s->last_order > it->last_order) {
            memcpy(d->heads + (size_t)(it - d->items) * (size_t)d->head_bytes,
                   o->heads + k * (size_t)o->head_bytes, (size_t)s->head_len);
            it->head_len = s->head_len;
            it->last_order = s->last_order;
        }
        if (added || s->first_order < it->first_order) {
            it->first_order = s->first_order;
            it->first_line = -1; /* Python's, unless the other memo kept the record */
            if (s->first_line >= 0 &&
                memo_keep_first(d, it, o->firsts.data + s->first_at, s->first_len,
                                s->first_line) < 0)
                return PyErr_NoMemory();
        }
    }
    memo_clear(o);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(memo_size_doc,
"memo_size(memo)\n--\n\n"
"How many keys the memo holds, and the bytes of their first records.");

static PyObject *
py_memo_size(PyObject *self, PyObject *capsule)
{
    (void)self;
    Memo *m = PyCapsule_GetPointer(capsule, MEMO_NAME);
    if (m == NULL)
        return NULL;
    return Py_BuildValue("nn", (Py_ssize_t)m->nitems, (Py_ssize_t)m->firsts.len);
}

static PyMethodDef methods[] = {
    {"scan", py_scan, METH_VARARGS, scan_doc},
    {"memo", py_memo, METH_VARARGS, memo_doc},
    {"memo_items", py_memo_items, METH_VARARGS, memo_items_doc},
    {"memo_size", py_memo_size, METH_O, memo_size_doc},
    {"memo_merge", py_memo_merge, METH_VARARGS, memo_merge_doc},
    {"collapse", py_collapse, METH_O, collapse_doc},
    {"mask_simple", py_mask_simple, METH_VARARGS, mask_simple_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef_Slot slots[] = {
#ifdef Py_mod_multiple_interpreters
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
#endif
#ifdef Py_GIL_DISABLED
    {Py_mod_gil, Py_MOD_GIL_NOT_USED},
#endif
    {0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_native", "The log scanner's native kernel.", 0, methods, slots,
};

PyMODINIT_FUNC
PyInit__native(void)
{
    delim_init();
#ifdef HAVE_AVX2_CLONE
    __builtin_cpu_init();
    const char *no = getenv("SAFLA_DIAG_NO_AVX2"); /* the tests compare both scans */
    use_avx2 = __builtin_cpu_supports("avx2") && !(no && *no && strcmp(no, "0") != 0);
#endif
    return PyModuleDef_Init(&module);
}
