/*
 * libFuzzer target for the anti-spam engine's parsers: list entries and
 * CIDR ranges (with a match against the parsed range and canonical text
 * parsing back to itself), DNS list answer codes, configuration values,
 * the Rspamd JSON reply, the HTTP response decoder, the greylisting sender
 * key, and the header heuristics and message rewriting over the input as
 * a message.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "filter/filter.h"
#include "filter/filter_int.h"

#define ASSERT(c) do { if (!(c)) __builtin_trap(); } while (0)

static enum dns_status no_dns(void *arg, const char *name, uint16_t type, struct dns_result *res)
{
    (void)arg; (void)name; (void)type;
    memset(res, 0, sizeof(*res));
    res->rcode = 3;
    return res->status = DNS_NXDOMAIN;
}

static struct filter *engine(void)
{
    static struct filter *f;
    if (f == NULL) {
        struct filter_config fc;
        filter_config_defaults(&fc);
        struct filter_env env = { .query = no_dns, .hostname = "mx.example.org",
                                  .local_domains = "example.org, example.net" };
        const char *err;
        f = filter_new(&fc, &env, &err);
        ASSERT(f != NULL);
    }
    return f;
}

static void entries(const char *text)
{
    char *copy = strdup(text), *save = NULL;
    ASSERT(copy != NULL);
    struct filter_list l = { 0 };
    for (char *t = strtok_r(copy, ",\n", &save); t; t = strtok_r(NULL, ",\n", &save)) {
        struct filter_entry e, again;
        char err[200];
        if (filter_entry_parse(t, &e, err, sizeof(err)) == 0) {
            /* canonical text is stable */
            ASSERT(filter_entry_parse(e.text, &again, NULL, 0) == 0);
            ASSERT(again.type == e.type && strcmp(again.text, e.text) == 0);
            filter_list_add(&l, &e);
            if (e.type == FILTER_E_CIDR) {
                struct filter_ip ip = { .family = e.cidr.family };
                memcpy(ip.addr, e.cidr.addr, 16);
                ASSERT(filter_cidr_match(&e.cidr, &ip));
            }
        }
        struct filter_code code;
        filter_code_parse(t, &code, err, sizeof(err));
        struct filter_check_cfg cc;
        filter_mode_parse(t, true, &cc);
        char name[300];
        filter_dnsl_ip_name(t, "bl.test", name, sizeof(name));
        filter_dnsl_domain_name(t, "dbl.test", name, sizeof(name));
        struct filter_url u;
        filter_url_parse(t, &u);
    }
    filter_list_match_address(&l, text, true);
    struct filter_ip ip;
    if (filter_ip_parse(text, &ip) == 0)
        filter_list_match_ip(&l, &ip);
    filter_list_free(&l);
    free(copy);
}

static void config_lines(const char *text)
{
    /* "section|name|value" per line */
    char *copy = strdup(text), *save = NULL;
    ASSERT(copy != NULL);
    struct filter_config fc;
    filter_config_defaults(&fc);
    for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *a = strchr(line, '|'), *b = a ? strchr(a + 1, '|') : NULL;
        if (b == NULL)
            continue;
        *a = *b = '\0';
        char err[256];
        filter_config_key(&fc, line, a + 1, b + 1, err, sizeof(err));
    }
    char err[256];
    filter_config_finish(&fc, err, sizeof(err));
    free(copy);
}

static int sink(void *arg, const void *p, size_t n)
{
    size_t *total = arg;
    (void)p;
    *total += n;
    return 0;
}

static void message(const char *data, size_t len)
{
    struct filter_verdict v;
    char from[256];
    filter_verdict_init(&v);
    filter_score_message(engine(), data, len, &v, from, sizeof(from));
    filter_score_auth(&engine()->cfg, "fail", "pass", "fail", &v);
    ASSERT(v.n_rules <= FILTER_RULES_MAX);
    v.headers = filter_spam_headers(&engine()->cfg, &v);
    ASSERT(v.headers != NULL);
    v.subject = strndup(data, len < 200 ? len : 200);
    size_t total = 0;
    ASSERT(filter_message_write(&v, data, len, sink, &total) == 0);
    filter_verdict_free(&v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 256 * 1024)
        return 0;
    char *text = malloc(size + 1);
    ASSERT(text != NULL);
    memcpy(text, data, size);
    text[size] = '\0';

    entries(text);
    config_lines(text);
    char key[ADDRESS_MAX];
    filter_greylist_sender(text, key, sizeof(key));

    struct filter_rspamd_result r;
    if (filter_rspamd_parse(text, size, &r) == 0) {
        ASSERT(r.n_syms >= 0 && r.n_syms <= FILTER_RSPAMD_SYMS_MAX);
        for (const char *p = r.message; *p; p++)
            ASSERT((unsigned char)*p >= 0x20 && (unsigned char)*p < 0x7f);
    }
    for (int eof = 0; eof < 2; eof++) {
        char *copy = malloc(size + 1);
        ASSERT(copy != NULL);
        memcpy(copy, data, size);
        char *body;
        size_t blen;
        int st = filter_http_response(copy, size, eof, &body, &blen);
        if (st >= 0)
            ASSERT(body >= copy && body + blen <= copy + size);
        free(copy);
    }
    message(text, size);
    free(text);
    return 0;
}
