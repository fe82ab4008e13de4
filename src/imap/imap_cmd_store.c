/* STORE and UID STORE (RFC 9051 6.4.6) with UNCHANGEDSINCE and MODIFIED
 * (RFC 7162 3.1.3). */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "imap/imap_int.h"

/* One message the store step reported on. */
struct store_hit {
    uint32_t uid, flags;
    uint64_t modseq;
    enum store_imap_flag_result r;
    char *keywords;                     /* malloc'ed, NULL when none */
};

/* The store step runs on the pool (imap_cmd_defer); what it reports is
 * kept here and turned into FETCH responses on the loop. */
struct store_job {
    struct store *store;
    int64_t mailbox;
    const uint32_t *uids;
    size_t n;
    enum store_imap_flag_op op;
    uint32_t flags;
    const char *keywords;
    uint64_t unchangedsince;
    bool silent;
    long rc;
    uint64_t modseq;
    struct store_hit *hits;
    size_t n_hits, alloc;
    bool oom;
};

static void store_collect(const struct store_imap_msg *m, enum store_imap_flag_result r, void *arg)
{
    struct store_job *j = arg;
    if (j->n_hits == j->alloc) {
        size_t want = j->alloc ? 2 * j->alloc : 16;
        struct store_hit *h = realloc(j->hits, want * sizeof(*h));
        if (h == NULL) {
            j->oom = true;
            return;
        }
        j->hits = h;
        j->alloc = want;
    }
    struct store_hit *h = &j->hits[j->n_hits++];
    *h = (struct store_hit){ .uid = m->uid, .flags = m->flags, .modseq = m->modseq, .r = r };
    if (m->keywords[0] && (h->keywords = strdup(m->keywords)) == NULL)
        j->oom = true;
}

static void store_work(struct imap_cmd *c)
{
    struct store_job *j = c->job;
    j->rc = store_imap_flags(j->store, j->mailbox, j->uids, j->n, j->op, j->flags, j->keywords,
                             j->unchangedsince, store_collect, j, &j->modseq);
}

/* The untagged FETCH for one changed (or unchanged) message. */
static void store_fetch(struct imap_cmd *c, const struct store_hit *h, bool silent)
{
    struct imap_session *s = c->s;
    /* RFC 7162 3.1.3: with CONDSTORE, changes are reported even when silent */
    bool condstore = (s->enabled & IMAP_EN_CONDSTORE) != 0;
    if (silent && !(condstore && h->r == STORE_IMAP_CHANGED))
        return;
    uint32_t seq = imap_view_seq(s->sel, h->uid);
    if (seq == 0)
        return;
    struct strbuf sb;
    strbuf_init(&sb, 8192);
    strbuf_printf(&sb, "* %u FETCH (", seq);
    if (c->uid || (s->enabled & IMAP_EN_QRESYNC))
        strbuf_printf(&sb, "UID %u ", h->uid);
    if (!silent) {
        struct store_imap_msg m;
        m.uid = h->uid;
        m.flags = h->flags;
        m.modseq = h->modseq;
        str_copy(m.keywords, h->keywords ? h->keywords : "", sizeof(m.keywords));
        strbuf_append(&sb, "FLAGS ", 6);
        imap_flags_write(s, &m, &sb);
    }
    if (condstore)
        strbuf_printf(&sb, "%sMODSEQ (%llu)", silent ? "" : " ", (unsigned long long)h->modseq);
    strbuf_append(&sb, ")\r\n", 3);
    if (sb.data)
        imap_send_raw(s, sb.data, sb.len);
    strbuf_free(&sb);
}

static void store_done(struct imap_cmd *c)
{
    struct store_job *j = c->job;
    struct imap_session *s = c->s;
    uint32_t *modified = NULL;
    size_t n_modified = 0;
    if (j->rc >= 0 && !j->oom)
        modified = imap_pool_alloc(&c->pool, (j->n_hits + 1) * sizeof(uint32_t));
    for (size_t i = 0; modified && i < j->n_hits; i++) {
        if (j->hits[i].r == STORE_IMAP_MODIFIED)
            modified[n_modified++] = j->hits[i].uid;
        else
            store_fetch(c, &j->hits[i], j->silent);
    }
    for (size_t i = 0; i < j->n_hits; i++)
        free(j->hits[i].keywords);
    free(j->hits);
    if (j->rc < 0) {
        imap_no_store(c, "Cannot store flags");
        return;
    }
    if (modified == NULL) {
        imap_no(c, "[LIMIT] Too many messages");
        return;
    }
    imap_view_own_modseq(s->sel, j->modseq);
    if (n_modified > 0) {
        struct strbuf sb;
        strbuf_init(&sb, 1u << 24);
        if (c->uid) {
            imap_uidset_write(&sb, modified, n_modified);
        } else {
            uint32_t *seqs = imap_pool_alloc(&c->pool, n_modified * sizeof(uint32_t));
            for (size_t i = 0; seqs && i < n_modified; i++)
                seqs[i] = imap_view_seq(s->sel, modified[i]);
            if (seqs)
                imap_uidset_write(&sb, seqs, n_modified);
        }
        imap_ok(c, "[MODIFIED %.*s] Conditional store failed.", (int)sb.len, sb.data ? sb.data : "");
        strbuf_free(&sb);
        return;
    }
    imap_ok(c, "Store completed.");
}

void imap_cmd_store(struct imap_cmd *c)
{
    struct imap_session *s = c->s;
    struct imap_parser *ps = &c->ps;
    struct imap_seqset set;
    uint64_t unchangedsince = 0;
    char *item;
    if (imap_parse_sp(ps) < 0 || imap_parse_seqset(ps, &set) < 0 || imap_parse_sp(ps) < 0)
        goto bad;
    if (imap_parse_peek(ps, '(')) {
        char *mod;
        imap_parse_open(ps);
        if (imap_parse_atom(ps, &mod) < 0 || strcasecmp(mod, "UNCHANGEDSINCE") != 0 ||
            imap_parse_sp(ps) < 0 || imap_parse_number64(ps, &unchangedsince) < 0 ||
            imap_parse_close(ps) < 0 || imap_parse_sp(ps) < 0)
            goto bad;
        s->enabled |= IMAP_EN_CONDSTORE;
    }
    if (imap_parse_atom(ps, &item) < 0 || imap_parse_sp(ps) < 0)
        goto bad;
    enum store_imap_flag_op op = STORE_IMAP_FLAGS_SET;
    const char *p = item;
    if (*p == '+' || *p == '-') {
        op = *p == '+' ? STORE_IMAP_FLAGS_ADD : STORE_IMAP_FLAGS_REMOVE;
        p++;
    }
    bool silent = false;
    if (strcasecmp(p, "FLAGS.SILENT") == 0)
        silent = true;
    else if (strcasecmp(p, "FLAGS") != 0) {
        ps->error = "unknown STORE item";
        goto bad;
    }
    uint32_t flags;
    char *keywords;
    if (imap_flags_parse(c, false, &flags, &keywords) < 0 || imap_parse_end(ps) < 0)
        goto bad;
    uint32_t *uids;
    size_t n;
    if (imap_view_resolve(c, &set, c->uid, &uids, &n) < 0)
        return;
    if (s->sel->readonly) {
        imap_no(c, "[READ-ONLY] Mailbox is read-only");
        return;
    }
    struct store_job *j = imap_pool_alloc(&c->pool, sizeof(*j));
    if (j == NULL) {
        imap_no(c, "[LIMIT] Too many messages");
        return;
    }
    *j = (struct store_job){ .store = imap_store(s), .mailbox = s->sel->id, .uids = uids, .n = n,
                             .op = op, .flags = flags, .keywords = keywords,
                             .unchangedsince = unchangedsince, .silent = silent };
    imap_cmd_defer(c, store_work, store_done, j);
    return;
bad:
    imap_bad_syntax(c);
}
