/*
 * Authentication-Results tests: the whole inbound evaluation against an
 * in-memory DNS (SPF + DKIM with a fresh key + DMARC), the field we format
 * (folded, parsed back), the removal of fields claiming our authserv-id
 * (case, folding, comments, quoting), and the A-R parser's table.
 */
#include <arpa/inet.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth/authres.h"
#include "core/config.h"
#include "core/log.h"
#include "mime/mime.h"
#include "unit.h"

#define ID "mx.receiver.test"

/* ---- in-memory DNS (TXT and A only) ---- */

struct zrec {
    const char *name;
    uint16_t type;
    const char *data;
};

static struct zrec zone[16];
static int n_zone;

static void zone_add(const char *name, uint16_t type, const char *data)
{
    zone[n_zone].name = name;
    zone[n_zone].type = type;
    zone[n_zone].data = data;
    n_zone++;
}

static enum dns_status zone_query(void *arg, const char *name, uint16_t type, struct dns_result *res)
{
    static unsigned char buf[8][4096];
    const unsigned char *data[9];
    int len[8];
    size_t n = 0;
    bool exists = false;
    (void)arg;
    memset(res, 0, sizeof(*res));
    for (int i = 0; i < n_zone; i++) {
        size_t l = strlen(name);
        if (l && name[l - 1] == '.')
            l--;
        if (strlen(zone[i].name) != l || strncasecmp(zone[i].name, name, l) != 0)
            continue;
        exists = true;
        if (zone[i].type != type || n >= 8)
            continue;
        if (type == DNS_T_A) {
            inet_pton(AF_INET, zone[i].data, buf[n]);
            len[n] = 4;
        } else {
            size_t tl = strlen(zone[i].data), o = 0;
            for (size_t off = 0; off < tl; off += 255) {
                size_t k = tl - off < 255 ? tl - off : 255;
                buf[n][o++] = (unsigned char)k;
                memcpy(buf[n] + o, zone[i].data + off, k);
                o += k;
            }
            len[n] = (int)o;
        }
        data[n] = buf[n];
        n++;
    }
    data[n] = NULL;
    return dns_result_from_rdata(res, type, exists ? 0 : 3, !exists, data, len);
}

static const struct dmarc_dns mem_dns = { zone_query, NULL };

/* ---- fixtures ---- */

static char dir[256];
static struct dkim_key key;
static char key_record[1024];

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb; (void)flag; (void)ftw;
    return remove(path);
}

static int setup(void)
{
    static struct config cfg;
    char err[256];
    config_defaults(&cfg);
    snprintf(dir, sizeof(dir), "/tmp/postel-test-authres-%d", (int)getpid());
    str_copy(cfg.data_dir, dir, sizeof(cfg.data_dir));
    if (dkim_keygen(&cfg, "example.org", "sel", DKIM_KEY_ED25519, &key, err, sizeof(err)) < 0) {
        fprintf(stderr, "keygen: %s\n", err);
        return -1;
    }
    struct strbuf sb;
    strbuf_init(&sb, 4096);
    dkim_key_record(&key, &sb);
    str_copy(key_record, sb.data, sizeof(key_record));
    strbuf_free(&sb);
    zone_add("example.org", DNS_T_TXT, "v=spf1 ip4:192.0.2.0/24 -all");
    zone_add("sel._domainkey.example.org", DNS_T_TXT, key_record);
    zone_add("_dmarc.example.org", DNS_T_TXT, "v=DMARC1; p=reject; rua=mailto:d@example.org");
    zone_add("_dmarc.quarantine.test", DNS_T_TXT, "v=DMARC1; p=quarantine");
    zone_add("quarantine.test", DNS_T_TXT, "v=spf1 -all");
    return 0;
}

static const char plain[] =
    "From: Alice <alice@example.org>\r\n"
    "To: bob@receiver.test\r\n"
    "Subject: hello\r\n"
    "Date: Mon, 01 Jan 2024 10:00:00 +0000\r\n"
    "Message-ID: <1@example.org>\r\n"
    "\r\n"
    "Hello Bob.\r\n";

/* msg signed with the test key (malloc'ed, *len_r set). */
static char *signed_msg(const char *msg, size_t *len_r)
{
    struct strbuf sb;
    char err[256];
    strbuf_init(&sb, 1 << 20);
    if (dkim_sign(&key, 1, msg, strlen(msg), 0, &sb, err, sizeof(err)) < 0)
        fprintf(stderr, "sign: %s\n", err);
    strbuf_append(&sb, msg, strlen(msg));
    *len_r = sb.len;
    return sb.data;
}

/* The value of a field we made (after "Name:"), unfolded. */
static void unfold_value(const struct strbuf *field, struct strbuf *out)
{
    const char *colon = memchr(field->data, ':', field->len);
    size_t off = (size_t)(colon - field->data) + 1;
    mime_header_unfold(field->data + off, field->len - off - 2, false, out);
}

static bool lines_ok(const struct strbuf *f)
{
    size_t col = 0;
    for (size_t i = 0; i < f->len; i++) {
        if (f->data[i] == '\n') {
            if (i == 0 || f->data[i - 1] != '\r' || col - 1 > AUTHRES_LINE_WIDTH)
                return false;
            col = 0;
        } else {
            col++;
        }
    }
    return f->len >= 2 && f->data[f->len - 1] == '\n';
}

/* The nth result of a method, or an empty one (method "") when absent. */
static const struct authres_result *find(const struct authres_parsed *p, const char *method, int nth)
{
    static const struct authres_result missing;
    for (int i = 0; i < p->n; i++)
        if (strcmp(p->res[i].method, method) == 0 && nth-- == 0)
            return &p->res[i];
    return &missing;
}

static const char *prop(const struct authres_result *r, const char *ptype, const char *name)
{
    for (int i = 0; i < r->n_props; i++)
        if (strcmp(r->props[i].ptype, ptype) == 0 && strcmp(r->props[i].property, name) == 0)
            return r->props[i].value;
    return NULL;
}

static int evaluate(const char *msg, size_t len, const char *ip, const char *mail_from, struct auth_outcome *o,
                    struct authres_parsed *p)
{
    struct auth_input in = { .ip = ip, .helo = "client.example.org", .mail_from = mail_from, .msg = msg,
                             .len = len, .authserv_id = ID };
    int rc = auth_evaluate_dns(&mem_dns, &in, o);
    memset(p, 0, sizeof(*p));
    if (rc < 0 || o->authres.data == NULL)
        return -1;
    struct strbuf v;
    strbuf_init(&v, 1 << 16);
    unfold_value(&o->authres, &v);
    if (authres_parse(v.data, v.len, p) < 0)
        fprintf(stderr, "our field does not parse: %s\n", v.data);
    strbuf_free(&v);
    return rc;
}

/* ---- evaluation ---- */

static void test_pass(void)
{
    static struct authres_parsed p;
    struct auth_outcome o;
    size_t len;
    char *msg = signed_msg(plain, &len);
    CHECK_EQ_INT(evaluate(msg, len, "192.0.2.5", "alice@example.org", &o, &p), 0);
    const char *f = o.authres.data;
    CHECK(strncmp(f, "Authentication-Results: " ID ";\r\n\tspf=pass ", 32 + strlen(ID)) == 0);
    CHECK(lines_ok(&o.authres));
    CHECK_EQ_STR(p.authserv_id, ID);
    CHECK_EQ_INT(p.n, 3);
    CHECK_EQ_STR(find(&p, "spf", 0)->result, "pass");
    CHECK_EQ_STR(prop(find(&p, "spf", 0), "smtp", "mailfrom"), "alice@example.org");
    CHECK_EQ_STR(find(&p, "dkim", 0)->result, "pass");
    CHECK_EQ_STR(prop(find(&p, "dkim", 0), "header", "d"), "example.org");
    CHECK_EQ_STR(prop(find(&p, "dkim", 0), "header", "s"), "sel");
    CHECK_EQ_STR(find(&p, "dmarc", 0)->result, "pass");
    CHECK_EQ_STR(prop(find(&p, "dmarc", 0), "header", "from"), "example.org");
    CHECK(strstr(f, "dmarc=pass (p=reject sp=reject dis=none) header.from=example.org\r\n") != NULL);
    CHECK_EQ_INT(o.dmarc_result, DMARC_RESULT_PASS);
    CHECK_EQ_INT(o.disposition, DMARC_POLICY_NONE);
    CHECK_EQ_STR(o.header_from, "example.org");
    CHECK(strncmp(o.received_spf.data, "Received-SPF: pass ", 19) == 0);
    CHECK(lines_ok(&o.received_spf));
    CHECK_EQ_INT(o.n_drop, 0);
    auth_outcome_free(&o);

    /* no client address: no SPF, DKIM alone carries DMARC */
    CHECK_EQ_INT(evaluate(msg, len, NULL, "alice@example.org", &o, &p), 0);
    CHECK_EQ_STR(find(&p, "spf", 0)->method, "");
    CHECK_EQ_INT(o.received_spf.len, 0);
    CHECK_EQ_STR(find(&p, "dmarc", 0)->result, "pass");
    auth_outcome_free(&o);

    /* null sender: SPF on the HELO name, shown as smtp.helo */
    CHECK_EQ_INT(evaluate(msg, len, "203.0.113.1", "", &o, &p), 0);
    CHECK_EQ_STR(prop(find(&p, "spf", 0), "smtp", "helo"), "client.example.org");
    auth_outcome_free(&o);
    free(msg);
}

static void test_fail(void)
{
    static struct authres_parsed p;
    struct auth_outcome o;
    /* unsigned, from an address SPF refuses: p=reject */
    CHECK_EQ_INT(evaluate(plain, strlen(plain), "203.0.113.9", "alice@example.org", &o, &p), 0);
    CHECK_EQ_STR(find(&p, "spf", 0)->result, "fail");
    CHECK_EQ_STR(find(&p, "dkim", 0)->result, "none");
    CHECK_EQ_STR(find(&p, "dmarc", 0)->result, "fail");
    CHECK_EQ_INT(o.disposition, DMARC_POLICY_REJECT);
    CHECK_EQ_STR(o.reply, "550 5.7.1 Message rejected by the DMARC policy of example.org");
    CHECK(strstr(o.authres.data, "dis=reject") != NULL);
    auth_outcome_free(&o);

    /* a signature broken in transit */
    size_t len;
    char *msg = signed_msg(plain, &len);
    char *body = strstr(msg, "Hello Bob");
    body[0] = 'J';
    CHECK_EQ_INT(evaluate(msg, len, "203.0.113.9", "alice@example.org", &o, &p), 0);
    CHECK_EQ_STR(find(&p, "dkim", 0)->result, "fail");
    CHECK_EQ_STR(prop(find(&p, "dkim", 0), "header", "s"), "sel");
    CHECK_EQ_STR(find(&p, "dmarc", 0)->result, "fail");
    auth_outcome_free(&o);
    free(msg);

    /* quarantine, and a From the SPF pass does not align with */
    static const char q[] = "From: x@quarantine.test\r\n\r\nbody\r\n";
    CHECK_EQ_INT(evaluate(q, strlen(q), "192.0.2.5", "alice@example.org", &o, &p), 0);
    CHECK_EQ_STR(find(&p, "spf", 0)->result, "pass");
    CHECK_EQ_STR(find(&p, "dmarc", 0)->result, "fail");
    CHECK_EQ_INT(o.disposition, DMARC_POLICY_QUARANTINE);
    CHECK_EQ_STR(o.reply, "");
    auth_outcome_free(&o);

    /* two From domains: both evaluated, the worst wins */
    static const char two[] = "From: a@example.org, b@quarantine.test\r\n\r\nbody\r\n";
    CHECK_EQ_INT(evaluate(two, strlen(two), "192.0.2.5", "alice@example.org", &o, &p), 0);
    CHECK_EQ_INT(o.n_dmarc, 2);
    CHECK_EQ_STR(find(&p, "dmarc", 0)->result, "pass");
    CHECK_EQ_STR(find(&p, "dmarc", 1)->result, "fail");
    CHECK_EQ_STR(prop(find(&p, "dmarc", 1), "header", "from"), "quarantine.test");
    CHECK_EQ_INT(o.dmarc_result, DMARC_RESULT_FAIL);
    CHECK_EQ_INT(o.disposition, DMARC_POLICY_QUARANTINE);
    auth_outcome_free(&o);

    /* no From at all */
    static const char nofrom[] = "Subject: x\r\n\r\nbody\r\n";
    CHECK_EQ_INT(evaluate(nofrom, strlen(nofrom), "192.0.2.5", "alice@example.org", &o, &p), 0);
    CHECK_EQ_STR(find(&p, "dmarc", 0)->result, "permerror");
    CHECK(prop(find(&p, "dmarc", 0), "header", "from") == NULL);
    CHECK(strstr(o.authres.data, "(no From field)") != NULL);
    CHECK_EQ_INT(o.disposition, DMARC_POLICY_NONE);
    auth_outcome_free(&o);

    /* a malformed From: the domain read still has its policy applied */
    static const char bad[] = "From: ceo@example.org trailing junk\r\n\r\nbody\r\n";
    CHECK_EQ_INT(evaluate(bad, strlen(bad), "203.0.113.9", "x@evil.test", &o, &p), 0);
    CHECK_EQ_INT(o.n_dmarc, 2);
    CHECK_EQ_STR(find(&p, "dmarc", 0)->result, "fail");
    CHECK_EQ_STR(find(&p, "dmarc", 1)->result, "permerror");
    CHECK(strstr(o.authres.data, "(malformed From field)") != NULL);
    CHECK_EQ_INT(o.disposition, DMARC_POLICY_REJECT);
    auth_outcome_free(&o);

    /* more From domains than are evaluated: at least quarantine */
    static const char many[] = "From: a@b1.test, a@b2.test, a@b3.test, a@b4.test, a@b5.test, a@b6.test,"
                               " a@b7.test, a@b8.test, a@example.org\r\n\r\nbody\r\n";
    CHECK_EQ_INT(evaluate(many, strlen(many), "203.0.113.9", "x@evil.test", &o, &p), 0);
    CHECK_EQ_INT(o.n_dmarc, DMARC_FROM_MAX + 1);
    CHECK_EQ_INT(o.dmarc_result, DMARC_RESULT_PERMERROR);
    CHECK_EQ_INT(o.disposition, DMARC_POLICY_QUARANTINE);
    CHECK(strstr(o.authres.data, "(too many From domains)") != NULL);
    CHECK(lines_ok(&o.authres));
    auth_outcome_free(&o);

    /* a sender address that needs quoting */
    CHECK_EQ_INT(evaluate(plain, strlen(plain), "192.0.2.5", "\"a b\"@example.org", &o, &p), 0);
    CHECK_EQ_STR(prop(find(&p, "spf", 0), "smtp", "mailfrom"), "\"a b\"@example.org");
    auth_outcome_free(&o);
}

/* ---- removal of our authserv-id claims (RFC 8601 5) ---- */

struct collect {
    struct strbuf sb;
};

static int collect_fn(void *arg, const void *data, size_t len)
{
    return strbuf_append(&((struct collect *)arg)->sb, data, len);
}

static void test_removal(void)
{
    static const char msg[] =
        "Authentication-Results: " ID "; dkim=pass header.d=example.org\r\n"
        "Received: from a by b; Mon, 01 Jan 2024 10:00:00 +0000\r\n"
        "Authentication-Results: MX.Receiver.TEST.;\r\n\tspf=pass smtp.mailfrom=x@example.org;\r\n"
        "\tdmarc=pass header.from=example.org\r\n"
        "authentication-results: (forged (nested)) \"" ID "\"; none\r\n"
        "Authentication-Results: other.example; dkim=pass\r\n"
        "Authentication-Results: " ID ".evil.example; spf=pass\r\n"
        "Authentication-Results:" ID "\r\n"
        "X-Authentication-Results: " ID "; spf=pass\r\n"
        "Authentication-Results : " ID "; spf=pass\r\n"
        "From: alice@example.org\r\n"
        "\r\n"
        "Authentication-Results: " ID "; in the body stays\r\n";
    static const char want[] =
        "Received: from a by b; Mon, 01 Jan 2024 10:00:00 +0000\r\n"
        "Authentication-Results: other.example; dkim=pass\r\n"
        "Authentication-Results: " ID ".evil.example; spf=pass\r\n"
        "X-Authentication-Results: " ID "; spf=pass\r\n"
        "From: alice@example.org\r\n"
        "\r\n"
        "Authentication-Results: " ID "; in the body stays\r\n";
    struct auth_range *r;
    size_t n;
    CHECK_EQ_INT(authres_find_ours(msg, strlen(msg), ID, &r, &n), 0);
    CHECK_EQ_INT(n, 5);
    free(r);

    static struct authres_parsed p;
    struct auth_outcome o;
    CHECK_EQ_INT(evaluate(msg, strlen(msg), "192.0.2.5", "alice@example.org", &o, &p), 0);
    CHECK_EQ_INT(o.n_drop, 5);
    struct collect c;
    strbuf_init(&c.sb, 1 << 20);
    CHECK_EQ_INT(auth_write_stripped(&o, msg, strlen(msg), collect_fn, &c), 0);
    CHECK(c.sb.len == strlen(want) && memcmp(c.sb.data, want, c.sb.len) == 0);
    strbuf_reset(&c.sb);
    CHECK_EQ_INT(auth_write_message(&o, msg, strlen(msg), collect_fn, &c), 0);
    CHECK_EQ_INT(c.sb.len, auth_message_size(&o, strlen(msg)));
    CHECK_EQ_INT(c.sb.len, o.authres.len + o.received_spf.len + strlen(want));
    CHECK(memcmp(c.sb.data, o.authres.data, o.authres.len) == 0);
    CHECK(memcmp(c.sb.data + o.authres.len + o.received_spf.len, want, strlen(want)) == 0);
    strbuf_free(&c.sb);
    auth_outcome_free(&o);

    /* LF-only message: same ranges, in its own line ends */
    static const char lf[] = "Authentication-Results: " ID ";\n spf=pass\nFrom: a@example.org\n\nbody\n";
    CHECK_EQ_INT(authres_find_ours(lf, strlen(lf), ID, &r, &n), 0);
    CHECK_EQ_INT(n, 1);
    CHECK_EQ_INT(r[0].off, 0);
    CHECK_EQ_INT(r[0].len, strlen("Authentication-Results: " ID ";\n spf=pass\n"));
    free(r);

    CHECK(authres_id_equal("a.example", "A.EXAMPLE."));
    CHECK(!authres_id_equal("a.example", "a.example.net"));
    CHECK(!authres_id_equal("", ""));
}

/* ---- the parser ---- */

static void test_parse(void)
{
    static const struct { const char *v; int ok; const char *id; int n; const char *m0, *r0; } cases[] = {
        { "example.org; none", 1, "example.org", 0, NULL, NULL },
        { "example.org 1; spf=pass smtp.mailfrom=a@b.example", 1, "example.org", 1, "spf", "pass" },
        { "example.com; dkim=pass reason=\"good signature\" header.i=@mail-router.example.net;"
          " dkim=fail reason=\"bad signature\" header.i=@newyork.example.com", 1, "example.com", 2, "dkim", "pass" },
        { " (c) example.org (c2) ; SPF = Pass (x) smtp . mailfrom = \"a b\"@example.org", 1, "example.org", 1,
          "spf", "pass" },
        { "\"quoted id\"; auth/1=pass smtp.auth=user", 1, "quoted id", 1, "auth", "pass" },
        { "example.org; spf=pass;", 1, "example.org", 1, "spf", "pass" },
        { "example.org;\r\n\tdkim=pass header.d=x.example\r\n header.s=sel", 1, "example.org", 1, "dkim", "pass" },
        { "example.org; x-custom=ok policy.x=1 header.from=", 1, "example.org", 1, "x-custom", "ok" },
        { "", 0, NULL, 0, NULL, NULL },
        { "; spf=pass", 0, NULL, 0, NULL, NULL },
        { "example.org spf=pass", 0, NULL, 0, NULL, NULL },
        { "example.org; =pass", 0, NULL, 0, NULL, NULL },
        { "example.org; spf=", 0, NULL, 0, NULL, NULL },
        { "example.org; spf=pass smtp", 0, NULL, 0, NULL, NULL },
        { "example.org; spf=pass smtp.mailfrom", 0, NULL, 0, NULL, NULL },
        { "example.org; (unterminated", 0, NULL, 0, NULL, NULL },
        { "example.org; none; spf=pass", 0, NULL, 0, NULL, NULL },
        { "example.org; spf=pass none", 0, NULL, 0, NULL, NULL },
        { "\"unterminated; spf=pass", 0, NULL, 0, NULL, NULL },
    };
    static struct authres_parsed p;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t len = strlen(cases[i].v);
        char *copy = malloc(len ? len : 1);  /* exact length: over-reads show */
        memcpy(copy, cases[i].v, len);
        int rc = authres_parse(copy, len, &p);
        free(copy);
        if ((rc == 0) != cases[i].ok)
            fprintf(stderr, "parse case %zu: rc %d\n", i, rc);
        CHECK_EQ_INT(rc == 0, cases[i].ok);
        if (rc != 0 || !cases[i].ok)
            continue;
        CHECK_EQ_STR(p.authserv_id, cases[i].id);
        CHECK_EQ_INT(p.n, cases[i].n);
        if (cases[i].m0) {
            CHECK_EQ_STR(p.res[0].method, cases[i].m0);
            CHECK_EQ_STR(p.res[0].result, cases[i].r0);
        }
    }
    static const char ex[] = "example.com; dkim=pass reason=\"good signature\" header.i=@mail-router.example.net";
    CHECK_EQ_INT(authres_parse(ex, strlen(ex), &p), 0);
    CHECK_EQ_STR(p.res[0].reason, "good signature");
    CHECK_EQ_STR(prop(&p.res[0], "header", "i"), "@mail-router.example.net");
    CHECK_EQ_INT(authres_parse("example.org 2; none", 19, &p), 0);
    CHECK_EQ_INT(p.version, 2);
    CHECK(p.none);
    static const char q[] = " (c) example.org (c2) ; SPF = Pass (x) smtp . mailfrom = \"a b\"@example.org";
    CHECK_EQ_INT(authres_parse(q, strlen(q), &p), 0);
    CHECK_EQ_STR(prop(&p.res[0], "smtp", "mailfrom"), "a b@example.org");

    char id[64];
    CHECK_EQ_INT(authres_authserv_id("  (a (b) c) \"x \\\"y\\\"\" ; spf=pass", 31, id, sizeof(id)), 0);
    CHECK_EQ_STR(id, "x \"y\"");
    CHECK_EQ_INT(authres_authserv_id("  ", 2, id, sizeof(id)), -1);
    CHECK_EQ_INT(authres_authserv_id("averyveryverylongauthservid.example", 35, id, 8), -1);
    /* caps: too many results */
    struct strbuf many;
    strbuf_init(&many, 1 << 16);
    strbuf_printf(&many, "example.org");
    for (int i = 0; i <= AUTHRES_RESULTS_MAX; i++)
        strbuf_printf(&many, "; dkim=pass header.d=d%d.example", i);
    CHECK_EQ_INT(authres_parse(many.data, many.len, &p), -1);
    strbuf_free(&many);
}

int main(void)
{
    log_set_level(LOG_WARN);
    if (setup() < 0) {
        CHECK(0);
        return unit_report("authres");
    }
    RUN(test_pass);
    RUN(test_fail);
    RUN(test_removal);
    RUN(test_parse);
    dkim_key_free(&key);
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return unit_report("authres");
}
