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

static int add_field(struct dkim_msg *m, size_t off, size_t len, size_t name_len)
{
    if (m->n_fields >= DKIM_FIELDS_MAX) {
        m->truncated = true;
        return 0;
    }
    if (m->fields == NULL) {
        m->fields = calloc(DKIM_FIELDS_MAX, sizeof(*m->fields));
        if (m->fields == NULL)
            return -1;
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
    m->n_fields = 0;
}

bool dkim_field_is(const struct dkim_msg *m, const struct dkim_field *f, const char *name,
                   size_t name_len)
{
    size_t n = f->name_len;
    const char *p = m->msg + f->off;
    while (n > 0 && is_wsp(p[n - 1]))
        n--;
    return n == name_len && strncasecmp(p, name, n) == 0;
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

/* Relaxed (RFC 6376 3.4.2): name lower-cased, WSP around the colon gone,
 * value unfolded, WSP runs made one SP, trailing WSP removed, CRLF added. */
static int canon_header_relaxed(const char *f, size_t len, struct strbuf *out)
{
    char buf[512];
    size_t n = 0;
    const char *colon = memchr(f, ':', len);
    size_t name_len = colon ? (size_t)(colon - f) : len;
    while (name_len > 0 && is_wsp(f[name_len - 1]))
        name_len--;
    for (size_t i = 0; i < name_len; i++) {
        char c = f[i];
        buf[n++] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
        if (n == sizeof(buf)) {
            if (strbuf_append(out, buf, n) < 0)
                return -1;
            n = 0;
        }
    }
    if (strbuf_append(out, buf, n) < 0 || strbuf_append(out, ":", 1) < 0)
        return -1;
    n = 0;
    bool wsp = false, started = false;
    for (size_t i = colon ? (size_t)(colon - f) + 1 : len; i < len; i++) {
        char c = f[i];
        if (c == '\n' || (c == '\r' && i + 1 < len && f[i + 1] == '\n'))
            continue;                                  /* unfold */
        if (is_wsp(c)) {
            wsp = started;
            continue;
        }
        if (n + 2 > sizeof(buf)) {
            if (strbuf_append(out, buf, n) < 0)
                return -1;
            n = 0;
        }
        if (wsp)
            buf[n++] = ' ';
        buf[n++] = c;
        wsp = false;
        started = true;
    }
    if (strbuf_append(out, buf, n) < 0 || strbuf_append(out, "\r\n", 2) < 0)
        return -1;
    return 0;
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
    bc->line_start = true;
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

/* Every canonical byte passes here: counted, and handed on below l=. */
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
    if (bc->out_len + give > sizeof(bc->out)) {
        body_out_flush(bc);
        if (give >= sizeof(bc->out)) {
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

/* One byte that is not part of a line end.  Line ends seen before it were
 * not trailing after all, so they are written first. */
static void body_byte(struct dkim_body_canon *bc, char c)
{
    bc->line_start = false;
    if (bc->c == DKIM_CANON_RELAXED && is_wsp(c)) {
        bc->pending_wsp = true;
        return;
    }
    body_flush_crlf(bc);
    if (bc->pending_wsp) {
        body_emit(bc, " ", 1);
        bc->pending_wsp = false;
    }
    body_emit(bc, &c, 1);
    bc->emitted = true;
}

static void body_line_end(struct dkim_body_canon *bc)
{
    bc->pending_wsp = false;          /* relaxed: WSP at a line's end goes */
    bc->pending_crlf++;
    bc->line_start = true;
}

/* The same result as the byte-by-byte path for one whole line (n bytes
 * before its LF) that starts at a line start, without l=: the common case,
 * written straight into the output buffer. */
static void body_line_fast(struct dkim_body_canon *bc, const char *p, size_t n)
{
    if (n > 0 && p[n - 1] == '\r')
        n--;                                       /* the CR of CRLF */
    if (bc->c == DKIM_CANON_RELAXED)
        while (n > 0 && is_wsp(p[n - 1]))
            n--;                                   /* 3.4.4: WSP at line end goes */
    if (n == 0) {
        bc->pending_crlf++;                        /* maybe trailing: held back */
        return;
    }
    body_flush_crlf(bc);
    bc->emitted = true;
    if (bc->c == DKIM_CANON_SIMPLE ||
        (memchr(p, '\t', n) == NULL && memmem(p, n, "  ", 2) == NULL)) {
        body_emit(bc, p, n);                       /* already canonical: the usual line */
    } else {
        /* Each piece fits the buffer whole, so the loop needs no checks;
         * the output is never longer than the input. */
        size_t i = 0;
        while (i < n) {
            size_t piece = n - i < sizeof(bc->out) ? n - i : sizeof(bc->out);
            if (sizeof(bc->out) - bc->out_len < piece)
                body_out_flush(bc);
            char *o = bc->out + bc->out_len, *o0 = o;
            const char *q = p + i, *end = p + i + piece;
            while (q < end) {
                char ch = *q++;
                if (ch == ' ' || ch == '\t') {      /* 3.4.4: a WSP run becomes one SP */
                    while (q < end && (*q == ' ' || *q == '\t'))
                        q++;
                    ch = ' ';
                }
                *o++ = ch;
            }
            bc->out_len += (size_t)(o - o0);
            bc->total += (uint64_t)(o - o0);
            i += (size_t)(q - (p + i));
            /* A run cut at the piece's end continues in the next piece:
             * skip the rest of it, its SP is already out. */
            if (o > o0 && o[-1] == ' ')
                while (i < n && is_wsp(p[i]))
                    i++;
        }
    }
    bc->pending_crlf++;
}

/* Runs of ordinary bytes (no CR, LF or WSP) are passed on in one piece;
 * the state machine handles the rest byte by byte. */
void dkim_body_feed(struct dkim_body_canon *bc, const char *data, size_t len)
{
    size_t i = 0;
    while (i < len) {
        if (bc->line_start && !bc->pending_cr && !bc->pending_wsp && !bc->has_limit) {
            const char *nl = memchr(data + i, '\n', len - i);
            if (nl != NULL) {
                body_line_fast(bc, data + i, (size_t)(nl - (data + i)));
                i = (size_t)(nl - data) + 1;
                continue;
            }
        }
        char c = data[i];
        if (bc->pending_cr) {
            bc->pending_cr = false;
            if (c == '\n') {
                body_line_end(bc);
                i++;
                continue;
            }
            body_byte(bc, '\r');
        }
        if (c == '\r') {
            bc->pending_cr = true;
            i++;
        } else if (c == '\n') {
            body_line_end(bc);
            i++;
        } else if (is_wsp(c)) {
            body_byte(bc, c);
            i++;
        } else {
            size_t j = i + 1;
            while (j < len && data[j] != '\r' && data[j] != '\n' && !is_wsp(data[j]))
                j++;
            body_byte(bc, c);
            if (j > i + 1)
                body_emit(bc, data + i + 1, j - i - 1);
            i = j;
        }
    }
}

/* Simple: exactly one CRLF ends the body, even an empty one (3.4.3).
 * Relaxed: an empty body stays empty, any other ends in one CRLF (3.4.4,
 * erratum 1384). */
void dkim_body_final(struct dkim_body_canon *bc)
{
    if (bc->pending_cr) {
        bc->pending_cr = false;
        body_byte(bc, '\r');
    }
    if (bc->c == DKIM_CANON_SIMPLE || bc->emitted) {
        bc->pending_crlf = 1;
        body_flush_crlf(bc);
    }
    body_out_flush(bc);
}

static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

int dkim_b64_decode(const char *s, size_t len, unsigned char *out, size_t out_size,
                    size_t *out_len)
{
    uint32_t acc = 0;
    int bits = 0, pad = 0;
    size_t n = 0, chars = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == ' ' || c == '\t' || c == '\r' || c == '\n')
            continue;
        if (c == '=') {
            pad++;
            chars++;
            continue;
        }
        int v = b64_value(c);
        if (v < 0 || pad > 0)
            return -1;
        chars++;
        acc = (acc << 6) | (uint32_t)v;
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
