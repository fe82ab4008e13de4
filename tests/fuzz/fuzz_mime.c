/*
 * libFuzzer target for the MIME engine: parses the input as a message,
 * checks the tree (offsets in range and ordered, counts right), formats
 * BODYSTRUCTURE, BODY and ENVELOPE, resolves section numbers, decodes every
 * part; then feeds the input to the header-value parsers and checks that
 * the streaming decoders give the same output whole and split.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "imap/imap_bodystructure.h"
#include "mime/mime.h"
#include "mime/mime_codec.h"

#define CAP (64u << 20)
#define ASSERT(c) do { if (!(c)) __builtin_trap(); } while (0)

static size_t count_lf(const char *d, size_t a, size_t b)
{
    size_t n = 0;
    for (size_t i = a; i < b; i++)
        n += d[i] == '\n';
    return n;
}

static void check_tree(const struct mime_message *m)
{
    unsigned count = 0;

    ASSERT(m->root->hdr_offset == 0 && m->root->body_end == m->len);
    for (const struct mime_part *p = m->root; p != NULL; p = mime_part_next(p)) {
        count++;
        ASSERT(p->hdr_offset <= p->hdr_end && p->hdr_end <= p->body_offset &&
               p->body_offset <= p->body_end && p->body_end <= m->len);
        ASSERT(p->depth < MIME_MAX_DEPTH);
        ASSERT(p->body_lines == count_lf(m->data, p->body_offset, p->body_end));
        ASSERT(p->hdr_lines == count_lf(m->data, p->hdr_offset, p->body_offset));
        size_t size = p->body_end - p->body_offset;
        ASSERT(p->body_vsize >= size && p->body_vsize - size <= p->body_lines);
        if (p->flags & MIME_PART_MESSAGE)
            ASSERT(p->children != NULL && p->children->next == NULL &&
                   p->children->hdr_offset == p->body_offset);
        for (const struct mime_part *c = p->children; c != NULL; c = c->next) {
            ASSERT(c->parent == p && c->depth == p->depth + 1);
            ASSERT(c->hdr_offset >= p->body_offset && c->body_end <= p->body_end);
            ASSERT(c->next == NULL || c->body_end <= c->next->hdr_offset);
        }
    }
    ASSERT(count == m->part_count && count <= MIME_MAX_PARTS);
}

static void format_all(const struct mime_message *m)
{
    struct strbuf sb;
    static const char *const sections[] = { "", "1", "2", "1.1", "1.2", "2.1", "1.1.1", "3.2.1" };

    strbuf_init(&sb, CAP);
    ASSERT(imap_bodystructure_write(m, m->root, true, &sb) == 0);
    strbuf_reset(&sb);
    ASSERT(imap_bodystructure_write(m, m->root, false, &sb) == 0);
    strbuf_reset(&sb);
    ASSERT(imap_envelope_write(m, m->root, &sb) == 0);
    for (const struct mime_part *p = m->root; p != NULL; p = mime_part_next(p)) {
        strbuf_reset(&sb);
        if (p->flags & MIME_PART_MESSAGE)
            ASSERT(imap_envelope_write(m, p->children, &sb) == 0);
        strbuf_reset(&sb);
        ASSERT(mime_part_decode(m, p, true, &sb) == 0);
        char ct[128];
        mime_part_content_type(p, ct, sizeof(ct));
    }
    for (size_t i = 0; i < sizeof(sections) / sizeof(sections[0]); i++) {
        const struct mime_part *p = imap_section_part(m, sections[i]);
        if (p != NULL) {
            strbuf_reset(&sb);
            ASSERT(imap_bodystructure_write(m, p, true, &sb) == 0);
        }
    }
    strbuf_free(&sb);
}

/* The input as header values. */
static void values(const char *d, size_t n)
{
    struct strbuf sb;
    struct mime_param *params;
    struct mime_address *list;

    strbuf_init(&sb, CAP);
    int c = mime_params_parse(d, n, &params);
    ASSERT(c >= 0);
    if (c > 0) {
        ASSERT(mime_param_get_utf8(params, (size_t)c, params[0].name, &sb) >= 0);
    }
    free(params);
    ASSERT(mime_address_parse(d, n, true, &list) == 0);
    for (struct mime_address *a = list; a != NULL; a = a->next)
        ASSERT(a->domain != NULL || a->name == NULL);
    mime_address_free(list);
    strbuf_reset(&sb);
    ASSERT(mime_rfc2047_decode(d, n, &sb) == 0);
    strbuf_reset(&sb);
    ASSERT(mime_rfc2231_decode(d, n, &sb) == 0);
    strbuf_reset(&sb);
    ASSERT(mime_header_unfold(d, n, true, &sb) == 0);
    strbuf_free(&sb);
}

/* Whole versus split at a data-dependent point: same output. */
static void streams(const char *d, size_t n)
{
    size_t cut = n > 0 ? (unsigned char)d[0] % (n + 1) : 0;
    struct strbuf a, b;
    struct mime_b64 b1, b2;
    struct mime_qp q1, q2;

    strbuf_init(&a, CAP);
    strbuf_init(&b, CAP);
    mime_b64_init(&b1);
    mime_b64_init(&b2);
    mime_b64_decode(&b1, d, n, &a);
    mime_b64_decode(&b2, d, cut, &b);
    mime_b64_decode(&b2, d + cut, n - cut, &b);
    ASSERT(a.len == b.len && (a.len == 0 || memcmp(a.data, b.data, a.len) == 0));

    strbuf_reset(&a);
    strbuf_reset(&b);
    mime_qp_init(&q1);
    mime_qp_init(&q2);
    mime_qp_decode(&q1, d, n, &a);
    mime_qp_finish(&q1, &a);
    for (size_t i = 0; i < n; i++)      /* byte by byte */
        mime_qp_decode(&q2, d + i, 1, &b);
    mime_qp_finish(&q2, &b);
    ASSERT(a.len == b.len && (a.len == 0 || memcmp(a.data, b.data, a.len) == 0));

    static const char *const charsets[] = { "utf-8", "iso-2022-jp", "koi8-r", "shift_jis" };
    const char *cs = charsets[n % 4];
    struct mime_charset_conv *c1 = mime_charset_conv_new(cs);
    struct mime_charset_conv *c2 = mime_charset_conv_new(cs);
    strbuf_reset(&a);
    strbuf_reset(&b);
    mime_charset_conv_feed(c1, d, n, &a);
    mime_charset_conv_finish(c1, &a);
    mime_charset_conv_feed(c2, d, cut, &b);
    mime_charset_conv_feed(c2, d + cut, n - cut, &b);
    mime_charset_conv_finish(c2, &b);
    /* output is valid UTF-8 in any case */
    struct strbuf v;
    strbuf_init(&v, CAP);
    mime_utf8_sanitize(a.data, a.len, &v);
    ASSERT(v.len == a.len);
    strbuf_free(&v);
    mime_charset_conv_free(c1);
    mime_charset_conv_free(c2);
    strbuf_free(&a);
    strbuf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* a private copy, so reads past the end are caught */
    char *d = malloc(size ? size : 1);
    if (d == NULL)
        return 0;
    memcpy(d, data, size);
    struct mime_message *m = mime_parse(d, size);
    ASSERT(m != NULL);
    check_tree(m);
    format_all(m);
    mime_message_free(m);
    if (size < 8192) {
        values(d, size);
        streams(d, size);
    }
    free(d);
    return 0;
}
