/*
 * The inbound evaluator (SPF, DKIM, DMARC in one call), the
 * Authentication-Results field we add (RFC 8601 2.2, folded at 78
 * columns) and the parser that finds fields claiming our authserv-id
 * (RFC 8601 5) so they can be removed.
 */
#include "auth/authres.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/log.h"
#include "mime/mime.h"

/* ---- parsing ---- */

struct cur {
    const char *p, *e;
};

#define COMMENT_DEPTH_MAX 64

/* Skips white space, line breaks and (nested) comments.  0, or -1 on an
 * unterminated or too deeply nested comment. */
static int skip_cfws(struct cur *c)
{
    while (c->p < c->e) {
        char ch = *c->p;
        if (ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n') {
            c->p++;
            continue;
        }
        if (ch != '(')
            return 0;
        int depth = 0;
        while (c->p < c->e) {
            ch = *c->p++;
            if (ch == '\\' && c->p < c->e)
                c->p++;
            else if (ch == '(' && ++depth > COMMENT_DEPTH_MAX)
                return -1;
            else if (ch == ')' && --depth == 0)
                break;
        }
        if (depth != 0)
            return -1;
    }
    return 0;
}

static bool is_tspecial(char ch) { return ch != '\0' && strchr("()<>@,;:\\\"/[]?=", ch) != NULL; }
static bool is_token_char(char ch) { return (unsigned char)ch > ' ' && (unsigned char)ch < 0x7f && !is_tspecial(ch); }

/* Appends one byte to out[*n] (size bytes).  0 or -1 when full. */
static int put(char *out, size_t size, size_t *n, char ch)
{
    if (*n + 1 >= size)
        return -1;
    out[(*n)++] = ch;
    out[*n] = '\0';
    return 0;
}

/* A quoted-string at c->p (the opening quote); appends its content. */
static int read_quoted(struct cur *c, char *out, size_t size, size_t *n)
{
    c->p++;
    while (c->p < c->e && *c->p != '"') {
        char ch = *c->p++;
        if (ch == '\\') {
            if (c->p >= c->e)
                return -1;
            ch = *c->p++;
        } else if (ch == '\r' || ch == '\n') {
            continue;                        /* folding inside the string */
        }
        if (put(out, size, n, ch) < 0)
            return -1;
    }
    if (c->p >= c->e)
        return -1;
    c->p++;
    return 0;
}

/* value = token / quoted-string (RFC 2045).  0, or -1 (none there). */
static int read_value(struct cur *c, char *out, size_t size)
{
    size_t n = 0;
    if (size == 0)
        return -1;
    out[0] = '\0';
    if (c->p < c->e && *c->p == '"')
        return read_quoted(c, out, size, &n);
    while (c->p < c->e && is_token_char(*c->p))
        if (put(out, size, &n, *c->p++) < 0)
            return -1;
    return n > 0 ? 0 : -1;
}

/* Keyword (RFC 5321 Ldh-str, '_' tolerated), lower-cased. */
static int read_keyword(struct cur *c, char *out, size_t size)
{
    size_t n = 0;
    if (size == 0)
        return -1;
    out[0] = '\0';
    while (c->p < c->e && (isalnum((unsigned char)*c->p) || *c->p == '-' || *c->p == '_'))
        if (put(out, size, &n, (char)tolower((unsigned char)*c->p++)) < 0)
            return -1;
    return n > 0 ? 0 : -1;
}

/* pvalue (RFC 8601 2.2): a value, or [local-part] "@" domain-name.  Read
 * as a quoted-string (optionally followed by "@domain") or a run of bytes
 * up to white space, ';' or a comment; may be empty. */
static int read_pvalue(struct cur *c, char *out, size_t size)
{
    size_t n = 0;
    out[0] = '\0';
    if (c->p < c->e && *c->p == '"' && read_quoted(c, out, size, &n) < 0)
        return -1;
    while (c->p < c->e) {
        unsigned char ch = (unsigned char)*c->p;
        if (ch <= ' ' || ch == ';' || ch == '(' || ch == ')' || ch == '"' || ch == 0x7f)
            break;
        if (put(out, size, &n, (char)ch) < 0)
            return -1;
        c->p++;
    }
    return 0;
}

static bool at(const struct cur *c, char ch) { return c->p < c->e && *c->p == ch; }

static int parse_digits(struct cur *c, int *out)
{
    long v = 0;
    if (!(c->p < c->e && isdigit((unsigned char)*c->p)))
        return -1;
    while (c->p < c->e && isdigit((unsigned char)*c->p)) {
        v = v * 10 + (*c->p++ - '0');
        if (v > 1000000)
            return -1;
    }
    *out = (int)v;
    return 0;
}

/* One propspec or reasonspec after the methodspec. */
static int parse_property(struct cur *c, struct authres_result *r)
{
    char ptype[32];
    if (read_keyword(c, ptype, sizeof(ptype)) < 0 || skip_cfws(c) < 0)
        return -1;
    if (strcmp(ptype, "reason") == 0 && at(c, '=')) {
        c->p++;
        if (skip_cfws(c) < 0 || read_value(c, r->reason, sizeof(r->reason)) < 0)
            return -1;
        return skip_cfws(c);
    }
    if (r->n_props >= AUTHRES_PROPS_MAX || !at(c, '.'))
        return -1;
    struct authres_prop *pr = &r->props[r->n_props++];
    str_copy(pr->ptype, ptype, sizeof(pr->ptype));
    c->p++;
    if (skip_cfws(c) < 0 || read_keyword(c, pr->property, sizeof(pr->property)) < 0 || skip_cfws(c) < 0 ||
        !at(c, '='))
        return -1;
    c->p++;
    if (skip_cfws(c) < 0 || read_pvalue(c, pr->value, sizeof(pr->value)) < 0)
        return -1;
    return skip_cfws(c);
}

/* resinfo after its ';': methodspec [reasonspec] [propspec...]. */
static int parse_resinfo(struct cur *c, struct authres_parsed *out)
{
    char method[64];
    if (read_keyword(c, method, sizeof(method)) < 0 || skip_cfws(c) < 0)
        return -1;
    if (c->p >= c->e || *c->p == ';') {
        if (strcmp(method, "none") != 0 || out->n > 0 || out->none)
            return -1;
        out->none = true;
        return 0;
    }
    if (out->n >= AUTHRES_RESULTS_MAX || out->none)
        return -1;
    struct authres_result *r = &out->res[out->n++];
    memset(r, 0, sizeof(*r));
    str_copy(r->method, method, sizeof(r->method));
    if (at(c, '/')) {
        int v;
        c->p++;
        if (skip_cfws(c) < 0 || parse_digits(c, &v) < 0 || skip_cfws(c) < 0)
            return -1;
    }
    if (!at(c, '='))
        return -1;
    c->p++;
    if (skip_cfws(c) < 0 || read_keyword(c, r->result, sizeof(r->result)) < 0 || skip_cfws(c) < 0)
        return -1;
    while (c->p < c->e && *c->p != ';')
        if (parse_property(c, r) < 0)
            return -1;
    return 0;
}

int authres_parse(const char *value, size_t len, struct authres_parsed *out)
{
    struct cur c = { value, value + len };
    memset(out, 0, sizeof(*out));
    out->version = 1;
    if (len > AUTHRES_FIELD_MAX || skip_cfws(&c) < 0 ||
        read_value(&c, out->authserv_id, sizeof(out->authserv_id)) < 0 || skip_cfws(&c) < 0)
        return -1;
    if (c.p < c.e && isdigit((unsigned char)*c.p) &&
        (parse_digits(&c, &out->version) < 0 || skip_cfws(&c) < 0))
        return -1;
    while (c.p < c.e) {
        if (!at(&c, ';'))
            return -1;
        c.p++;
        if (skip_cfws(&c) < 0)
            return -1;
        if (c.p >= c.e)
            break;                           /* a trailing ';' */
        if (parse_resinfo(&c, out) < 0)
            return -1;
    }
    return 0;
}

int authres_authserv_id(const char *value, size_t len, char *id, size_t size)
{
    struct cur c = { value, value + len };
    if (skip_cfws(&c) < 0)
        return -1;
    return read_value(&c, id, size);
}

bool authres_id_equal(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 0 && a[la - 1] == '.')
        la--;
    if (lb > 0 && b[lb - 1] == '.')
        lb--;
    return la == lb && la > 0 && strncasecmp(a, b, la) == 0;
}

int authres_find_ours(const char *msg, size_t len, const char *authserv_id, struct auth_range **ranges_r,
                      size_t *n_r)
{
    struct mime_header_iter it;
    struct mime_header_field f;
    static const char name[] = "Authentication-Results";
    size_t n = 0, alloc = 0;
    struct auth_range *r = NULL;
    *ranges_r = NULL;
    *n_r = 0;
    mime_header_iter_init(&it, msg, len, 0);
    while (mime_header_iter_next(&it, &f)) {
        if (f.value == NULL || f.name_len != sizeof(name) - 1 || strncasecmp(f.name, name, f.name_len) != 0)
            continue;
        char id[256];
        if (authres_authserv_id(f.value, f.value_len, id, sizeof(id)) < 0 || !authres_id_equal(id, authserv_id))
            continue;
        if (n == alloc) {
            size_t na = alloc ? alloc * 2 : 4;
            struct auth_range *nr = realloc(r, na * sizeof(*r));
            if (nr == NULL) {
                free(r);
                return -1;
            }
            r = nr;
            alloc = na;
        }
        r[n].off = f.offset;
        r[n].len = f.end - f.offset;
        n++;
    }
    *ranges_r = r;
    *n_r = n;
    return 0;
}

/* ---- formatting ---- */

/* Appends text to a field, inserting a line break before a space wherever
 * the line would pass AUTHRES_LINE_WIDTH (the space stays: unfolding gives
 * the text back exactly, RFC 5322 2.2.3).  *col is the current column. */
static void fold_append(struct strbuf *sb, const char *text, size_t *col)
{
    const char *p = text;
    bool first = true;
    while (*p || first) {
        const char *sp = strchr(p, ' ');
        size_t w = sp ? (size_t)(sp - p) : strlen(p);
        if (!first) {
            if (*col + 1 + w > AUTHRES_LINE_WIDTH && *col > 1) {
                strbuf_append(sb, "\r\n", 2);
                *col = 0;
            }
            strbuf_append(sb, " ", 1);
            (*col)++;
        }
        strbuf_append(sb, p, w);
        *col += w;
        first = false;
        if (sp == NULL)
            break;
        p = sp + 1;
    }
}

/* Text safe inside a comment: parentheses and backslashes quoted, controls
 * and 8-bit bytes replaced. */
static void comment_text(char *out, size_t size, const char *in)
{
    size_t n = 0;
    for (const char *p = in; *p && n + 3 < size; p++) {
        unsigned char ch = (unsigned char)*p;
        if (ch == '(' || ch == ')' || ch == '\\')
            out[n++] = '\\';
        out[n++] = ch < ' ' || ch >= 0x7f ? '?' : (char)ch;
    }
    out[n] = '\0';
}

/* A pvalue: bare when it is made of atext, '.', '@' only, else a
 * quoted-string. */
static void pvalue_text(char *out, size_t size, const char *in)
{
    bool bare = *in != '\0';
    for (const char *p = in; *p && bare; p++)
        bare = isalnum((unsigned char)*p) || strchr("!#$%&'*+-/=?^_`{|}~.@", *p) != NULL;
    if (bare) {
        str_copy(out, in, size);
        return;
    }
    size_t n = 0;
    out[n++] = '"';
    for (const char *p = in; *p && n + 4 < size; p++) {
        unsigned char ch = (unsigned char)*p;
        if (ch == '"' || ch == '\\')
            out[n++] = '\\';
        out[n++] = ch < ' ' || ch == 0x7f ? '?' : (char)ch;
    }
    out[n++] = '"';
    out[n] = '\0';
}

static void format_spf(const struct auth_input *in, const struct auth_outcome *o, char *buf, size_t size)
{
    char raw[400], c[800], v[700];
    const struct spf_response *s = &o->spf;
    if (s->problem[0] && s->result != SPF_PASS)
        str_copy(raw, s->problem, sizeof(raw));
    else
        snprintf(raw, sizeof(raw), "%s: %s is %s", in->authserv_id ? in->authserv_id : "", in->ip,
                 s->result == SPF_PASS ? "permitted" : s->result == SPF_NONE ? "not covered" : "not permitted");
    comment_text(c, sizeof(c), raw);
    bool null_sender = in->mail_from == NULL || in->mail_from[0] == '\0';
    pvalue_text(v, sizeof(v), null_sender ? (in->helo ? in->helo : "") : in->mail_from);
    snprintf(buf, size, "spf=%s (%s) %s=%s", spf_result_name(s->result), c,
             null_sender ? "smtp.helo" : "smtp.mailfrom", v);
}

static void format_dmarc(const struct dmarc_eval *ev, char *buf, size_t size)
{
    char c[700];
    if (ev->have_record) {
        char np[32] = "";
        if (ev->rec.np_set)
            snprintf(np, sizeof(np), " np=%s", dmarc_policy_name(ev->rec.np));
        snprintf(c, sizeof(c), "p=%s sp=%s%s dis=%s%s", dmarc_policy_name(ev->rec.p),
                 dmarc_policy_name(ev->rec.sp), np, dmarc_policy_name(ev->disposition),
                 ev->sampled_out ? "; pct sampled out" : "");
    } else {
        comment_text(c, sizeof(c), ev->why[0] ? ev->why : "no policy");
    }
    int n = snprintf(buf, size, "dmarc=%s (%s)", dmarc_result_name(ev->result), c);
    if (ev->from_domain[0] && n > 0 && (size_t)n < size) {
        char v[300];
        pvalue_text(v, sizeof(v), ev->from_domain);
        snprintf(buf + n, size - (size_t)n, " header.from=%s", v);
    }
}

/* One resinfo on its own line, folded. */
static void add_segment(struct strbuf *sb, const char *seg)
{
    size_t col = 1;
    strbuf_append(sb, ";\r\n\t", 4);
    fold_append(sb, seg, &col);
}

static int build_authres(const struct auth_input *in, struct auth_outcome *o)
{
    struct strbuf *sb = &o->authres;
    char id[300], seg[2048];
    pvalue_text(id, sizeof(id), in->authserv_id && *in->authserv_id ? in->authserv_id : "localhost");
    strbuf_printf(sb, "Authentication-Results: %s", id);
    if (o->spf_done) {
        format_spf(in, o, seg, sizeof(seg));
        add_segment(sb, seg);
    }
    if (o->n_dkim == 0)
        add_segment(sb, "dkim=none (message not signed)");
    for (int i = 0; i < o->n_dkim; i++)
        add_segment(sb, dkim_verdict_format(&o->dkim[i], seg, sizeof(seg)));
    for (int i = 0; i < o->n_dmarc; i++) {
        format_dmarc(&o->dmarc[i], seg, sizeof(seg));
        add_segment(sb, seg);
    }
    return strbuf_append(sb, "\r\n", 2);
}

static int build_received_spf(const struct auth_input *in, struct auth_outcome *o)
{
    if (!o->spf_done)
        return 0;
    char v[4096];
    struct spf_request req = { .ip = in->ip, .helo = in->helo, .mail_from = in->mail_from,
                               .receiver = in->authserv_id };
    if (spf_received_spf(&o->spf, &req, v, sizeof(v)) < 0)
        snprintf(v, sizeof(v), "%s", spf_result_name(o->spf.result));
    size_t col = strlen("Received-SPF: ");
    strbuf_append(&o->received_spf, "Received-SPF: ", col);
    fold_append(&o->received_spf, v, &col);
    return strbuf_append(&o->received_spf, "\r\n", 2);
}

/* ---- evaluation ---- */

static enum dkim_dns_status dkim_lookup_via(const char *name, struct dkim_txt *txt, void *arg)
{
    const struct dmarc_dns *dns = arg;
    struct dns_result res = { 0 };
    enum dns_status st = dns->query(dns->arg, name, DNS_T_TXT, &res);
    enum dkim_dns_status out = DKIM_DNS_NONE;
    if (st == DNS_TEMPFAIL) {
        out = DKIM_DNS_TEMPFAIL;
    } else if (st == DNS_OK) {
        for (size_t i = 0; i < res.n; i++)
            if (res.rr[i].type == DNS_T_TXT && res.rr[i].text != NULL)
                dkim_txt_add(txt, res.rr[i].text, res.rr[i].text_len);
        out = txt->n > 0 ? DKIM_DNS_FOUND : DKIM_DNS_NONE;
    }
    dns_result_free(&res);
    return out;
}

/* Worst first: the order results combine in over several From domains. */
static int result_rank(enum dmarc_result r)
{
    switch (r) {
    case DMARC_RESULT_FAIL: return 4;
    case DMARC_RESULT_TEMPERROR: return 3;
    case DMARC_RESULT_PERMERROR: return 2;
    case DMARC_RESULT_NONE: return 1;
    case DMARC_RESULT_PASS: break;
    }
    return 0;
}

static const char *from_problem(enum dmarc_from_status st)
{
    switch (st) {
    case DMARC_FROM_MISSING: return "no From field";
    case DMARC_FROM_TOO_MANY: return "too many From domains";
    case DMARC_FROM_BAD: return "malformed From field";
    case DMARC_FROM_OK: break;
    }
    return "";
}

/* Every From domain is evaluated and the strictest outcome applies (RFC
 * 7489 6.6.1).  A missing or malformed From adds a permerror entry; one
 * with more domains than DMARC_FROM_MAX also gets at least quarantine,
 * since a domain we did not look at may have asked for more (local
 * policy: such From fields are not seen in legitimate mail). */
static void run_dmarc(const struct dmarc_dns *dns, const struct auth_input *in, struct auth_outcome *o)
{
    char domains[DMARC_FROM_MAX][DNS_NAME_MAX + 2];
    int n = 0;
    enum dmarc_from_status fs = dmarc_from_domains(in->msg, in->len, domains, DMARC_FROM_MAX, &n);
    char spf_domain[DNS_NAME_MAX + 2];
    str_copy(spf_domain, o->spf.domain, sizeof(spf_domain));
    struct dmarc_request req = {
        .spf_done = o->spf_done, .spf = o->spf.result, .spf_domain = spf_domain,
        .dkim = o->dkim, .n_dkim = o->n_dkim, .rand_pct = in->rand_pct, .rand_arg = in->rand_arg,
    };
    for (int i = 0; i < n; i++) {
        req.from_domain = domains[i];
        dmarc_evaluate(dns, &req, &o->dmarc[i]);
    }
    o->n_dmarc = n;
    if (n > 0)
        str_copy(o->header_from, o->dmarc[0].from_domain, sizeof(o->header_from));
    if (fs != DMARC_FROM_OK) {
        struct dmarc_eval *ev = &o->dmarc[o->n_dmarc++];
        memset(ev, 0, sizeof(*ev));
        ev->result = DMARC_RESULT_PERMERROR;
        ev->policy_tag = "p";
        str_copy(ev->why, from_problem(fs), sizeof(ev->why));
        if (fs == DMARC_FROM_TOO_MANY)
            ev->disposition = DMARC_POLICY_QUARANTINE;
    }
    o->dmarc_result = DMARC_RESULT_PASS;
    for (int i = 0; i < o->n_dmarc; i++) {
        const struct dmarc_eval *ev = &o->dmarc[i];
        if (result_rank(ev->result) > result_rank(o->dmarc_result))
            o->dmarc_result = ev->result;
        if (ev->disposition > o->disposition) {
            o->disposition = ev->disposition;
            if (ev->disposition == DMARC_POLICY_REJECT)
                snprintf(o->reply, sizeof(o->reply),
                         "550 5.7.1 Message rejected by the DMARC policy of %s", ev->record_domain);
        }
        o->sampled_out = o->sampled_out || ev->sampled_out;
    }
}

int auth_evaluate_dns(const struct dmarc_dns *dns, const struct auth_input *in, struct auth_outcome *out)
{
    memset(out, 0, sizeof(*out));
    strbuf_init(&out->authres, AUTHRES_HEADER_MAX);
    strbuf_init(&out->received_spf, AUTHRES_HEADER_MAX);
    if (authres_find_ours(in->msg, in->len, in->authserv_id ? in->authserv_id : "", &out->drop,
                          &out->n_drop) < 0)
        return -1;
    if (in->ip != NULL && in->ip[0] != '\0') {
        struct spf_dns sd = { dns->query, dns->arg };
        struct spf_request req = { .ip = in->ip, .helo = in->helo ? in->helo : "",
                                   .mail_from = in->mail_from, .receiver = in->authserv_id };
        spf_check_mailfrom(&sd, &req, &out->spf);
        out->spf_done = true;
    }
    time_t now = in->now ? in->now : time(NULL);
    int n = dkim_verify_message(in->msg, in->len, now, dkim_lookup_via, (void *)dns, out->dkim,
                                DKIM_MAX_SIGNATURES);
    if (n < 0)
        return -1;
    out->n_dkim = n < DKIM_MAX_SIGNATURES ? n : DKIM_MAX_SIGNATURES;
    run_dmarc(dns, in, out);
    if (build_authres(in, out) < 0 || build_received_spf(in, out) < 0)
        return -1;
    return 0;
}

static enum dns_status resolver_query(void *arg, const char *name, uint16_t type, struct dns_result *res)
{
    if (arg == NULL) { /* no resolver could be started: every lookup is temporary */
        memset(res, 0, sizeof(*res));
        res->status = DNS_TEMPFAIL;
        res->rcode = -1;
        str_copy(res->why, "no resolver", sizeof(res->why));
        return DNS_TEMPFAIL;
    }
    return dns_query(arg, name, type, res);
}

struct cached_dns {
    struct dns_resolver *r;
    bool missed;
};

static enum dns_status cached_query(void *arg, const char *name, uint16_t type, struct dns_result *res)
{
    struct cached_dns *cd = arg;
    if (cd->r != NULL && dns_query_cached(cd->r, name, type, res))
        return res->status;
    cd->missed = true;
    memset(res, 0, sizeof(*res));
    res->rcode = -1;
    res->status = DNS_TEMPFAIL;
    str_copy(res->why, "not cached", sizeof(res->why));
    return DNS_TEMPFAIL;
}

int auth_evaluate_cached(struct dns_resolver *r, const struct auth_input *in, struct auth_outcome *out)
{
    struct cached_dns cd = { r, false };
    struct dmarc_dns dns = { cached_query, &cd };
    int rc = auth_evaluate_dns(&dns, in, out);
    if (rc < 0)
        return -1;
    if (cd.missed) {
        auth_outcome_free(out);
        memset(out, 0, sizeof(*out));
        return 0;
    }
    return 1;
}

int auth_evaluate(struct dns_resolver *r, const struct auth_input *in, struct auth_outcome *out)
{
    struct dmarc_dns dns = { resolver_query, r };
    return auth_evaluate_dns(&dns, in, out);
}

void auth_outcome_free(struct auth_outcome *out)
{
    strbuf_free(&out->authres);
    strbuf_free(&out->received_spf);
    free(out->drop);
    out->drop = NULL;
    out->n_drop = 0;
}

/* ---- writing ---- */

int auth_write_stripped(const struct auth_outcome *o, const char *msg, size_t len, auth_write_fn *fn, void *arg)
{
    size_t pos = 0;
    for (size_t i = 0; i < o->n_drop; i++) {
        const struct auth_range *r = &o->drop[i];
        if (r->off < pos || r->off + r->len > len)
            continue;                        /* not from this message: ignore */
        if (r->off > pos && fn(arg, msg + pos, r->off - pos) < 0)
            return -1;
        pos = r->off + r->len;
    }
    if (pos < len && fn(arg, msg + pos, len - pos) < 0)
        return -1;
    return 0;
}

int auth_write_message(const struct auth_outcome *o, const char *msg, size_t len, auth_write_fn *fn, void *arg)
{
    if (o->authres.len && fn(arg, o->authres.data, o->authres.len) < 0)
        return -1;
    if (o->received_spf.len && fn(arg, o->received_spf.data, o->received_spf.len) < 0)
        return -1;
    return auth_write_stripped(o, msg, len, fn, arg);
}

size_t auth_message_size(const struct auth_outcome *o, size_t len)
{
    size_t n = o->authres.len + o->received_spf.len, pos = 0;
    for (size_t i = 0; i < o->n_drop; i++) {
        const struct auth_range *r = &o->drop[i];
        if (r->off < pos || r->off + r->len > len)
            continue;
        n += r->off - pos;
        pos = r->off + r->len;
    }
    return n + (len - pos);
}

/* ---- aggregate data ---- */

int auth_outcome_note(struct store *st, const struct auth_input *in, const struct auth_outcome *o,
                      const char **error_r)
{
    const char *at = in->mail_from ? strrchr(in->mail_from, '@') : NULL;
    struct dmarc_report_input ri = {
        .source_ip = in->ip ? in->ip : "",
        .envelope_from = at ? at + 1 : "",
        .spf = o->spf_done ? &o->spf : NULL,
        .dkim = o->dkim,
        .n_dkim = o->n_dkim,
        .now = in->now ? in->now : time(NULL),
    };
    for (int i = 0; i < o->n_dmarc; i++)
        if (dmarc_report_note(st, &o->dmarc[i], &ri, error_r) < 0)
            return -1;
    return 0;
}
