/*
 * SEARCH and UID SEARCH (RFC 9051 6.4.4, RFC 3501 6.4.4) with ESEARCH
 * (RFC 4731) return options, SEARCHRES (RFC 5182) and MODSEQ
 * (RFC 7162 3.1.5).
 *
 * The criteria become a tree of keys (depth-bounded by the parser);
 * messages are evaluated one by one, reading the file and parsing it
 * only when a key needs headers or text.  Strings match as
 * case-insensitive substrings of the decoded text: RFC 2047 words in
 * headers, base64 and quoted-printable bodies converted from their
 * charset to UTF-8.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "imap/imap_int.h"
#include "mime/mime.h"
#include "mime/mime_codec.h"

enum sk_type {
    SK_ALL, SK_AND, SK_OR, SK_NOT, SK_SEQSET, SK_UIDSET, SK_FLAG, SK_UNFLAG, SK_KEYWORD,
    SK_UNKEYWORD, SK_NEW, SK_OLD, SK_RECENT, SK_BEFORE, SK_ON, SK_SINCE, SK_SENTBEFORE,
    SK_SENTON, SK_SENTSINCE, SK_LARGER, SK_SMALLER, SK_HEADER, SK_BODY, SK_TEXT, SK_MODSEQ,
    SK_OLDER, SK_YOUNGER
};

struct skey {
    enum sk_type type;
    struct skey *child, *next;     /* AND/OR/NOT children; siblings */
    struct imap_seqset set;
    uint32_t flag;
    char *str, *hdr;
    int64_t num;
};

struct search_ctx {
    struct imap_cmd *c;
    struct skey *root;
    bool needs_content;
    uint32_t *hits;
    size_t n_hits;
    uint64_t max_modseq;
    bool uses_modseq;
    const uint32_t *saved;          /* "$" as it was before this command */
    size_t n_saved;
};

/* ---- parsing ---- */

static struct skey *new_key(struct imap_cmd *c, enum sk_type t)
{
    struct skey *k = imap_pool_alloc(&c->pool, sizeof(*k));
    if (k)
        k->type = t;
    return k;
}

static int parse_key(struct search_ctx *x, struct skey **k_r);

static int parse_str(struct imap_cmd *c, char **s_r)
{
    size_t len;
    return imap_parse_sp(&c->ps) < 0 || imap_parse_astring(&c->ps, s_r, &len) < 0 ? -1 : 0;
}

static const struct { const char *name; enum sk_type type; uint32_t flag; } flag_keys[] = {
    { "ANSWERED", SK_FLAG, STORE_FLAG_ANSWERED }, { "DELETED", SK_FLAG, STORE_FLAG_DELETED },
    { "DRAFT", SK_FLAG, STORE_FLAG_DRAFT }, { "FLAGGED", SK_FLAG, STORE_FLAG_FLAGGED },
    { "SEEN", SK_FLAG, STORE_FLAG_SEEN }, { "UNANSWERED", SK_UNFLAG, STORE_FLAG_ANSWERED },
    { "UNDELETED", SK_UNFLAG, STORE_FLAG_DELETED }, { "UNDRAFT", SK_UNFLAG, STORE_FLAG_DRAFT },
    { "UNFLAGGED", SK_UNFLAG, STORE_FLAG_FLAGGED }, { "UNSEEN", SK_UNFLAG, STORE_FLAG_SEEN },
    { "ALL", SK_ALL, 0 }, { "NEW", SK_NEW, 0 }, { "OLD", SK_OLD, 0 }, { "RECENT", SK_RECENT, 0 },
};

static const struct { const char *name; enum sk_type type; } date_keys[] = {
    { "BEFORE", SK_BEFORE }, { "ON", SK_ON }, { "SINCE", SK_SINCE },
    { "SENTBEFORE", SK_SENTBEFORE }, { "SENTON", SK_SENTON }, { "SENTSINCE", SK_SENTSINCE },
};

static const char *const addr_keys[] = { "FROM", "TO", "CC", "BCC", "SUBJECT", NULL };

static int parse_modseq_key(struct search_ctx *x, struct skey *k)
{
    struct imap_parser *ps = &x->c->ps;
    uint64_t v;
    if (imap_parse_sp(ps) < 0)
        return -1;
    if (imap_parse_peek(ps, '"')) {
        /* entry-name SP entry-type-req: accepted, only the number counts */
        char *name, *type;
        size_t len;
        if (imap_parse_string(ps, &name, &len) < 0 || imap_parse_sp(ps) < 0 ||
            imap_parse_atom(ps, &type) < 0 || imap_parse_sp(ps) < 0)
            return -1;
    }
    if (imap_parse_number64(ps, &v) < 0)
        return -1;
    k->num = (int64_t)v;
    x->uses_modseq = true;
    x->c->s->enabled |= IMAP_EN_CONDSTORE;
    return 0;
}

static int parse_named(struct search_ctx *x, const char *name, struct skey **k_r)
{
    struct imap_cmd *c = x->c;
    struct imap_parser *ps = &c->ps;
    struct skey *k = NULL;
    for (size_t i = 0; i < sizeof(flag_keys) / sizeof(flag_keys[0]); i++)
        if (strcasecmp(name, flag_keys[i].name) == 0) {
            k = new_key(c, flag_keys[i].type);
            if (k)
                k->flag = flag_keys[i].flag;
            *k_r = k;
            return k ? 0 : -1;
        }
    for (size_t i = 0; i < sizeof(date_keys) / sizeof(date_keys[0]); i++)
        if (strcasecmp(name, date_keys[i].name) == 0) {
            k = new_key(c, date_keys[i].type);
            *k_r = k;
            if (k == NULL || imap_parse_sp(ps) < 0 || imap_parse_date(ps, &k->num) < 0)
                return -1;
            if (k->type >= SK_SENTBEFORE)
                x->needs_content = true;
            return 0;
        }
    for (int i = 0; addr_keys[i]; i++)
        if (strcasecmp(name, addr_keys[i]) == 0) {
            k = new_key(c, SK_HEADER);
            *k_r = k;
            if (k == NULL || parse_str(c, &k->str) < 0)
                return -1;
            k->hdr = (char *)addr_keys[i];
            x->needs_content = true;
            return 0;
        }
    if (strcasecmp(name, "HEADER") == 0) {
        k = new_key(c, SK_HEADER);
        *k_r = k;
        x->needs_content = true;
        return k == NULL || parse_str(c, &k->hdr) < 0 || parse_str(c, &k->str) < 0 ? -1 : 0;
    }
    if (strcasecmp(name, "BODY") == 0 || strcasecmp(name, "TEXT") == 0) {
        k = new_key(c, strcasecmp(name, "BODY") == 0 ? SK_BODY : SK_TEXT);
        *k_r = k;
        x->needs_content = true;
        return k == NULL || parse_str(c, &k->str) < 0 ? -1 : 0;
    }
    if (strcasecmp(name, "KEYWORD") == 0 || strcasecmp(name, "UNKEYWORD") == 0) {
        k = new_key(c, strcasecmp(name, "KEYWORD") == 0 ? SK_KEYWORD : SK_UNKEYWORD);
        *k_r = k;
        return k == NULL || imap_parse_sp(ps) < 0 || imap_parse_flag(ps, false, &k->str) < 0 ? -1 : 0;
    }
    if (strcasecmp(name, "LARGER") == 0 || strcasecmp(name, "SMALLER") == 0 ||
        strcasecmp(name, "OLDER") == 0 || strcasecmp(name, "YOUNGER") == 0) {
        enum sk_type t = strcasecmp(name, "LARGER") == 0    ? SK_LARGER
                         : strcasecmp(name, "SMALLER") == 0 ? SK_SMALLER
                         : strcasecmp(name, "OLDER") == 0   ? SK_OLDER
                                                            : SK_YOUNGER;
        k = new_key(c, t);
        *k_r = k;
        uint64_t v;
        if (k == NULL || imap_parse_sp(ps) < 0 || imap_parse_number64(ps, &v) < 0)
            return -1;
        k->num = (int64_t)v;
        return 0;
    }
    if (strcasecmp(name, "UID") == 0) {
        k = new_key(c, SK_UIDSET);
        *k_r = k;
        return k == NULL || imap_parse_sp(ps) < 0 || imap_parse_seqset(ps, &k->set) < 0 ? -1 : 0;
    }
    if (strcasecmp(name, "MODSEQ") == 0) {
        k = new_key(c, SK_MODSEQ);
        *k_r = k;
        return k == NULL ? -1 : parse_modseq_key(x, k);
    }
    if (strcasecmp(name, "NOT") == 0) {
        k = new_key(c, SK_NOT);
        *k_r = k;
        return k == NULL || imap_parse_sp(ps) < 0 || parse_key(x, &k->child) < 0 ? -1 : 0;
    }
    if (strcasecmp(name, "OR") == 0) {
        k = new_key(c, SK_OR);
        *k_r = k;
        if (k == NULL || imap_parse_sp(ps) < 0 || parse_key(x, &k->child) < 0 ||
            imap_parse_sp(ps) < 0 || parse_key(x, &k->child->next) < 0)
            return -1;
        return 0;
    }
    ps->error = "unknown search key";
    return -1;
}

static int parse_key(struct search_ctx *x, struct skey **k_r)
{
    struct imap_cmd *c = x->c;
    struct imap_parser *ps = &c->ps;
    if (imap_parse_peek(ps, '(')) {
        if (imap_parse_open(ps) < 0)
            return -1;
        struct skey *k = new_key(c, SK_AND), **tail = &k->child;
        *k_r = k;
        do {
            if (parse_key(x, tail) < 0)
                return -1;
            tail = &(*tail)->next;
        } while (imap_parse_char(ps, ' '));
        return imap_parse_close(ps);
    }
    if (imap_parse_peek(ps, '$') || imap_parse_peek(ps, '*') ||
        (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9')) {
        struct skey *k = new_key(c, SK_SEQSET);
        *k_r = k;
        return k == NULL ? -1 : imap_parse_seqset(ps, &k->set);
    }
    char *name;
    if (imap_parse_atom(ps, &name) < 0)
        return -1;
    return parse_named(x, name, k_r);
}

/* ---- evaluation ---- */

struct search_msg {
    const struct store_imap_msg *m;
    uint32_t seq;
    bool loaded, failed;
    void *map;
    const char *data;
    size_t len;
    struct mime_message *mime;
    struct strbuf body;             /* decoded text of all text parts */
    bool body_done;
};

static bool ci_contains(const char *hay, size_t hlen, const char *needle)
{
    size_t nl = strlen(needle);
    if (nl == 0)
        return true;
    if (nl > hlen)
        return false;
    for (size_t i = 0; i + nl <= hlen; i++)
        if (strncasecmp(hay + i, needle, nl) == 0)
            return true;
    return false;
}

static int sm_load(struct search_ctx *x, struct search_msg *sm)
{
    if (sm->loaded)
        return sm->failed ? -1 : 0;
    sm->loaded = true;
    int fd = store_imap_msg_open(imap_store(x->c->s), sm->m);
    if (fd < 0) {
        sm->failed = true;
        return -1;
    }
    off_t size = lseek(fd, 0, SEEK_END);
    sm->data = "";
    if (size > 0) {
        sm->map = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (sm->map == MAP_FAILED) {
            sm->map = NULL;
            close(fd);
            sm->failed = true;
            return -1;
        }
        sm->data = sm->map;
        sm->len = (size_t)size;
    }
    close(fd);
    sm->mime = mime_parse(sm->data, sm->len);
    if (sm->mime == NULL)
        sm->failed = true;
    return sm->failed ? -1 : 0;
}

static void sm_free(struct search_msg *sm)
{
    if (sm->mime)
        mime_message_free(sm->mime);
    if (sm->map)
        munmap(sm->map, sm->len);
    strbuf_free(&sm->body);
}

static bool match_header(struct search_msg *sm, const char *hdr, const char *str)
{
    struct mime_header_iter it;
    struct mime_header_field f;
    const struct mime_part *root = sm->mime->root;
    mime_header_iter_init(&it, sm->data, root->body_offset, root->hdr_offset);
    size_t hl = hdr ? strlen(hdr) : 0;
    while (mime_header_iter_next(&it, &f)) {
        if (f.value == NULL)
            continue;
        if (hdr && (f.name_len != hl || strncasecmp(f.name, hdr, hl) != 0))
            continue;
        if (str[0] == '\0')
            return true;
        struct strbuf raw, dec;
        strbuf_init(&raw, 1u << 20);
        strbuf_init(&dec, 1u << 21);
        mime_header_unfold(f.value, f.value_len, true, &raw);
        mime_rfc2047_decode(raw.data ? raw.data : "", raw.len, &dec);
        bool hit = ci_contains(dec.data ? dec.data : "", dec.len, str) ||
                   ci_contains(raw.data ? raw.data : "", raw.len, str);
        strbuf_free(&raw);
        strbuf_free(&dec);
        if (hit)
            return true;
    }
    return false;
}

static bool match_body(struct search_msg *sm, const char *str)
{
    if (!sm->body_done) {
        sm->body_done = true;
        strbuf_init(&sm->body, 64u << 20);
        for (const struct mime_part *p = sm->mime->root; p; p = mime_part_next(p)) {
            if (p->flags & (MIME_PART_MULTIPART | MIME_PART_MESSAGE))
                continue;
            if (mime_part_is_text(p))
                mime_part_decode(sm->mime, p, true, &sm->body);
            strbuf_append(&sm->body, "\n", 1);
        }
    }
    return ci_contains(sm->body.data ? sm->body.data : "", sm->body.len, str);
}

static int64_t day_of(int64_t t)
{
    time_t tt = (time_t)t;
    struct tm tm;
    localtime_r(&tt, &tm);
    return (t + tm.tm_gmtoff) / 86400 - (t + tm.tm_gmtoff < 0);
}

/* The day of the Date: header in its own zone (RFC 3501 6.4.4 SENT*). */
static int64_t sent_day(struct search_msg *sm)
{
    struct strbuf v;
    strbuf_init(&v, 4096);
    int64_t day = -1;
    if (mime_header_get(sm->data, sm->len, 0, "Date", &v) == 1 && v.data) {
        static const char mon[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
        int d, y;
        char m[4];
        const char *p = v.data;
        const char *comma = memchr(p, ',', v.len);
        if (comma)
            p = comma + 1;
        if (sscanf(p, " %d %3s %d", &d, m, &y) == 3) {
            const char *hit = strcasestr(mon, m);
            if (hit && strlen(m) == 3) {
                if (y < 50)
                    y += 2000;
                else if (y < 1000)
                    y += 1900;
                struct tm tm = { .tm_mday = d, .tm_mon = (int)(hit - mon) / 3, .tm_year = y - 1900 };
                day = (int64_t)timegm(&tm) / 86400;
            }
        }
    }
    strbuf_free(&v);
    return day;
}

static bool eval(struct search_ctx *x, const struct skey *k, struct search_msg *sm)
{
    const struct store_imap_msg *m = sm->m;
    struct imap_view *v = x->c->s->sel;
    switch (k->type) {
    case SK_ALL:
        return true;
    case SK_AND:
        for (const struct skey *c = k->child; c; c = c->next)
            if (!eval(x, c, sm))
                return false;
        return true;
    case SK_OR:
        return eval(x, k->child, sm) || eval(x, k->child->next, sm);
    case SK_NOT:
        return !eval(x, k->child, sm);
    case SK_SEQSET:
        if (k->set.dollar) {
            for (size_t i = 0; i < x->n_saved; i++)
                if (x->saved[i] == m->uid)
                    return true;
            return false;
        }
        return imap_seqset_contains(&k->set, sm->seq, (uint32_t)v->n);
    case SK_UIDSET:
        if (k->set.dollar) {
            for (size_t i = 0; i < x->n_saved; i++)
                if (x->saved[i] == m->uid)
                    return true;
            return false;
        }
        return imap_seqset_contains(&k->set, m->uid, v->n ? v->uids[v->n - 1] : 0);
    case SK_FLAG:
        return (m->flags & k->flag) != 0;
    case SK_UNFLAG:
        return (m->flags & k->flag) == 0;
    case SK_KEYWORD:
    case SK_UNKEYWORD: {
        bool has = false;
        size_t kl = strlen(k->str);
        for (const char *p = m->keywords; *p && !has;) {
            const char *e = strchr(p, ' ');
            size_t wl = e ? (size_t)(e - p) : strlen(p);
            has = wl == kl && strncasecmp(p, k->str, kl) == 0;
            p += wl + (e != NULL);
        }
        return has == (k->type == SK_KEYWORD);
    }
    case SK_NEW:
        return imap_view_recent(v, m->uid) && !(m->flags & STORE_FLAG_SEEN);
    case SK_OLD:
        return !imap_view_recent(v, m->uid);
    case SK_RECENT:
        return imap_view_recent(v, m->uid);
    case SK_BEFORE:
        return day_of(m->internaldate) < k->num / 86400;
    case SK_ON:
        return day_of(m->internaldate) == k->num / 86400;
    case SK_SINCE:
        return day_of(m->internaldate) >= k->num / 86400;
    case SK_SENTBEFORE:
    case SK_SENTON:
    case SK_SENTSINCE: {
        if (sm_load(x, sm) < 0)
            return false;
        int64_t d = sent_day(sm);
        if (d < 0)
            d = day_of(m->internaldate);
        int64_t want = k->num / 86400;
        return k->type == SK_SENTBEFORE ? d < want : k->type == SK_SENTON ? d == want : d >= want;
    }
    case SK_LARGER:
        return m->size > (uint64_t)k->num;
    case SK_SMALLER:
        return m->size < (uint64_t)k->num;
    case SK_OLDER:
        return (int64_t)time(NULL) - m->internaldate >= k->num;
    case SK_YOUNGER:
        return (int64_t)time(NULL) - m->internaldate <= k->num;
    case SK_MODSEQ:
        if (m->modseq >= (uint64_t)k->num) {
            if (m->modseq > x->max_modseq)
                x->max_modseq = m->modseq;
            return true;
        }
        return false;
    case SK_HEADER:
        return sm_load(x, sm) == 0 && match_header(sm, k->hdr, k->str);
    case SK_BODY:
        return sm_load(x, sm) == 0 && match_body(sm, k->str);
    case SK_TEXT:
        return sm_load(x, sm) == 0 && (match_header(sm, NULL, k->str) || match_body(sm, k->str));
    }
    return false;
}

/* ---- the command ---- */

static int search_one(const struct store_imap_msg *m, void *arg)
{
    struct search_ctx *x = arg;
    struct search_msg sm;
    memset(&sm, 0, sizeof(sm));
    sm.m = m;
    sm.seq = imap_view_seq(x->c->s->sel, m->uid);
    if (sm.seq == 0)
        return 0;
    if (eval(x, x->root, &sm))
        x->hits[x->n_hits++] = m->uid;
    sm_free(&sm);
    return 0;
}

int imap_parse_search_return(struct imap_cmd *c, bool allow_save, unsigned *ret_r,
                             bool *extended_r)
{
    struct imap_parser *ps = &c->ps;
    const char *save = ps->p;
    char *kw;
    if (!(ps->end - ps->p > 7 && strncasecmp(ps->p, "RETURN ", 7) == 0))
        return 0;
    if (imap_parse_atom(ps, &kw) < 0 || imap_parse_sp(ps) < 0 || imap_parse_open(ps) < 0) {
        ps->p = save;
        return -1;
    }
    *extended_r = true;
    while (!imap_parse_peek(ps, ')')) {
        char *o;
        if (imap_parse_atom(ps, &o) < 0)
            return -1;
        if (strcasecmp(o, "MIN") == 0) *ret_r |= IMAP_RET_MIN;
        else if (strcasecmp(o, "MAX") == 0) *ret_r |= IMAP_RET_MAX;
        else if (strcasecmp(o, "ALL") == 0) *ret_r |= IMAP_RET_ALL;
        else if (strcasecmp(o, "COUNT") == 0) *ret_r |= IMAP_RET_COUNT;
        else if (allow_save && strcasecmp(o, "SAVE") == 0) *ret_r |= IMAP_RET_SAVE;
        else {
            ps->error = allow_save ? "unknown RETURN option" : "RETURN option (MIN MAX COUNT ALL)";
            return -1;
        }
        if (!imap_parse_char(ps, ' '))
            break;
    }
    if (imap_parse_close(ps) < 0 || imap_parse_sp(ps) < 0)
        return -1;
    if (*ret_r == 0)
        *ret_r = IMAP_RET_ALL;
    return 0;
}

void imap_write_search_reply(struct strbuf *sb, const char *verb, bool extended,
                             const struct imap_cmd *c, unsigned ret, const uint32_t *nums,
                             size_t n, bool uses_modseq, uint64_t max_modseq)
{
    if (!extended) {
        strbuf_printf(sb, "* %s", verb);
        for (size_t i = 0; i < n; i++)
            strbuf_printf(sb, " %u", nums[i]);
        if (uses_modseq && n > 0)
            strbuf_printf(sb, " (MODSEQ %llu)", (unsigned long long)max_modseq);
        return;
    }
    strbuf_append(sb, "* ESEARCH (TAG ", 15);
    imap_write_string(sb, c->tag, strlen(c->tag));
    strbuf_append(sb, ")", 1);
    if (c->uid)
        strbuf_append(sb, " UID", 4);
    if (n > 0 && (ret & IMAP_RET_MIN))
        strbuf_printf(sb, " MIN %u", nums[0]);
    if (n > 0 && (ret & IMAP_RET_MAX))
        strbuf_printf(sb, " MAX %u", nums[n - 1]);
    if (ret & IMAP_RET_COUNT)
        strbuf_printf(sb, " COUNT %zu", n);
    if (n > 0 && (ret & IMAP_RET_ALL)) {
        strbuf_append(sb, " ALL ", 5);
        imap_uidset_write(sb, nums, n);
    }
    if (uses_modseq && n > 0)
        strbuf_printf(sb, " MODSEQ %llu", (unsigned long long)max_modseq);
}

static void send_results(struct search_ctx *x, unsigned ret, bool esearch)
{
    struct imap_cmd *c = x->c;
    struct imap_session *s = c->s;
    struct strbuf sb;
    strbuf_init(&sb, 64u << 20);
    uint32_t *nums = x->hits;
    if (!c->uid) {
        for (size_t i = 0; i < x->n_hits; i++)
            nums[i] = imap_view_seq(s->sel, x->hits[i]);
    }
    imap_write_search_reply(&sb, "SEARCH", esearch, c, ret, nums, x->n_hits, x->uses_modseq,
                            x->max_modseq);
    strbuf_append(&sb, "\r\n", 2);
    if (sb.data && !(esearch && ret == IMAP_RET_SAVE))
        imap_send_raw(s, sb.data, sb.len);
    strbuf_free(&sb);
}

/* Parses the search keys up to the end of the command and evaluates
 * them: x->hits (malloc'ed) holds the matching UIDs, ascending.  0, or
 * -1 with the reply sent. */
static int search_run(struct search_ctx *x)
{
    struct imap_cmd *c = x->c;
    struct imap_session *s = c->s;
    struct imap_parser *ps = &c->ps;
    struct skey *root = new_key(c, SK_AND);
    if (root == NULL) {
        imap_no(c, "[LIMIT] Out of memory");
        return -1;
    }
    struct skey **tail = &root->child;
    do {
        if (parse_key(x, tail) < 0)
            goto bad;
        tail = &(*tail)->next;
    } while (imap_parse_char(ps, ' '));
    if (imap_parse_end(ps) < 0)
        goto bad;
    x->root = root;
    struct imap_view *v = s->sel;
    x->saved = v->searchres;
    x->n_saved = v->n_searchres;
    x->hits = malloc((v->n + 1) * sizeof(uint32_t));
    if (x->hits == NULL) {
        imap_no(c, "[LIMIT] Out of memory");
        return -1;
    }
    if (v->n > 0 &&
        store_imap_msgs(imap_store(s), v->id, v->uids[0], v->uids[v->n - 1], search_one, x) < 0) {
        free(x->hits);
        x->hits = NULL;
        imap_no_store(c, "Search failed");
        return -1;
    }
    return 0;
bad:
    imap_bad_syntax(c);
    return -1;
}

int imap_search_run(struct imap_cmd *c, struct imap_search_result *r)
{
    struct search_ctx x;
    memset(&x, 0, sizeof(x));
    x.c = c;
    if (search_run(&x) < 0)
        return -1;
    r->uids = x.hits;
    r->n = x.n_hits;
    r->uses_modseq = x.uses_modseq;
    r->max_modseq = x.max_modseq;
    return 0;
}

int imap_search_charset(struct imap_cmd *c)
{
    char *cs;
    size_t len;
    if (imap_parse_astring(&c->ps, &cs, &len) < 0) {
        imap_bad_syntax(c);
        return -1;
    }
    if (strcasecmp(cs, "UTF-8") != 0 && strcasecmp(cs, "US-ASCII") != 0) {
        imap_no(c, "[BADCHARSET (US-ASCII UTF-8)] Unsupported charset");
        return -1;
    }
    return 0;
}

void imap_cmd_search(struct imap_cmd *c)
{
    struct imap_session *s = c->s;
    struct imap_parser *ps = &c->ps;
    struct search_ctx x;
    memset(&x, 0, sizeof(x));
    x.c = c;
    unsigned ret = 0;
    bool esearch = false;
    if (imap_parse_sp(ps) < 0 || imap_parse_search_return(c, true, &ret, &esearch) < 0)
        goto bad;
    if (ps->end - ps->p > 8 && strncasecmp(ps->p, "CHARSET ", 8) == 0) {
        char *kw, *cs;
        size_t len;
        if (imap_parse_atom(ps, &kw) < 0 || imap_parse_sp(ps) < 0 ||
            imap_parse_astring(ps, &cs, &len) < 0 || imap_parse_sp(ps) < 0)
            goto bad;
        if (strcasecmp(cs, "UTF-8") != 0 && strcasecmp(cs, "US-ASCII") != 0) {
            imap_no(c, "[BADCHARSET (US-ASCII UTF-8)] Unsupported charset");
            return;
        }
    }
    if (search_run(&x) < 0)
        return;
    struct imap_view *v = s->sel;
    if (ret & IMAP_RET_SAVE) {
        uint32_t *copy = malloc((x.n_hits + 1) * sizeof(uint32_t));
        if (copy) {
            memcpy(copy, x.hits, x.n_hits * sizeof(uint32_t));
            free(v->searchres);
            v->searchres = copy;
            v->n_searchres = x.n_hits;
        }
    }
    send_results(&x, ret, esearch);
    free(x.hits);
    imap_ok(c, "Search completed.");
    return;
bad:
    imap_bad_syntax(c);
}
