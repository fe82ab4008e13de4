/*
 * DKIM message indexing and canonicalization (RFC 6376 3.4), and the small
 * encoders the rest of the DKIM code shares.
 *
 * A line ends at LF; a CR right before that LF belongs to the line end.
 * Line ends are always written as CRLF, so a message stored with bare LF
 * hashes as it did on the wire.  A CR anywhere else is an ordinary byte.
 */
#include "auth/dkim_int.h"

#include <openssl/evp.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const EVP_MD *sha256_md;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;

static void sha256_fetch(void)
{
    sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
    if (sha256_md == NULL)
        sha256_md = EVP_sha256();
}

const EVP_MD *dkim_sha256(void)
{
    pthread_once(&sha256_once, sha256_fetch);
    return sha256_md;
}

static bool is_wsp(char c)
{
    return c == ' ' || c == '\t';
}

/* End of the line starting at pos: index of its LF, or len. */
static size_t line_end(const char *msg, size_t len, size_t pos)
{
    const char *nl = memchr(msg + pos, '\n', len - pos);
    return nl ? (size_t)(nl - msg) : len;
}

/* The index grows by doubling up to DKIM_FIELDS_MAX: a usual header has a
 * few dozen fields, and zeroing room for the cap would cost more than
 * indexing them. */
static int add_field(struct dkim_msg *m, size_t off, size_t len, size_t name_len)
{
    if (m->n_fields >= DKIM_FIELDS_MAX) {
        m->truncated = true;
        return 0;
    }
    if (m->n_fields == m->fields_alloc) {
        int want = m->fields_alloc ? 2 * m->fields_alloc : 64;
        if (want > DKIM_FIELDS_MAX)
            want = DKIM_FIELDS_MAX;
        struct dkim_field *f = realloc(m->fields, (size_t)want * sizeof(*f));
        if (f == NULL)
            return -1;
        m->fields = f;
        m->fields_alloc = want;
    }
    m->fields[m->n_fields++] = (struct dkim_field){ off, len, name_len };
    return 0;
}

/* Walks the header line by line.  A field is a line with a colon plus the
 * continuation lines (starting with WSP) after it.  The header ends at the
 * first empty line; without one, the whole message is header. */
int dkim_msg_index(struct dkim_msg *m, const char *msg, size_t len)
{
    memset(m, 0, sizeof(*m));
    m->msg = msg;
    m->len = len;
    m->body_off = len;
    size_t pos = 0, cur = 0, cur_name = 0;
    bool in_field = false;
    while (pos < len) {
        size_t nl = line_end(msg, len, pos);
        size_t next = nl < len ? nl + 1 : len;
        size_t content_end = (nl > pos && nl < len && msg[nl - 1] == '\r') ? nl - 1 : nl;
        if (content_end == pos && nl < len) {          /* empty line: body follows */
            m->body_off = next;
            break;
        }
        if (next > DKIM_HEADER_MAX) {
            m->truncated = true;
            break;
        }
        if (is_wsp(msg[pos]) && in_field) {
            pos = next;
            continue;
        }
        if (in_field && add_field(m, cur, pos - cur, cur_name) < 0)
            return -1;
        in_field = false;
        const char *colon = memchr(msg + pos, ':', content_end - pos);
        if (colon != NULL && colon > msg + pos && !is_wsp(msg[pos])) {
            in_field = true;
            cur = pos;
            cur_name = (size_t)(colon - (msg + pos));
        }
        pos = next;
    }
    if (in_field && add_field(m, cur, pos - cur, cur_name) < 0)
        return -1;
    return 0;
}

void dkim_msg_free(struct dkim_msg *m)
{
    free(m->fields);
    m->fields = NULL;
    m->n_fields = m->fields_alloc = 0;
}

static char ascii_lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
}

bool dkim_field_is(const struct dkim_msg *m, const struct dkim_field *f, const char *name,
                   size_t name_len)
{
    size_t n = f->name_len;
    const char *p = m->msg + f->off;
    while (n > 0 && is_wsp(p[n - 1]))
        n--;
    if (n != name_len)
        return false;
    for (size_t i = 0; i < n; i++)
        if (p[i] != name[i] && ascii_lower(p[i]) != ascii_lower(name[i]))
            return false;
    return true;
}

int dkim_msg_count(const struct dkim_msg *m, const char *name, size_t name_len)
{
    int n = 0;
    for (int i = 0; i < m->n_fields; i++)
        if (dkim_field_is(m, &m->fields[i], name, name_len))
            n++;
    return n;
}

/* Simple: the field unchanged but for line ends written as CRLF (RFC 6376
 * 3.4.1).  A field cut off at the end of the message gets its CRLF. */
static int canon_header_simple(const char *f, size_t len, struct strbuf *out)
{
    size_t start = 0;
    while (start < len) {
        const char *nl = memchr(f + start, '\n', len - start);
        size_t end = nl ? (size_t)(nl - f) : len;
        size_t content = (nl && end > start && f[end - 1] == '\r') ? end - 1 : end;
        if (strbuf_append(out, f + start, content - start) < 0 || strbuf_append(out, "\r\n", 2) < 0)
            return -1;
        start = nl ? end + 1 : len;
    }
    return 0;
}

static size_t squeeze_wsp(const char *in, size_t n, const char *limit, char *out,
                          unsigned *prev_wsp);

/* Relaxed (RFC 6376 3.4.2): name lower-cased, WSP around the colon gone,
 * value unfolded, WSP runs made one SP, trailing WSP removed, CRLF added.
 * The value goes line by line (the CRLF of each fold dropped) through the
 * WSP squeezer, in pieces that fit buf; a run carries over from one line
 * to the next, so "a \r\n b" is "a b".  A SP that ends a piece is held
 * until something follows it. */
static int canon_header_relaxed(const char *f, size_t len, struct strbuf *out)
{
    char buf[512 + 16];
    const size_t piece = 512;
    size_t n = 0;
    const char *colon = memchr(f, ':', len);
    size_t name_len = colon ? (size_t)(colon - f) : len;
    while (name_len > 0 && is_wsp(f[name_len - 1]))
        name_len--;
    for (size_t i = 0; i < name_len; i++) {
        buf[n++] = ascii_lower(f[i]);
        if (n == piece) {
            if (strbuf_append(out, buf, n) < 0)
                return -1;
            n = 0;
        }
    }
    buf[n++] = ':';
    if (strbuf_append(out, buf, n) < 0)
        return -1;
    unsigned prev = 1;                             /* WSP after the colon goes */
    bool held_sp = false;
    const char *end = f + len;
    for (const char *p = colon ? colon + 1 : end; p < end;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *line_end = nl ? nl : end;
        const char *content_end = (nl && nl > p && nl[-1] == '\r') ? nl - 1 : line_end;
        for (const char *q = p; q < content_end;) {
            size_t take = (size_t)(content_end - q) < piece ? (size_t)(content_end - q) : piece;
            size_t k = squeeze_wsp(q, take, end, buf, &prev);
            q += take;
            if (k == 0)
                continue;
            if (held_sp && strbuf_append(out, " ", 1) < 0)
                return -1;
            held_sp = buf[k - 1] == ' ';
            if (strbuf_append(out, buf, held_sp ? k - 1 : k) < 0)
                return -1;
        }
        p = nl ? nl + 1 : end;
    }
    return strbuf_append(out, "\r\n", 2);
}

int dkim_canon_header(enum dkim_canon c, const char *field, size_t len, struct strbuf *out)
{
    return c == DKIM_CANON_RELAXED ? canon_header_relaxed(field, len, out)
                                   : canon_header_simple(field, len, out);
}

void dkim_body_init(struct dkim_body_canon *bc, enum dkim_canon c, bool has_limit, uint64_t limit,
                    dkim_sink_fn *sink, void *arg)
{
    memset(bc, 0, offsetof(struct dkim_body_canon, out));
    bc->c = c;
    bc->has_limit = has_limit;
    bc->limit = limit;
    bc->sink = sink;
    bc->arg = arg;
}

static void body_out_flush(struct dkim_body_canon *bc)
{
    if (bc->out_len > 0)
        bc->sink(bc->arg, bc->out, bc->out_len);
    bc->out_len = 0;
}

/* Every canonical byte passes here: counted, and handed on below l=.
 * Short pieces are gathered in bc->out so the hash sees few large
 * updates; a piece of DKIM_BODY_DIRECT bytes or more goes to the sink as
 * it is, uncopied. */
static void body_emit(struct dkim_body_canon *bc, const char *data, size_t len)
{
    size_t give = len;
    if (bc->has_limit) {
        uint64_t room = bc->total < bc->limit ? bc->limit - bc->total : 0;
        if (give > room)
            give = (size_t)room;
    }
    bc->total += len;
    if (give == 0)
        return;
    if (give >= DKIM_BODY_DIRECT || bc->out_len + give > sizeof(bc->out)) {
        body_out_flush(bc);
        if (give >= DKIM_BODY_DIRECT) {
            bc->sink(bc->arg, data, give);
            return;
        }
    }
    memcpy(bc->out + bc->out_len, data, give);
    bc->out_len += give;
}

static void body_flush_crlf(struct dkim_body_canon *bc)
{
    static const char crlfs[] = "\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n";
    while (bc->pending_crlf > 0) {
        uint64_t k = bc->pending_crlf < 16 ? bc->pending_crlf : 16;
        body_emit(bc, crlfs, (size_t)k * 2);
        bc->pending_crlf -= k;
    }
}

/* Canonical bytes that are not line ends: the line ends held back before
 * them were not trailing after all, so they are written first. */
static void body_content(struct dkim_body_canon *bc, const char *data, size_t len)
{
    if (bc->pending_crlf > 0)
        body_flush_crlf(bc);
    body_emit(bc, data, len);
    bc->emitted = true;
}

/* Input bytes s..e that are canonical as they stand.  CRLFs at their end
 * are held back (they vanish if only empty lines follow, RFC 6376 3.4.3,
 * 3.4.4); whatever precedes them ends in an ordinary byte. */
static void body_span(struct dkim_body_canon *bc, const char *s, const char *e)
{
    uint64_t crlf = 0;
    while (e - s >= 2 && e[-1] == '\n' && e[-2] == '\r') {
        e -= 2;
        crlf++;
    }
    if (e > s)
        body_content(bc, s, (size_t)(e - s));
    bc->pending_crlf += crlf;
}

static void body_line_end(struct dkim_body_canon *bc)
{
    bc->pending_wsp = false;          /* relaxed: WSP at a line's end goes */
    bc->pending_crlf++;
}

/* A relaxed WSP run held back, now known to be inside a line: one SP. */
static void body_wsp_out(struct dkim_body_canon *bc)
{
    if (bc->pending_wsp) {
        bc->pending_wsp = false;
        body_content(bc, " ", 1);
    }
}

/* Settles what the previous piece left undecided (a CR that may start a
 * CRLF, a WSP run that may end a line) from the first bytes of this one.
 * Returns how many bytes it used; at most a WSP run and two more. */
static size_t body_resume(struct dkim_body_canon *bc, const char *data, size_t len)
{
    size_t i = 0;
    while (i < len && (bc->pending_cr || bc->pending_wsp)) {
        char c = data[i];
        if (bc->pending_cr) {
            bc->pending_cr = false;
            if (c == '\n') {
                body_line_end(bc);
                i++;
            } else {                               /* the CR was an ordinary byte */
                body_wsp_out(bc);
                body_content(bc, "\r", 1);
            }
        } else if (is_wsp(c)) {
            i++;
        } else if (c == '\n') {
            body_line_end(bc);
            i++;
        } else if (c == '\r') {
            bc->pending_cr = true;
            i++;
        } else {
            body_wsp_out(bc);
        }
    }
    return i;
}

/* Whether the byte at p may need more than copying: for simple a CR or LF
 * that is not half of a CRLF (or a CR ending the piece); for relaxed also
 * every other byte up to SP but a SP followed by a byte above SP (the
 * single space between words).  start..end is the piece being fed. */
static inline bool body_special(const char *p, const char *start, const char *end, bool relaxed)
{
    unsigned char c = (unsigned char)*p;
    if (c == '\r')
        return p + 1 == end || p[1] != '\n';
    if (c == '\n')
        return p == start || p[-1] != '\r';
    if (!relaxed || c > ' ')
        return false;
    if (c == ' ')
        return p + 1 == end || (unsigned char)p[1] <= ' ';
    return true;
}

#if defined(__SSE2__) && !defined(DKIM_BODY_SWAR)   /* DKIM_BODY_SWAR: test the portable path */
#include <emmintrin.h>
#define BODY_STRIDE 16

/* Bit k set when byte p[k] may be special, as body_special() decides;
 * needs p[-1] .. p[16] readable. */
static inline unsigned body_special_mask(const char *p, bool relaxed)
{
    __m128i x = _mm_loadu_si128((const __m128i *)(const void *)p);
    __m128i nx = _mm_loadu_si128((const __m128i *)(const void *)(p + 1));
    __m128i px = _mm_loadu_si128((const __m128i *)(const void *)(p - 1));
    __m128i cr = _mm_cmpeq_epi8(x, _mm_set1_epi8('\r'));
    __m128i lf = _mm_cmpeq_epi8(x, _mm_set1_epi8('\n'));
    __m128i crlf = _mm_or_si128(_mm_and_si128(cr, _mm_cmpeq_epi8(nx, _mm_set1_epi8('\n'))),
                                _mm_and_si128(lf, _mm_cmpeq_epi8(px, _mm_set1_epi8('\r'))));
    __m128i cand;
    if (relaxed) {
        __m128i sp = _mm_set1_epi8(' ');
        __m128i low = _mm_cmpeq_epi8(_mm_min_epu8(x, sp), x);
        __m128i nlow = _mm_cmpeq_epi8(_mm_min_epu8(nx, sp), nx);
        __m128i word_sp = _mm_andnot_si128(nlow, _mm_cmpeq_epi8(x, sp));
        cand = _mm_andnot_si128(word_sp, low);
    } else {
        cand = _mm_or_si128(cr, lf);
    }
    return (unsigned)_mm_movemask_epi8(_mm_andnot_si128(crlf, cand));
}
#else
#define BODY_STRIDE 8
#define ONES  0x0101010101010101ull
#define HIGHS 0x8080808080808080ull

static inline uint64_t load64(const char *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof(v));
    return v;
}
/* High bit of each byte of x that equals c (exact: no carries cross bytes). */
static inline uint64_t bytes_eq(uint64_t x, unsigned char c)
{
    uint64_t y = x ^ (ONES * c);
    return ~(((y & ~HIGHS) + ~HIGHS) | y | ~HIGHS);
}
/* High bit of each byte of x that is at most SP. */
static inline uint64_t bytes_low(uint64_t x)
{
    return ~((x | HIGHS) - ONES * 0x21) & ~x & HIGHS;
}

static inline unsigned body_special_mask(const char *p, bool relaxed)
{
    uint64_t x = load64(p), nx = load64(p + 1), px = load64(p - 1);
    uint64_t cr = bytes_eq(x, '\r'), lf = bytes_eq(x, '\n');
    uint64_t crlf = (cr & bytes_eq(nx, '\n')) | (lf & bytes_eq(px, '\r'));
    uint64_t cand = relaxed ? bytes_low(x) & ~(bytes_eq(x, ' ') & ~bytes_low(nx)) : cr | lf;
    cand &= ~crlf;
    unsigned m = 0;
    for (int k = 0; k < 8; k++) {
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        m |= (unsigned)((cand >> (8 * k + 7)) & 1) << k;
#else
        m |= (unsigned)((cand >> (8 * (7 - k) + 7)) & 1) << k;
#endif
    }
    return m;
}
#endif

/* The first byte at or after p that body_special() picks, or end. */
static inline __attribute__((always_inline)) const char *
body_scan(const char *p, const char *start, const char *end, bool relaxed)
{
    if (p == start && p < end) {
        if (body_special(p, start, end, relaxed))
            return p;
        p++;
    }
    while (end - p > BODY_STRIDE) {               /* p[-1] .. p[BODY_STRIDE] readable */
        unsigned m = body_special_mask(p, relaxed);
        if (m != 0)
            return p + __builtin_ctz(m);
        p += BODY_STRIDE;
    }
    while (p < end && !body_special(p, start, end, relaxed))
        p++;
    return p;
}

/* Relaxed: a WSP run from q (first byte after it r).  Returns false when
 * the piece ends before the run's fate is known (state left pending). */
static bool body_wsp_run(struct dkim_body_canon *bc, const char *span, const char *q,
                         const char *end, const char **r_out)
{
    const char *r = q + 1;
    while (r < end && is_wsp(*r))
        r++;
    bool line_end = r < end && (*r == '\n' || (*r == '\r' && (r + 1 == end || r[1] == '\n')));
    if (*q == ' ' && r == q + 1 && r < end && !line_end) {
        *r_out = NULL;                             /* one SP inside a line: already canonical */
        return true;
    }
    body_span(bc, span, q);
    *r_out = r;
    if (r == end || (*r == '\r' && r + 1 == end)) {
        bc->pending_wsp = true;                    /* ends the line or not: the next piece tells */
        if (r < end)
            bc->pending_cr = true;
        return false;
    }
    if (!line_end)
        body_content(bc, " ", 1);                  /* 3.4.4: a WSP run inside a line is one SP */
    return true;                                   /* at a line's end it goes */
}

/* Squeezing WSP runs (relaxed body and header values): each run becomes
 * one SP.  On x86 with SSSE3 sixteen bytes at a time: a byte is dropped
 * when it and the byte before it are WSP, and the kept bytes are packed
 * with PSHUFB, eight at a time through a table of the 256 patterns.
 * Elsewhere a loop without a branch per byte. */
static size_t squeeze_scalar(const char *in, size_t n, char *out, unsigned *prev_wsp)
{
    size_t k = 0;
    unsigned prev = *prev_wsp;
    for (size_t i = 0; i < n; i++) {
        char c = in[i];
        unsigned w = (c == ' ') | (c == '\t');
        out[k] = w ? ' ' : c;
        k += !(w & prev);
        prev = w;
    }
    *prev_wsp = prev;
    return k;
}

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__)) && \
    !defined(DKIM_BODY_SWAR)
#include <tmmintrin.h>
#define HAVE_SQUEEZE_SSSE3 1

static uint64_t pack_index[256];   /* byte j: position of the j-th set bit, else 0x80 */
static unsigned char pack_count[256];
static bool squeeze_ssse3_ok;
static pthread_once_t squeeze_once = PTHREAD_ONCE_INIT;

static void squeeze_setup(void)
{
    for (unsigned m = 0; m < 256; m++) {
        uint64_t idx = 0x8080808080808080ull;
        unsigned n = 0;
        for (unsigned b = 0; b < 8; b++)
            if (m & (1u << b)) {
                idx &= ~(0xffull << (8 * n));
                idx |= (uint64_t)b << (8 * n);
                n++;
            }
        pack_index[m] = idx;
        pack_count[m] = (unsigned char)n;
    }
    __builtin_cpu_init();
    squeeze_ssse3_ok = __builtin_cpu_supports("ssse3");
}

/* Needs in[0 .. 16*ceil(n/16)) readable and out with n + 16 bytes room. */
__attribute__((target("ssse3"))) static size_t squeeze_ssse3(const char *in, size_t n, char *out,
                                                              unsigned *prev_wsp)
{
    size_t k = 0;
    const __m128i sp = _mm_set1_epi8(' '), tab = _mm_set1_epi8('\t'), eight = _mm_set1_epi8(8);
    __m128i carry = _mm_cvtsi32_si128(*prev_wsp ? 0xff : 0);
    for (size_t i = 0; i < n; i += 16) {
        __m128i x = _mm_loadu_si128((const __m128i *)(const void *)(in + i));
        __m128i w = _mm_or_si128(_mm_cmpeq_epi8(x, sp), _mm_cmpeq_epi8(x, tab));
        __m128i xs = _mm_or_si128(_mm_andnot_si128(w, x), _mm_and_si128(w, sp));
        __m128i drop = _mm_and_si128(w, _mm_or_si128(_mm_slli_si128(w, 1), carry));
        unsigned keep = ~(unsigned)_mm_movemask_epi8(drop) & 0xffffu;
        if (n - i < 16)
            keep &= (1u << (n - i)) - 1;           /* the last block: bytes past n go */
        unsigned lo = keep & 0xff, hi = keep >> 8;
        __m128i sl = _mm_loadl_epi64((const __m128i *)(const void *)&pack_index[lo]);
        __m128i sh = _mm_add_epi8(_mm_loadl_epi64((const __m128i *)(const void *)&pack_index[hi]),
                                  eight);
        _mm_storeu_si128((__m128i *)(void *)(out + k), _mm_shuffle_epi8(xs, sl));
        k += pack_count[lo];
        _mm_storeu_si128((__m128i *)(void *)(out + k), _mm_shuffle_epi8(xs, sh));
        k += pack_count[hi];
        carry = _mm_srli_si128(w, 15);
    }
    if (n > 0)
        *prev_wsp = in[n - 1] == ' ' || in[n - 1] == '\t';
    return k;
}
#endif

#ifdef HAVE_SQUEEZE_SSSE3
/* One block of squeeze_lines_ssse3 at b (b[-1] .. b[17] readable), the
 * bytes of valid only: packs the kept ones at out, returns how many;
 * ORs the bare LFs into *bad. */
__attribute__((target("ssse3"), always_inline)) static inline size_t
squeeze_lines_block(const char *b, unsigned valid, char *out, __m128i *bad)
{
    const __m128i sp = _mm_set1_epi8(' '), tab = _mm_set1_epi8('\t'), eight = _mm_set1_epi8(8);
    const __m128i cr = _mm_set1_epi8('\r'), lf = _mm_set1_epi8('\n');
    __m128i x = _mm_loadu_si128((const __m128i *)(const void *)b);
    __m128i n1 = _mm_loadu_si128((const __m128i *)(const void *)(b + 1));
    __m128i n2 = _mm_loadu_si128((const __m128i *)(const void *)(b + 2));
    __m128i pv = _mm_loadu_si128((const __m128i *)(const void *)(b - 1));
    *bad = _mm_or_si128(*bad, _mm_andnot_si128(_mm_cmpeq_epi8(pv, cr), _mm_cmpeq_epi8(x, lf)));
    __m128i w = _mm_or_si128(_mm_cmpeq_epi8(x, sp), _mm_cmpeq_epi8(x, tab));
    __m128i nw = _mm_or_si128(_mm_cmpeq_epi8(n1, sp), _mm_cmpeq_epi8(n1, tab));
    __m128i ncrlf = _mm_and_si128(_mm_cmpeq_epi8(n1, cr), _mm_cmpeq_epi8(n2, lf));
    __m128i drop = _mm_and_si128(w, _mm_or_si128(nw, ncrlf));
    __m128i xs = _mm_max_epu8(x, _mm_and_si128(w, sp));      /* HTAB becomes SP */
    unsigned keep = ~(unsigned)_mm_movemask_epi8(drop) & valid;
    unsigned lo = keep & 0xff, hi = keep >> 8;
    __m128i sl = _mm_loadl_epi64((const __m128i *)(const void *)&pack_index[lo]);
    __m128i sh = _mm_loadl_epi64((const __m128i *)(const void *)&pack_index[hi]);
    sh = _mm_add_epi8(sh, eight);
    _mm_storeu_si128((__m128i *)(void *)out, _mm_shuffle_epi8(xs, sl));
    size_t k = pack_count[lo];
    _mm_storeu_si128((__m128i *)(void *)(out + k), _mm_shuffle_epi8(xs, sh));
    return k + pack_count[hi];
}

/* A block whose neighbours may not be readable goes through a copy. */
__attribute__((target("ssse3"))) static size_t squeeze_lines_edge(const char *b, size_t left,
                                                                   const char *start,
                                                                   const char *limit, char *out,
                                                                   __m128i *bad)
{
    char pad[48];
    size_t take = (size_t)(limit - b) < 18 ? (size_t)(limit - b) : 18;
    unsigned valid = left < 16 ? (1u << left) - 1 : 0xffffu;
    memset(pad, 0, sizeof(pad));
    pad[0] = b > start ? b[-1] : 0;
    memcpy(pad + 1, b, take);
    __m128i mine = _mm_setzero_si128();
    size_t k = squeeze_lines_block(pad + 1, valid, out, &mine);
    if ((unsigned)_mm_movemask_epi8(mine) & valid)           /* bytes past the lines do not count */
        *bad = _mm_set1_epi8(-1);
    return k;
}

/* Relaxed canonical form of whole lines in[0..n) (n just past a LF) in
 * one pass, sixteen bytes at a time: a WSP byte goes when the next byte is
 * WSP (a run keeps its last byte, made SP) or the next two are CRLF (WSP
 * at a line's end); every other byte stays.  Lines that end up empty stay
 * as CRLF: the caller holds the trailing ones back.  Returns false, with
 * nothing decided, when a bare LF (which needs a CR added) is met.  start
 * and limit bound what may be read; out needs n + 16 bytes of room. */
__attribute__((target("ssse3"))) static bool squeeze_lines_ssse3(const char *in, size_t n,
                                                                  const char *start,
                                                                  const char *limit, char *out,
                                                                  size_t *k_out)
{
    __m128i bad = _mm_setzero_si128();
    size_t k = 0, i = 0;
    if (n > 0 && in == start) {                    /* no byte before in */
        k += squeeze_lines_edge(in, n, start, limit, out, &bad);
        i = 16;
    }
    /* Whole blocks with b[-1] .. b[17] inside the piece. */
    size_t room = (size_t)(limit - in);
    for (; i + 16 <= n && i + 18 <= room; i += 16)
        k += squeeze_lines_block(in + i, 0xffffu, out + k, &bad);
    for (; i < n; i += 16)
        k += squeeze_lines_edge(in + i, n - i, start, limit, out + k, &bad);
    if (_mm_movemask_epi8(bad) != 0)
        return false;
    *k_out = k;
    return true;
}
#endif

/* Squeezes in[0..n) into out (n + 16 bytes of room); in may be read up to
 * limit.  *prev_wsp: whether the byte before in was WSP, updated. */
static size_t squeeze_wsp(const char *in, size_t n, const char *limit, char *out,
                          unsigned *prev_wsp)
{
#ifdef HAVE_SQUEEZE_SSSE3
    pthread_once(&squeeze_once, squeeze_setup);
    if (squeeze_ssse3_ok) {
        size_t whole = (size_t)(limit - in) >= ((n + 15) & ~(size_t)15) ? n : n & ~(size_t)15;
        size_t k = squeeze_ssse3(in, whole, out, prev_wsp);
        return k + squeeze_scalar(in + whole, n - whole, out + k, prev_wsp);
    }
#else
    (void)limit;
#endif
    return squeeze_scalar(in, n, out, prev_wsp);
}

/* Relaxed, the rest of a line that has a WSP run to change (q..nl, nl its
 * LF; the piece may be read up to end): WSP runs made one SP, a trailing
 * one dropped, the line end held back.  A line with one odd run usually
 * has more, and this costs less than stopping at each. */
#define BODY_LINE_MAX 1024
static void body_dirty_line(struct dkim_body_canon *bc, const char *q, const char *nl,
                            const char *end)
{
    char tmp[BODY_LINE_MAX + 16];
    size_t n = (size_t)(nl - q);
    if (n > 0 && q[n - 1] == '\r')
        n--;                                       /* the CR of CRLF */
    unsigned prev = 0;
    size_t k = squeeze_wsp(q, n, end, tmp, &prev);
    if (k > 0 && tmp[k - 1] == ' ')
        k--;                                       /* 3.4.4: WSP at a line's end goes */
    if (k > 0)
        body_content(bc, tmp, k);
    bc->pending_crlf++;
}

/* Commits k canonical bytes written at o + gap to the output, after the
 * line ends held back (written into the gap before them). */
static void body_commit(struct dkim_body_canon *bc, char *o, size_t gap, size_t k)
{
    for (size_t i = 0; i < gap; i += 2)
        memcpy(o + i, "\r\n", 2);
    bc->out_len += gap + k;
    bc->total += gap + k;
    bc->pending_crlf = 0;
    bc->emitted = true;
}

/* body_dirty_line for a whole line s..nl (l= absent, at most 8 line ends held),
 * squeezed straight into the output buffer after room for the held line
 * ends, which are written there only if the line proves not to be empty.
 * Returns whether squeezing changed the line (the next one is then likely
 * to need it too). */
#define BODY_GAP_MAX 8
static bool body_dirty_line_out(struct dkim_body_canon *bc, const char *s, const char *nl,
                                const char *end)
{
    size_t n = (size_t)(nl - s);
    if (n > 0 && s[n - 1] == '\r')
        n--;                                       /* the CR of CRLF */
    size_t gap = 2 * (size_t)bc->pending_crlf;
    if (sizeof(bc->out) - bc->out_len < gap + n + 16)
        body_out_flush(bc);
    unsigned prev = 0;
    char *o = bc->out + bc->out_len;
    size_t k = squeeze_wsp(s, n, end, o + gap, &prev);
    if (k > 0 && o[gap + k - 1] == ' ')
        k--;                                       /* 3.4.4: WSP at a line's end goes */
    if (k > 0)
        body_commit(bc, o, gap, k);
    bc->pending_crlf++;
    return k != n;
}

/* Relaxed, no l=: whole lines from ls (up to BODY_BLOCK bytes, ending at
 * a LF) canonicalized in one pass into the output buffer, after room for
 * the line ends held before them; line ends at the end are held in turn.
 * Returns the first byte not done, or NULL when this cannot be used here
 * (no SSSE3, no LF in reach, a bare LF, too many line ends held). */
#define BODY_BLOCK 4096
static const char *body_block(struct dkim_body_canon *bc, const char *ls, const char *start,
                              const char *end)
{
#ifdef HAVE_SQUEEZE_SSSE3
    pthread_once(&squeeze_once, squeeze_setup);
    if (!squeeze_ssse3_ok || bc->pending_crlf > BODY_GAP_MAX)
        return NULL;
    size_t look = end - ls < BODY_BLOCK ? (size_t)(end - ls) : BODY_BLOCK;
    const char *last = memrchr(ls, '\n', look);
    if (last == NULL)
        return NULL;
    size_t n = (size_t)(last + 1 - ls), gap = 2 * (size_t)bc->pending_crlf, k;
    if (sizeof(bc->out) - bc->out_len < gap + n + 16)
        body_out_flush(bc);
    char *o = bc->out + bc->out_len;
    if (!squeeze_lines_ssse3(ls, n, start, end, o + gap, &k))
        return NULL;
    uint64_t crlf = 0;
    while (k >= 2 && o[gap + k - 1] == '\n' && o[gap + k - 2] == '\r') {
        k -= 2;                                    /* maybe trailing: held back */
        crlf++;
    }
    if (k > 0)
        body_commit(bc, o, gap, k);
    bc->pending_crlf += crlf;
    return last + 1;
#else
    (void)bc;
    (void)ls;
    (void)start;
    (void)end;
    return NULL;
#endif
}

/* Copies canonical runs of the input straight through (body_span) and
 * handles the few bytes body_scan() stops at; whatever is undecided at the
 * end of the piece stays in bc's pending fields, so pieces cut anywhere
 * give the same output. */
void dkim_body_feed(struct dkim_body_canon *bc, const char *data, size_t len)
{
    bool relaxed = bc->c == DKIM_CANON_RELAXED;
    const char *start = data, *end = data + len;
    const char *p = data + body_resume(bc, data, len), *span = p;
    while (p < end) {
        const char *q = relaxed ? body_scan(p, start, end, true) : body_scan(p, start, end, false);
        if (q == end)
            break;
        char c = *q;
        if (c == '\n') {
            if (q > start && q[-1] == '\r') {      /* half of a CRLF: the scan skips these */
                p = q + 1;
                continue;
            }
            body_span(bc, span, q);                /* a bare LF ends a line like CRLF */
            bc->pending_crlf++;
            span = p = q + 1;
        } else if (c == '\r') {
            if (q + 1 == end) {
                body_span(bc, span, q);
                bc->pending_cr = true;
                return;
            }
            p = q + (q[1] == '\n' ? 2 : 1);        /* a bare CR is an ordinary byte */
        } else if (relaxed && is_wsp(c)) {
            size_t look = end - q < BODY_LINE_MAX ? (size_t)(end - q) : BODY_LINE_MAX;
            const char *nl = memchr(q, '\n', look);
            if (nl != NULL && !bc->has_limit) {
                /* Squeeze the line whole, and the lines after it while
                 * they need it.  Whole lines before it in the span go
                 * first, as they are. */
                const char *ls = q > span ? memrchr(span, '\n', (size_t)(q - span)) : NULL;
                ls = ls != NULL ? ls + 1 : span;
                body_span(bc, span, ls);
                const char *done = body_block(bc, ls, start, end);
                if (done != NULL) {
                    span = p = done;
                    continue;
                }
                if (bc->pending_crlf > BODY_GAP_MAX) {      /* many empty lines held */
                    body_span(bc, ls, q);
                    body_dirty_line(bc, q, nl, end);
                    span = p = nl + 1;
                    continue;
                }
                for (;;) {
                    bool changed = body_dirty_line_out(bc, ls, nl, end);
                    ls = nl + 1;
                    if (!changed || ls == end || bc->pending_crlf > BODY_GAP_MAX)
                        break;
                    look = end - ls < BODY_LINE_MAX ? (size_t)(end - ls) : BODY_LINE_MAX;
                    if ((nl = memchr(ls, '\n', look)) == NULL)
                        break;
                }
                span = p = ls;
                continue;
            }
            if (nl != NULL) {
                body_span(bc, span, q);
                body_dirty_line(bc, q, nl, end);
                span = p = nl + 1;
                continue;
            }
            const char *r;
            if (!body_wsp_run(bc, span, q, end, &r))
                return;
            if (r == NULL) {
                p = q + 1;
            } else {
                span = p = r;
            }
        } else {
            p = q + 1;                             /* another control character */
        }
    }
    body_span(bc, span, end);
}

/* Simple: exactly one CRLF ends the body, even an empty one (3.4.3).
 * Relaxed: an empty body stays empty, any other ends in one CRLF (3.4.4,
 * erratum 1384). */
void dkim_body_final(struct dkim_body_canon *bc)
{
    if (bc->pending_cr) {
        bc->pending_cr = false;
        body_wsp_out(bc);
        body_content(bc, "\r", 1);
    }
    bc->pending_wsp = false;
    if (bc->c == DKIM_CANON_SIMPLE || bc->emitted) {
        bc->pending_crlf = 1;
        body_flush_crlf(bc);
    }
    body_out_flush(bc);
}

/* Base64 digit values; B64_SKIP for the FWS bytes skipped, B64_PAD for
 * '=', B64_BAD for the rest. */
#define B64_SKIP 64
#define B64_PAD  65
#define B64_BAD  255
static const unsigned char b64_values[256] = {
    255, 255, 255, 255, 255, 255, 255, 255, 255,  64,  64, 255, 255,  64, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
     64, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,  62, 255, 255, 255,  63,
     52,  53,  54,  55,  56,  57,  58,  59,  60,  61, 255, 255, 255,  65, 255, 255,
    255,   0,   1,   2,   3,   4,   5,   6,   7,   8,   9,  10,  11,  12,  13,  14,
     15,  16,  17,  18,  19,  20,  21,  22,  23,  24,  25, 255, 255, 255, 255, 255,
    255,  26,  27,  28,  29,  30,  31,  32,  33,  34,  35,  36,  37,  38,  39,  40,
     41,  42,  43,  44,  45,  46,  47,  48,  49,  50,  51, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
};

/* Four digits at a time while the text runs clean (the usual b= and p=),
 * one at a time around FWS and padding. */
int dkim_b64_decode(const char *s, size_t len, unsigned char *out, size_t out_size,
                    size_t *out_len)
{
    const unsigned char *u = (const unsigned char *)s;
    uint32_t acc = 0;
    int bits = 0, pad = 0;
    size_t n = 0, chars = 0;
    for (size_t i = 0; i < len; i++) {
        if (bits == 0 && pad == 0 && len - i >= 4 && out_size - n >= 3) {
            unsigned a = b64_values[u[i]], b = b64_values[u[i + 1]];
            unsigned c = b64_values[u[i + 2]], d = b64_values[u[i + 3]];
            if ((a | b | c | d) < 64) {
                uint32_t v = a << 18 | b << 12 | c << 6 | d;
                out[n++] = (unsigned char)(v >> 16);
                out[n++] = (unsigned char)(v >> 8);
                out[n++] = (unsigned char)v;
                chars += 4;
                i += 3;
                continue;
            }
        }
        unsigned v = b64_values[u[i]];
        if (v == B64_SKIP)
            continue;
        if (v == B64_PAD) {
            pad++;
            chars++;
            continue;
        }
        if (v == B64_BAD || pad > 0)
            return -1;
        chars++;
        acc = (acc << 6) | v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (n >= out_size)
                return -1;
            out[n++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    if (pad > 2 || chars % 4 != 0 || (pad > 0 && bits != 2 * pad) || (pad == 0 && bits != 0))
        return -1;
    *out_len = n;
    return 0;
}

size_t dkim_b64_encode(const unsigned char *in, size_t len, char *out)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < len)
            v |= in[i + 2];
        out[o++] = tab[(v >> 18) & 63];
        out[o++] = tab[(v >> 12) & 63];
        out[o++] = i + 1 < len ? tab[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < len ? tab[v & 63] : '=';
    }
    out[o] = '\0';
    return o;
}

bool dkim_domain_within(const char *domain, const char *parent)
{
    size_t dl = strlen(domain), pl = strlen(parent);
    if (pl == 0 || dl < pl)
        return false;
    if (strcasecmp(domain + dl - pl, parent) != 0)
        return false;
    return dl == pl || domain[dl - pl - 1] == '.';
}
