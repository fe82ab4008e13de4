/*
 * SORT, UID SORT, THREAD and UID THREAD (RFC 5256), with ESORT's RETURN
 * options (RFC 5267 3: MIN, MAX, COUNT, ALL) and the MODSEQ of RFC 7162
 * 3.1.5.
 *
 * The search keys are SEARCH's (imap_search_run); then each hit's header
 * is read once for the keys the command needs (sent date, base subject,
 * first From/To/Cc mailbox, Message-ID, References), the strings kept in
 * one buffer by offset.  Comparisons are i;ascii-casemap, ties go to
 * mailbox order (RFC 5256 3).
 */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <unistd.h>

#include "imap/imap_int.h"
#include "imap/imap_thread.h"
#include "mime/mime.h"
#include "mime/mime_codec.h"

enum sort_key { SK_ARRIVAL, SK_CC, SK_DATE, SK_FROM, SK_SIZE, SK_SUBJECT, SK_TO };
#define SORT_CRIT_MAX 16

struct sort_crit {
    enum sort_key key;
    bool reverse;
};

#define NEED_DATE    1u
#define NEED_SUBJECT 2u
#define NEED_FROM    4u
#define NEED_TO      8u
#define NEED_CC      16u
#define NEED_IDS     32u

/* What SORT and THREAD know of one message; strings are offsets into
 * the command's string buffer. */
struct sort_item {
    uint32_t uid, seq;
    int64_t arrival, date;
    uint64_t size;
    size_t subject, from, to, cc, msgid, refs;
    size_t n_refs;
    bool reply, has_msgid;
};

struct sort_ctx {
    struct imap_cmd *c;
    unsigned need;
    struct sort_item *items;
    const uint32_t *hits;
    size_t n;
    struct strbuf strs;
    struct sort_crit crit[SORT_CRIT_MAX];
    int n_crit;
    bool failed;
};

/* Appends s and a NUL to the string buffer; returns its offset. */
static size_t str_add(struct sort_ctx *x, const char *s, size_t len)
{
    size_t off = x->strs.len;
    if (strbuf_append(&x->strs, s, len) < 0 || strbuf_append(&x->strs, "", 1) < 0) {
        x->failed = true;
        return 0;
    }
    return off;
}

/* The addr-mailbox of the first address of a field (RFC 5256 3), its
 * encoded words decoded; "" when there is none. */
static size_t first_mailbox(struct sort_ctx *x, const char *hdr, size_t hlen, const char *name)
{
    struct strbuf v;
    strbuf_init(&v, 1u << 20);
    size_t off = SIZE_MAX;
    if (mime_header_get(hdr, hlen, 0, name, &v) == 1 && v.data) {
        struct mime_address *list = NULL;
        if (mime_address_parse(v.data, v.len, false, &list) == 0) {
            for (const struct mime_address *a = list; a; a = a->next)
                if (a->domain && a->mailbox) {
                    struct strbuf dec;
                    strbuf_init(&dec, 1u << 20);
                    mime_rfc2047_decode(a->mailbox, strlen(a->mailbox), &dec);
                    off = str_add(x, dec.data ? dec.data : "", dec.len);
                    strbuf_free(&dec);
                    break;
                }
            mime_address_free(list);
        }
    }
    strbuf_free(&v);
    return off == SIZE_MAX ? str_add(x, "", 0) : off;
}

static void item_ids(struct sort_ctx *x, struct sort_item *it, const char *hdr, size_t hlen)
{
    struct strbuf v, ids;
    strbuf_init(&v, 1u << 20);
    strbuf_init(&ids, 1u << 20);
    if (mime_header_get(hdr, hlen, 0, "Message-ID", &v) == 1 && v.data &&
        imap_msgid_list(v.data, v.len, &ids) > 0) {
        it->msgid = str_add(x, ids.data, strlen(ids.data));
        it->has_msgid = true;
    }
    strbuf_reset(&v);
    strbuf_reset(&ids);
    int n = 0;
    if (mime_header_get(hdr, hlen, 0, "References", &v) == 1 && v.data)
        n = imap_msgid_list(v.data, v.len, &ids);
    if (n <= 0) {
        /* RFC 5256 4: without References, the first id of In-Reply-To */
        strbuf_reset(&v);
        strbuf_reset(&ids);
        if (mime_header_get(hdr, hlen, 0, "In-Reply-To", &v) == 1 && v.data &&
            imap_msgid_list(v.data, v.len, &ids) > 0) {
            n = 1;
            ids.len = strlen(ids.data) + 1;
        } else
            n = 0;
    }
    if (n > 0) {
        it->refs = x->strs.len;
        if (strbuf_append(&x->strs, ids.data, ids.len) < 0)
            x->failed = true;
        it->n_refs = (size_t)n;
    }
    strbuf_free(&v);
    strbuf_free(&ids);
}

/* Reads the header fields one message needs. */
static void item_load(struct sort_ctx *x, struct sort_item *it, const struct store_imap_msg *m)
{
    it->date = it->arrival;
    it->subject = it->from = it->to = it->cc = str_add(x, "", 0);
    if (x->need == 0)
        return;
    int fd = store_imap_msg_open(imap_store(x->c->s), m);
    if (fd < 0)
        return;
    off_t size = lseek(fd, 0, SEEK_END);
    void *map = size > 0 ? mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0) : MAP_FAILED;
    close(fd);
    if (map == MAP_FAILED)
        return;
    const char *hdr = map;
    size_t hlen = (size_t)size;
    struct strbuf v;
    strbuf_init(&v, 1u << 20);
    if ((x->need & NEED_DATE) && mime_header_get(hdr, hlen, 0, "Date", &v) == 1 && v.data) {
        int64_t t;
        if (imap_parse_rfc5322_date(v.data, v.len, &t) == 0)
            it->date = t;   /* RFC 5256 2.2: else INTERNALDATE */
    }
    if (x->need & NEED_SUBJECT) {
        strbuf_reset(&v);
        struct strbuf base;
        strbuf_init(&base, 1u << 20);
        if (mime_header_get(hdr, hlen, 0, "Subject", &v) == 1 && v.data &&
            imap_base_subject(v.data, v.len, &base, &it->reply) == 0 && base.data)
            it->subject = str_add(x, base.data, base.len);
        strbuf_free(&base);
    }
    strbuf_free(&v);
    if (x->need & NEED_FROM)
        it->from = first_mailbox(x, hdr, hlen, "From");
    if (x->need & NEED_TO)
        it->to = first_mailbox(x, hdr, hlen, "To");
    if (x->need & NEED_CC)
        it->cc = first_mailbox(x, hdr, hlen, "Cc");
    if (x->need & NEED_IDS)
        item_ids(x, it, hdr, hlen);
    munmap(map, (size_t)size);
}

static int collect_one(const struct store_imap_msg *m, void *arg)
{
    struct sort_ctx *x = arg;
    size_t lo = 0, hi = x->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (x->hits[mid] < m->uid)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo >= x->n || x->hits[lo] != m->uid)
        return 0;
    struct sort_item *it = &x->items[lo];
    it->uid = m->uid;
    it->seq = imap_view_seq(x->c->s->sel, m->uid);
    it->arrival = m->internaldate;
    it->size = m->size;
    item_load(x, it, m);
    return x->failed ? -1 : 0;
}

/* Runs the search and reads what the keys need for every hit; items
 * whose message vanished meanwhile are dropped.  0, or -1 replied. */
static int sort_collect(struct sort_ctx *x, struct imap_search_result *res)
{
    struct imap_cmd *c = x->c;
    struct imap_view *v = c->s->sel;
    if (imap_search_run(c, res) < 0)
        return -1;
    x->hits = res->uids;
    x->n = res->n;
    x->items = calloc(x->n + 1, sizeof(*x->items));
    strbuf_init(&x->strs, 256u << 20);
    if (x->items == NULL) {
        imap_no(c, "[LIMIT] Out of memory");
        return -1;
    }
    if (x->n > 0 && store_imap_msgs(imap_store(c->s), v->id, x->hits[0], x->hits[x->n - 1],
                                    collect_one, x) < 0) {
        if (x->failed)
            imap_no(c, "[LIMIT] Too much header data to sort");
        else
            imap_no_store(c, "Sort failed");
        return -1;
    }
    size_t k = 0;
    for (size_t i = 0; i < x->n; i++)
        if (x->items[i].seq != 0)
            x->items[k++] = x->items[i];
    x->n = k;
    return 0;
}

static void sort_free(struct sort_ctx *x, struct imap_search_result *res)
{
    free(x->items);
    free(res->uids);
    strbuf_free(&x->strs);
}

static int cmp_i64(int64_t a, int64_t b)
{
    return a < b ? -1 : a > b;
}

static int item_cmp(const void *pa, const void *pb, void *arg)
{
    const struct sort_ctx *x = arg;
    const struct sort_item *a = pa, *b = pb;
    const char *s = x->strs.data;
    for (int i = 0; i < x->n_crit; i++) {
        int r = 0;
        switch (x->crit[i].key) {
        case SK_ARRIVAL: r = cmp_i64(a->arrival, b->arrival); break;
        case SK_DATE: r = cmp_i64(a->date, b->date); break;
        case SK_SIZE: r = a->size < b->size ? -1 : a->size > b->size; break;
        case SK_SUBJECT: r = strcasecmp(s + a->subject, s + b->subject); break;
        case SK_FROM: r = strcasecmp(s + a->from, s + b->from); break;
        case SK_TO: r = strcasecmp(s + a->to, s + b->to); break;
        case SK_CC: r = strcasecmp(s + a->cc, s + b->cc); break;
        }
        if (r != 0)
            return x->crit[i].reverse ? -r : r;
    }
    return a->seq < b->seq ? -1 : a->seq > b->seq;
}

static int parse_criteria(struct sort_ctx *x)
{
    static const struct { const char *name; enum sort_key key; unsigned need; } keys[] = {
        { "ARRIVAL", SK_ARRIVAL, 0 }, { "CC", SK_CC, NEED_CC }, { "DATE", SK_DATE, NEED_DATE },
        { "FROM", SK_FROM, NEED_FROM }, { "SIZE", SK_SIZE, 0 },
        { "SUBJECT", SK_SUBJECT, NEED_SUBJECT }, { "TO", SK_TO, NEED_TO },
    };
    struct imap_parser *ps = &x->c->ps;
    if (imap_parse_open(ps) < 0)
        return -1;
    bool reverse = false;
    for (;;) {
        char *name;
        if (imap_parse_atom(ps, &name) < 0)
            return -1;
        if (strcasecmp(name, "REVERSE") == 0) {
            if (reverse) {
                ps->error = "sort key after REVERSE";
                return -1;
            }
            reverse = true;
        } else {
            size_t k = 0;
            while (k < sizeof(keys) / sizeof(keys[0]) && strcasecmp(name, keys[k].name) != 0)
                k++;
            if (k == sizeof(keys) / sizeof(keys[0])) {
                ps->error = "sort key (ARRIVAL CC DATE FROM SIZE SUBJECT TO)";
                return -1;
            }
            if (x->n_crit == SORT_CRIT_MAX) {
                ps->error = "at most 16 sort keys";
                return -1;
            }
            x->crit[x->n_crit++] = (struct sort_crit){ keys[k].key, reverse };
            x->need |= keys[k].need;
            reverse = false;
        }
        if (!imap_parse_char(ps, ' '))
            break;
    }
    if (reverse) {
        ps->error = "sort key after REVERSE";
        return -1;
    }
    return imap_parse_close(ps);
}

static void sort_reply(struct sort_ctx *x, const struct imap_search_result *res, unsigned ret,
                       bool esort)
{
    struct imap_cmd *c = x->c;
    struct strbuf sb;
    strbuf_init(&sb, 64u << 20);
    uint32_t *nums = malloc((x->n + 1) * sizeof(uint32_t));
    if (nums == NULL) {
        imap_no(c, "[LIMIT] Out of memory");
        return;
    }
    for (size_t i = 0; i < x->n; i++)
        nums[i] = c->uid ? x->items[i].uid : x->items[i].seq;
    imap_write_search_reply(&sb, "SORT", esort, c, ret, nums, x->n, res->uses_modseq,
                            res->max_modseq);
    free(nums);
    strbuf_append(&sb, "\r\n", 2);
    if (sb.data)
        imap_send_raw(c->s, sb.data, sb.len);
    strbuf_free(&sb);
    imap_ok(c, "Sort completed.");
}

void imap_cmd_sort(struct imap_cmd *c)
{
    struct imap_parser *ps = &c->ps;
    struct sort_ctx x;
    struct imap_search_result res;
    memset(&x, 0, sizeof(x));
    memset(&res, 0, sizeof(res));
    x.c = c;
    unsigned ret = 0;
    bool esort = false;
    if (imap_parse_sp(ps) < 0 || imap_parse_search_return(c, false, &ret, &esort) < 0 || parse_criteria(&x) < 0 ||
        imap_parse_sp(ps) < 0) {
        imap_bad_syntax(c);
        return;
    }
    if (imap_search_charset(c) < 0)
        return;
    if (imap_parse_sp(ps) < 0) {
        imap_bad_syntax(c);
        return;
    }
    if (sort_collect(&x, &res) == 0) {
        qsort_r(x.items, x.n, sizeof(*x.items), item_cmp, &x);
        sort_reply(&x, &res, ret, esort);
    }
    sort_free(&x, &res);
}

void imap_cmd_thread(struct imap_cmd *c)
{
    struct imap_parser *ps = &c->ps;
    struct sort_ctx x;
    struct imap_search_result res;
    memset(&x, 0, sizeof(x));
    memset(&res, 0, sizeof(res));
    x.c = c;
    char *alg_name;
    if (imap_parse_sp(ps) < 0 || imap_parse_atom(ps, &alg_name) < 0 || imap_parse_sp(ps) < 0) {
        imap_bad_syntax(c);
        return;
    }
    enum imap_thread_alg alg;
    if (strcasecmp(alg_name, "ORDEREDSUBJECT") == 0)
        alg = IMAP_THREAD_ORDEREDSUBJECT;
    else if (strcasecmp(alg_name, "REFERENCES") == 0)
        alg = IMAP_THREAD_REFERENCES;
    else {
        imap_bad(c, "Unknown threading algorithm (ORDEREDSUBJECT REFERENCES)");
        return;
    }
    if (imap_search_charset(c) < 0)
        return;
    if (imap_parse_sp(ps) < 0) {
        imap_bad_syntax(c);
        return;
    }
    x.need = NEED_DATE | NEED_SUBJECT | (alg == IMAP_THREAD_REFERENCES ? NEED_IDS : 0);
    if (sort_collect(&x, &res) < 0) {
        sort_free(&x, &res);
        return;
    }
    struct imap_thread_msg *tm = calloc(x.n + 1, sizeof(*tm));
    struct strbuf sb;
    strbuf_init(&sb, 64u << 20);
    if (tm == NULL) {
        imap_no(c, "[LIMIT] Out of memory");
        sort_free(&x, &res);
        return;
    }
    const char *s = x.strs.data;
    for (size_t i = 0; i < x.n; i++) {
        const struct sort_item *it = &x.items[i];
        tm[i] = (struct imap_thread_msg){
            .num = c->uid ? it->uid : it->seq, .seq = it->seq, .date = it->date,
            .subject = s + it->subject, .reply = it->reply,
            .msgid = it->has_msgid ? s + it->msgid : NULL,
            .refs = it->n_refs ? s + it->refs : NULL, .n_refs = it->n_refs,
        };
    }
    strbuf_append(&sb, "* THREAD", 8);
    if (x.n > 0)
        strbuf_append(&sb, " ", 1);
    int rc = imap_thread(alg, tm, x.n, &sb);
    strbuf_append(&sb, "\r\n", 2);
    if (rc < 0 || sb.data == NULL)
        imap_no(c, "[LIMIT] Out of memory");
    else {
        imap_send_raw(c->s, sb.data, sb.len);
        imap_ok(c, "Thread completed.");
    }
    strbuf_free(&sb);
    free(tm);
    sort_free(&x, &res);
}
