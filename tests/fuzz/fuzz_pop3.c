/*
 * libFuzzer target for src/pop3/pop3_parse.c.
 *
 * The input is used twice:
 *   - as one command line through pop3_command_parse: a success names a
 *     known verb, its arguments point into the line and message numbers
 *     stay under 2^31; a failure carries a text;
 *   - as a message body through the RETR/TOP encoder, the first two bytes
 *     choosing TOP, its line count and a chunk size: the output must be
 *     the same for whole and chunked feeding, contain no bare LF, and
 *     hold the terminating CRLF.CRLF only at its very end (so no stored
 *     message can end a response early); RETR's output must equal that
 *     of TOP with an unreachable line count (two separate loops).
 */
#include "pop3/pop3_parse.h"

#include <stdlib.h>
#include <string.h>

struct out {
    char *data;
    size_t len, cap;
};

static void out_fn(void *arg, const char *data, size_t len)
{
    struct out *o = arg;
    if (o->len + len > o->cap)
        abort(); /* the encoder never more than doubles the input, plus 5 */
    memcpy(o->data + o->len, data, len);
    o->len += len;
}

static void encode(const unsigned char *in, size_t len, bool top, uint32_t lines, size_t step,
                   struct out *o)
{
    struct pop3_stuff s;
    pop3_stuff_init(&s, top, lines);
    o->len = 0;
    size_t off = 0;
    while (off < len && !s.done) {
        size_t n = step == 0 || len - off < step ? len - off : step;
        size_t used = pop3_stuff_feed(&s, (const char *)in + off, n, out_fn, o);
        if (used > n || (used < n && !s.done))
            abort();
        off += used;
    }
    if (!top && off != len)
        abort();
    pop3_stuff_end(&s, out_fn, o);
}

static void check_output(const struct out *o)
{
    const char *d = o->data;
    size_t n = o->len;
    if (n < 3 || memcmp(d + n - 3, ".\r\n", 3) != 0 ||
        (n > 3 && (n < 5 || memcmp(d + n - 5, "\r\n", 2) != 0)))
        abort();
    for (size_t i = 0; i < n; i++)
        if (d[i] == '\n' && (i == 0 || d[i - 1] != '\r'))
            abort();
    /* ".\r\n" at a line start only at the very end */
    for (size_t i = 0; i + 3 < n; i++)
        if ((i == 0 || d[i - 1] == '\n') && memcmp(d + i, ".\r\n", 3) == 0)
            abort();
}

static void fuzz_command(const unsigned char *data, size_t size)
{
    char *line = malloc(size + 1);
    memcpy(line, data, size);
    struct pop3_command cmd;
    const char *err = NULL;
    if (pop3_command_parse(line, size, &cmd, &err) == 0) {
        if (cmd.verb <= POP3_VERB_UNKNOWN || cmd.verb >= POP3_VERB_COUNT || cmd.arg == NULL)
            abort();
        if (cmd.arg[0] && (cmd.arg < line || cmd.arg > line + size))
            abort();
        if (cmd.arg2 && (cmd.arg2 < line || cmd.arg2 > line + size || cmd.arg2[0] == '\0'))
            abort();
        if (cmd.msg > 0x7fffffffu || cmd.lines > 0x7fffffffu || (!cmd.has_msg && cmd.msg))
            abort();
        if (memchr(data, '\0', size) || memchr(data, '\r', size) || memchr(data, '\n', size))
            abort();
    } else if (err == NULL || err[0] == '\0') {
        abort();
    }
    free(line);
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    if (size > 65536)
        return 0;
    if (size <= POP3_SASL_LINE_MAX)
        fuzz_command(data, size);
    if (size < 2)
        return 0;
    bool top = data[0] & 1;
    size_t step = (size_t)(data[0] >> 1);
    uint32_t lines = data[1];
    const unsigned char *body = data + 2;
    size_t len = size - 2;
    struct out whole = { malloc(2 * len + 8), 0, 2 * len + 8 };
    struct out chunked = { malloc(2 * len + 8), 0, 2 * len + 8 };
    encode(body, len, top, lines, 0, &whole);
    encode(body, len, top, lines, step + 1, &chunked);
    if (whole.len != chunked.len || memcmp(whole.data, chunked.data, whole.len) != 0)
        abort();
    check_output(&whole);
    if (!top) {
        /* RETR has its own fast loop: TOP with more lines than the input
         * can hold runs the general one and must give the same bytes. */
        encode(body, len, true, 0x7fffffffu, step + 1, &chunked);
        if (whole.len != chunked.len || memcmp(whole.data, chunked.data, whole.len) != 0)
            abort();
    }
    free(whole.data);
    free(chunked.data);
    return 0;
}
