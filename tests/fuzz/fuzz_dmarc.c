/*
 * Fuzz target: the DMARC record parser (with a format/parse round trip),
 * the Authentication-Results parser and the search for fields claiming our
 * authserv-id (ranges checked against the bytes written), the From-domain
 * extraction, and a whole auth_evaluate_dns() run whose DNS serves the
 * input's first line as every _dmarc TXT record: the field we produce must
 * always parse back with our own parser.
 *
 * Input: the whole input is each parser's text and the message;
 * its first line (up to '\n') is also the DMARC record served.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth/authres.h"
#include "auth/dmarc.h"
#include "mime/mime.h"

#define ID "mx.example.org"

static const uint8_t *rec_data;
static size_t rec_len;

static enum dns_status fuzz_query(void *arg, const char *name, uint16_t type, struct dns_result *res)
{
    static unsigned char txt[DMARC_RECORD_MAX * 2];
    const unsigned char *data[2] = { NULL, NULL };
    int len[1] = { 0 };
    (void)arg;
    memset(res, 0, sizeof(*res));
    if (!dns_name_valid(name))
        return res->status = DNS_BADNAME;
    if (type != DNS_T_TXT || strncmp(name, "_dmarc.", 7) != 0)
        return dns_result_from_rdata(res, type, 3, true, data, len);
    size_t o = 0;
    for (size_t i = 0; i < rec_len && o + 256 < sizeof(txt); i += 255) {
        size_t k = rec_len - i > 255 ? 255 : rec_len - i;
        txt[o++] = (unsigned char)k;
        memcpy(txt + o, rec_data + i, k);
        o += k;
    }
    data[0] = txt;
    len[0] = (int)o;
    return dns_result_from_rdata(res, type, 0, false, data, len);
}

static void record_round_trip(const char *text, size_t len)
{
    struct dmarc_record rec, again;
    char err[160], out[8192];
    if (dmarc_record_parse(text, len, &rec, err, sizeof(err)) != 0)
        return;
    dmarc_record_format(&rec, out, sizeof(out));
    if (dmarc_record_parse(out, strlen(out), &again, err, sizeof(err)) != 0 || again.p != rec.p ||
        again.sp != rec.sp || again.np != rec.np || again.pct != rec.pct || again.n_rua != rec.n_rua ||
        again.adkim != rec.adkim || again.aspf != rec.aspf || again.ri != rec.ri)
        abort();
    for (int i = 0; i < rec.n_rua; i++)
        if (strcmp(again.rua[i].addr, rec.rua[i].addr) != 0 || again.rua[i].max_size != rec.rua[i].max_size)
            abort();
}

struct counter {
    size_t n;
};

static int count_fn(void *arg, const void *data, size_t len)
{
    (void)data;
    ((struct counter *)arg)->n += len;
    return 0;
}

/* Our own field must parse with our own parser, with our id. */
static void check_our_field(const struct strbuf *f)
{
    static struct authres_parsed p;
    const char *colon = memchr(f->data, ':', f->len);
    if (colon == NULL || f->len < 2 || f->data[f->len - 1] != '\n')
        abort();
    struct strbuf v;
    strbuf_init(&v, 1 << 20);
    size_t off = (size_t)(colon - f->data) + 1;
    if (mime_header_unfold(f->data + off, f->len - off - 2, false, &v) < 0 ||
        authres_parse(v.data, v.len, &p) < 0 || strcmp(p.authserv_id, ID) != 0)
        abort();
    strbuf_free(&v);
}

static void evaluate(const char *msg, size_t len)
{
    struct dmarc_dns dns = { fuzz_query, NULL };
    struct auth_input in = { .msg = msg, .len = len, .authserv_id = ID, .now = 1700000000 };
    struct auth_outcome out;
    if (auth_evaluate_dns(&dns, &in, &out) == 0) {
        check_our_field(&out.authres);
        struct counter c = { 0 };
        auth_write_message(&out, msg, len, count_fn, &c);
        if (c.n != auth_message_size(&out, len))
            abort();
    }
    auth_outcome_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 65536)
        return 0;
    char *text = malloc(size ? size : 1);
    if (text == NULL)
        return 0;
    memcpy(text, data, size);
    const char *nl = memchr(text, '\n', size);
    rec_data = data;
    rec_len = nl ? (size_t)(nl - text) : size;

    record_round_trip(text, size);
    record_round_trip(text, rec_len);

    static struct authres_parsed p;
    char id[256];
    (void)authres_parse(text, size, &p);
    (void)authres_authserv_id(text, size, id, sizeof(id));

    struct auth_range *r;
    size_t n;
    if (authres_find_ours(text, size, ID, &r, &n) == 0) {
        for (size_t i = 0; i < n; i++)
            if (r[i].off + r[i].len > size || (i > 0 && r[i].off < r[i - 1].off + r[i - 1].len))
                abort();
        free(r);
    }

    char domains[DMARC_FROM_MAX][DNS_NAME_MAX + 2];
    int nd;
    enum dmarc_from_status fs = dmarc_from_domains(text, size, domains, DMARC_FROM_MAX, &nd);
    if (nd < 0 || nd > DMARC_FROM_MAX || (fs == DMARC_FROM_OK && nd == 0))
        abort();
    for (int i = 0; i < nd; i++) {
        char org[DNS_NAME_MAX + 2];
        if (!dns_name_valid(domains[i]) || dmarc_org_domain(domains[i], org, sizeof(org)) < 0 ||
            !dmarc_aligned(domains[i], org, DMARC_ALIGN_RELAXED))
            abort();
    }

    evaluate(text, size);
    free(text);
    return 0;
}
