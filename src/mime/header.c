/*
 * Header fields: iteration over a header block with exact offsets, and
 * unfolding (RFC 5322 2.2.3).  Everything works on the message buffer in
 * place; only unfolding copies.
 */
#include <string.h>
#include <strings.h>
#include "mime/mime.h"
#include "mime/mime_private.h"

void mime_header_iter_init(struct mime_header_iter *it, const char *data,
                           size_t len, size_t start)
{
    memset(it, 0, sizeof(*it));
    it->data = data;
    it->len = len;
    it->pos = start <= len ? start : len;
}

/* Offset just past the line starting at pos (after its LF, or len). */
static size_t line_end(const char *d, size_t len, size_t pos)
{
    const char *lf = memchr(d + pos, '\n', len - pos);
    return lf != NULL ? (size_t)(lf - d) + 1 : len;
}

/* Length of the line break ending at end (1 for LF, 2 for CRLF, 0 when
 * the line ends at the end of the data without one). */
static size_t eol_len(const char *d, size_t start, size_t end)
{
    if (end == start || d[end - 1] != '\n')
        return 0;
    return end - start >= 2 && d[end - 2] == '\r' ? 2 : 1;
}

static void finish(struct mime_header_iter *it, size_t header_end,
                   size_t body_offset, bool has_body)
{
    it->done = true;
    it->header_end = header_end;
    it->body_offset = body_offset;
    it->has_body = has_body;
    it->pos = body_offset;
}

/* Name and value of the field's first line [start, first_end).  The value
 * runs to the end of the field (excluding its last line break). */
static void split_field(const char *d, size_t start, size_t first_end,
                        size_t field_end, size_t field_eol,
                        struct mime_header_field *f)
{
    const char *colon = memchr(d + start, ':', first_end - start);
    size_t vend = field_end - field_eol;

    f->name = d + start;
    if (colon == NULL) {
        /* no colon: the whole line is the name, as Dovecot does */
        f->name_len = first_end - start - eol_len(d, start, first_end);
        f->value = NULL;
        f->value_len = 0;
        return;
    }
    size_t c = (size_t)(colon - d);
    size_t n = c;
    while (n > start && mime_is_wsp(d[n - 1]))
        n--;
    f->name_len = n - start;

    /* Skip the white space after the colon on the first line; if that
     * line's value is nothing else, skip one character only. */
    size_t v = c + 1;
    size_t first_vend = first_end - eol_len(d, start, first_end);
    if (first_vend > vend)
        first_vend = vend;
    size_t w = v;
    while (w < first_vend && mime_is_wsp(d[w]))
        w++;
    if (w == first_vend && w > v)
        w = v + 1;
    f->value = d + w;
    f->value_len = vend > w ? vend - w : 0;
}

bool mime_header_iter_next(struct mime_header_iter *it,
                           struct mime_header_field *f)
{
    const char *d = it->data;
    size_t len = it->len, pos = it->pos;

    if (it->done)
        return false;
    if (pos >= len) {
        finish(it, len, len, false);
        return false;
    }
    if (it->stop != NULL && it->stop(it->stop_ctx, pos)) {
        it->stopped = true;
        finish(it, pos, pos, false);
        return false;
    }
    if (d[pos] == '\n' || (d[pos] == '\r' && pos + 1 < len && d[pos + 1] == '\n')) {
        finish(it, pos, pos + (d[pos] == '\n' ? 1 : 2), true);
        return false;
    }
    size_t first_end = line_end(d, len, pos);
    size_t end = first_end;
    while (end < len && mime_is_wsp(d[end]))
        end = line_end(d, len, end);
    split_field(d, pos, first_end, end, eol_len(d, pos, end), f);
    f->offset = pos;
    f->end = end;
    it->pos = end;
    return true;
}

int mime_header_unfold(const char *value, size_t len, bool nul_to_fffd,
                       struct strbuf *out)
{
    size_t i = 0, run = 0;

    for (i = 0; i < len; i++) {
        char c = value[i];
        bool brk = c == '\n' || (c == '\r' && i + 1 < len && value[i + 1] == '\n');
        bool nul = c == '\0' && nul_to_fffd;
        if (!brk && !nul)
            continue;
        if (strbuf_append(out, value + run, i - run) < 0)
            return -1;
        if (nul && mime_append_fffd(out) < 0)
            return -1;
        run = i + 1;
    }
    if (strbuf_append(out, value + run, len - run) < 0)
        return -1;
    return 0;
}

int mime_header_get(const char *data, size_t len, size_t start,
                    const char *name, struct strbuf *out)
{
    struct mime_header_iter it;
    struct mime_header_field f;
    size_t n = strlen(name);

    mime_header_iter_init(&it, data, len, start);
    while (mime_header_iter_next(&it, &f)) {
        if (f.value != NULL && f.name_len == n && strncasecmp(f.name, name, n) == 0)
            return mime_header_unfold(f.value, f.value_len, false, out) < 0 ? -1 : 1;
    }
    return 0;
}
