/*
 * libFuzzer target for capture mode's search query parser
 * (src/http/capture_search.c): any bytes must parse or be refused with a
 * reason, never read or write out of bounds; a parsed query is matched
 * against a small message summary.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/capture.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 4096)
        return 0;
    char *q = malloc(size + 1);
    if (q == NULL)
        return 0;
    memcpy(q, data, size);
    q[size] = '\0';
    const char *why = NULL;
    struct capture_query *cq = capture_query_parse(q, &why);
    if (cq == NULL && why == NULL)
        abort();                      /* a refusal always says why */
    if (cq != NULL) {
        struct capture_meta m = { .from = "alice@example.com", .to = "bob@example.org",
                                  .cc = "", .subject = "hello world", .message_id = "a@b",
                                  .search = "alice bob hello world body text",
                                  .attachments = 1, .created = 1700000000,
                                  .date = 1700000000, .size = 4096 };
        capture_query_match(cq, &m, size & 1);
        capture_query_free(cq);
    }
    free(q);
    return 0;
}
