/*
 * Fuzz target: the SPF record parser, the macro expander in every mode,
 * the domain-spec check, and whole check_host() runs against an in-memory
 * DNS that serves the input itself as every name's TXT record (so include
 * and redirect recurse into it) and synthesizes A, AAAA, MX and PTR data.
 *
 * Input: RECORD [ "\n" MAIL-FROM [ "\n" HELO ] ]
 */
#include <arpa/inet.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth/spf.h"

static const uint8_t *rec_data;
static size_t rec_len;
static unsigned char txt_rdata[SPF_RECORD_MAX * 2];

static enum dns_status fuzz_query(void *arg, const char *name, uint16_t type, struct dns_result *res)
{
    static unsigned char buf[4][300];
    const unsigned char *data[5] = { NULL };
    int len[4];
    size_t n = 0, nl = strlen(name);
    (void)arg;
    memset(res, 0, sizeof(*res));
    if (!dns_name_valid(name))
        return res->status = DNS_BADNAME;
    unsigned h = 0;
    for (size_t i = 0; i < nl; i++)
        h = h * 31 + (unsigned char)name[i];
    if (h % 7 == 0)
        return dns_result_from_rdata(res, type, 3, true, data, len);
    if (h % 11 == 0)
        return dns_result_from_rdata(res, type, 2, false, data, len);
    switch (type) {
    case DNS_T_TXT: {
        size_t o = 0;
        for (size_t i = 0; i < rec_len && o + 256 < sizeof(txt_rdata); i += 255) {
            size_t k = rec_len - i > 255 ? 255 : rec_len - i;
            txt_rdata[o++] = (unsigned char)k;
            memcpy(txt_rdata + o, rec_data + i, k);
            o += k;
        }
        data[0] = txt_rdata;
        len[0] = (int)o;
        n = 1;
        break;
    }
    case DNS_T_A:
        memcpy(buf[0], (unsigned char[]){ 192, 0, 2, (unsigned char)(h & 3) }, 4);
        data[0] = buf[0];
        len[0] = 4;
        n = 1;
        break;
    case DNS_T_AAAA:
        memset(buf[0], 0, 16);
        buf[0][0] = 0x20;
        buf[0][1] = 0x01;
        buf[0][15] = (unsigned char)(h & 3);
        data[0] = buf[0];
        len[0] = 16;
        n = 1;
        break;
    case DNS_T_MX:
    case DNS_T_PTR: {
        static const unsigned char host[] = { 4, 'm', 'a', 'i', 'l', 7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 3, 'c', 'o', 'm', 0 };
        for (n = 0; n < 3; n++) {
            size_t o = 0;
            if (type == DNS_T_MX) {
                buf[n][0] = 0;
                buf[n][1] = (unsigned char)(10 * n);
                o = 2;
            }
            memcpy(buf[n] + o, host, sizeof(host));
            buf[n][o + 1] = (unsigned char)('a' + n);
            data[n] = buf[n];
            len[n] = (int)(o + sizeof(host));
        }
        break;
    }
    default:
        break;
    }
    data[n] = NULL;
    return dns_result_from_rdata(res, type, 0, false, data, len);
}

static const char *fuzz_validated(void *arg, const char *domain)
{
    (void)arg;
    return strlen(domain) % 2 ? domain : NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 20000)
        return 0;
    char *text = malloc(size + 1);
    if (text == NULL)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    char *from = memchr(text, '\n', size);
    char *helo = NULL;
    size_t len = size;
    if (from) {
        *from++ = '\0';
        len = (size_t)(from - 1 - text);
        if ((helo = strchr(from, '\n')) != NULL)
            *helo++ = '\0';
    }

    struct spf_record *rec;
    char err[160];
    if (spf_record_parse(text, len, &rec, err, sizeof(err)) == 0) {
        (void)spf_record_term_count(rec);
        spf_record_free(rec);
    }
    (void)spf_domain_spec_valid(text, len);

    struct spf_macro_vars v = { .sender = from && *from ? from : "strong-bad@email.example.com",
                                .domain = "email.example.com", .helo = helo ? helo : "mx.example.org",
                                .receiver = "rcv.example.net", .now = 1700000000,
                                .validated = fuzz_validated };
    dns_addr_parse(size % 2 ? "192.0.2.3" : "2001:db8::cb01", &v.ip);
    char out[600];
    const char *why;
    for (int mode = SPF_MACRO_DOMAIN; mode <= SPF_MACRO_MODIFIER; mode++) {
        int a = spf_macro_expand(text, len, (enum spf_macro_mode)mode, &v, out, sizeof(out), &why);
        bool too_long = a < 0 && strcmp(why, "expansion too long") == 0;
        int b = spf_macro_expand(text, len, (enum spf_macro_mode)mode, NULL, NULL, 0, &why);
        if (a != b && !(too_long && b == 0))
            abort();              /* checking and expanding agree on syntax */
        if (a == 0 && strlen(out) >= sizeof(out))
            abort();
    }

    rec_data = (const uint8_t *)text;
    rec_len = len;
    struct spf_dns dns = { fuzz_query, NULL };
    struct spf_request req = { .ip = size % 3 ? "192.0.2.1" : "2001:db8::1",
                               .helo = helo ? helo : "mail.example.com",
                               .mail_from = from ? from : "user@example.com",
                               .receiver = "mx.example.net" };
    struct spf_response resp;
    char field[4096];
    spf_check_mailfrom(&dns, &req, &resp);
    if (resp.dns_terms > SPF_MAX_DNS_TERMS + 1 || resp.void_lookups > SPF_MAX_VOID + 1)
        abort();
    (void)spf_received_spf(&resp, &req, field, sizeof(field));
    spf_check_helo(&dns, &req, &resp);
    free(text);
    return 0;
}
