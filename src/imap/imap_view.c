/*
 * The selected mailbox of a session: its UID map, the untagged data of
 * SELECT, and the synchronisation that tells a session what other
 * sessions and deliveries changed (RFC 3501 5.2, 7.3, 7.4; RFC 7162).
 *
 * A sync costs one small query when nothing changed: the mailbox's
 * highestmodseq and uidnext and the count of messages up to our last
 * UID.  Only when that count differs is the UID list read again (to find
 * what was expunged), and only changed rows (modseq greater than ours)
 * are read for flag updates.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/log.h"
#include "imap/imap_int.h"

/* ---- \Recent claims (process-wide) ---- */

struct recent_claim {
    int64_t mailbox_id;
    uint32_t uid;
};
static pthread_mutex_t recent_lock = PTHREAD_MUTEX_INITIALIZER;
static struct recent_claim *claims;
static size_t n_claims, alloc_claims;

uint32_t imap_recent_claim(int64_t mailbox_id, uint32_t upto, bool claim)
{
    pthread_mutex_lock(&recent_lock);
    struct recent_claim *rc = NULL;
    for (size_t i = 0; i < n_claims; i++)
        if (claims[i].mailbox_id == mailbox_id) {
            rc = &claims[i];
            break;
        }
    if (rc == NULL && claim) {
        if (n_claims == alloc_claims) {
            size_t na = alloc_claims ? alloc_claims * 2 : 64;
            struct recent_claim *p = realloc(claims, na * sizeof(*p));
            if (p != NULL) {
                claims = p;
                alloc_claims = na;
            }
        }
        if (n_claims < alloc_claims) {
            rc = &claims[n_claims++];
            rc->mailbox_id = mailbox_id;
            rc->uid = 0;
        }
    }
    uint32_t prev = rc ? rc->uid : 0;
    if (rc && claim && upto > rc->uid)
        rc->uid = upto;
    pthread_mutex_unlock(&recent_lock);
    return prev;
}

static void view_add_recent(struct imap_view *v, uint32_t lo, uint32_t hi)
{
    if (lo > hi)
        return;
    if (v->n_recent > 0 && v->recent[v->n_recent - 1].hi + 1 >= lo) {
        v->recent[v->n_recent - 1].hi = hi;
        return;
    }
    if (v->n_recent == (int)(sizeof(v->recent) / sizeof(v->recent[0]))) {
        /* out of slots: merge the two oldest (a few extra \Recent, never fewer) */
        v->recent[0].hi = v->recent[1].hi;
        memmove(&v->recent[1], &v->recent[2], (size_t)(v->n_recent - 2) * sizeof(v->recent[0]));
        v->n_recent--;
    }
    v->recent[v->n_recent].lo = lo;
    v->recent[v->n_recent].hi = hi;
    v->n_recent++;
}

bool imap_view_recent(const struct imap_view *v, uint32_t uid)
{
    for (int i = 0; i < v->n_recent; i++)
        if (uid >= v->recent[i].lo && uid <= v->recent[i].hi)
            return true;
    return false;
}

static uint32_t view_recent_count(const struct imap_view *v)
{
    uint32_t n = 0;
    for (size_t i = 0; i < v->n; i++)
        n += imap_view_recent(v, v->uids[i]);
    return n;
}

/* ---- helpers ---- */

const char *imap_mailbox_name(const char *name)
{
    return strcasecmp(name, "INBOX") == 0 ? "INBOX" : name;
}

uint32_t imap_view_seq(const struct imap_view *v, uint32_t uid)
{
    size_t lo = 0, hi = v->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (v->uids[mid] == uid)
            return (uint32_t)mid + 1;
        if (v->uids[mid] < uid)
            lo = mid + 1;
        else
            hi = mid;
    }
    return 0;
}

void imap_view_own_modseq(struct imap_view *v, uint64_t modseq)
{
    if (modseq == 0)
        return;
    if (v->n_own == (int)(sizeof(v->own_modseq) / sizeof(v->own_modseq[0]))) {
        memmove(v->own_modseq, v->own_modseq + 1, sizeof(v->own_modseq) - sizeof(v->own_modseq[0]));
        v->n_own--;
    }
    v->own_modseq[v->n_own++] = modseq;
}

static bool view_is_own(const struct imap_view *v, uint64_t modseq)
{
    for (int i = 0; i < v->n_own; i++)
        if (v->own_modseq[i] == modseq)
            return true;
    return false;
}

static int view_append(struct imap_view *v, const uint32_t *uids, size_t n)
{
    if (v->n + n > v->alloc) {
        size_t na = v->alloc ? v->alloc : 16;
        while (na < v->n + n)
            na *= 2;
        uint32_t *p = realloc(v->uids, na * sizeof(*p));
        if (p == NULL)
            return -1;
        v->uids = p;
        v->alloc = na;
    }
    memcpy(v->uids + v->n, uids, n * sizeof(*uids));
    v->n += n;
    return 0;
}

void imap_uidset_write(struct strbuf *out, const uint32_t *uids, size_t n)
{
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j + 1 < n && uids[j + 1] == uids[j] + 1)
            j++;
        if (i > 0)
            strbuf_append(out, ",", 1);
        if (j > i)
            strbuf_printf(out, "%u:%u", uids[i], uids[j]);
        else
            strbuf_printf(out, "%u", uids[i]);
        i = j + 1;
    }
}

void imap_flags_write(struct imap_session *s, const struct store_imap_msg *m, struct strbuf *out)
{
    static const char *const names[] = { "\\Seen", "\\Answered", "\\Flagged", "\\Deleted",
                                         "\\Draft" };
    bool first = true;
    strbuf_append(out, "(", 1);
    for (unsigned i = 0; i < 5; i++)
        if (m->flags & (1u << i)) {
            strbuf_printf(out, "%s%s", first ? "" : " ", names[i]);
            first = false;
        }
    if (s->sel && !(s->enabled & IMAP_EN_REV2) && imap_view_recent(s->sel, m->uid)) {
        strbuf_printf(out, "%s\\Recent", first ? "" : " ");
        first = false;
    }
    if (m->keywords[0])
        strbuf_printf(out, "%s%s", first ? "" : " ", m->keywords);
    strbuf_append(out, ")", 1);
}

int imap_flags_parse(struct imap_cmd *c, bool list_required, uint32_t *flags_r, char **keywords_r)
{
    static const char *const names[] = { "\\Seen", "\\Answered", "\\Flagged", "\\Deleted",
                                         "\\Draft" };
    struct imap_parser *ps = &c->ps;
    *flags_r = 0;
    struct strbuf kw;
    strbuf_init(&kw, STORE_IMAP_KEYWORDS_MAX - 1);
    bool list = imap_parse_peek(ps, '(');
    if (list_required && !list) {
        ps->error = "expected a flag list";
        return -1;
    }
    if (list)
        imap_parse_open(ps);
    int rc = 0;
    while (!(list && imap_parse_peek(ps, ')'))) {
        char *f;
        if (imap_parse_flag(ps, false, &f) < 0) {
            rc = -1;
            break;
        }
        bool sys = false;
        for (unsigned i = 0; i < 5; i++)
            if (strcasecmp(f, names[i]) == 0) {
                *flags_r |= 1u << i;
                sys = true;
            }
        if (!sys && f[0] == '\\') {
            ps->error = strcasecmp(f, "\\Recent") == 0 ? "\\Recent cannot be set" : "unknown system flag";
            rc = -1;
            break;
        }
        if (!sys && (kw.len + strlen(f) + 1 > kw.cap ||
                     (kw.len && strbuf_append(&kw, " ", 1) < 0) || strbuf_append(&kw, f, strlen(f)) < 0)) {
            ps->error = "too many keywords";
            rc = -1;
            break;
        }
        if (!imap_parse_char(ps, ' '))
            break;
    }
    if (rc == 0 && list && imap_parse_close(ps) < 0)
        rc = -1;
    *keywords_r = imap_pool_strndup(&c->pool, kw.data ? kw.data : "", kw.len);
    strbuf_free(&kw);
    return rc;
}

/* ---- resolving sets ---- */

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

int imap_view_resolve(struct imap_cmd *c, const struct imap_seqset *set, bool uid,
                      uint32_t **uids_r, size_t *n_r)
{
    struct imap_view *v = c->s->sel;
    *uids_r = NULL;
    *n_r = 0;
    if (set->dollar) {
        uint32_t *out = imap_pool_alloc(&c->pool, (v->n_searchres + 1) * sizeof(*out));
        size_t k = 0;
        for (size_t i = 0; out && i < v->n_searchres; i++)
            if (imap_view_seq(v, v->searchres[i]))
                out[k++] = v->searchres[i];
        *uids_r = out;
        *n_r = k;
        return out ? 0 : -1;
    }
    /* a bitmap over sequence numbers keeps this linear and duplicate-free */
    size_t bytes = v->n / 8 + 1;
    unsigned char *bits = imap_pool_alloc(&c->pool, bytes);
    if (bits == NULL) {
        imap_no(c, "[LIMIT] Out of memory");
        return -1;
    }
    uint32_t star = uid ? (v->n ? v->uids[v->n - 1] : 0) : (uint32_t)v->n;
    for (size_t i = 0; i < set->n; i++) {
        uint32_t lo = set->r[i].lo == IMAP_STAR ? star : set->r[i].lo;
        uint32_t hi = set->r[i].hi == IMAP_STAR ? star : set->r[i].hi;
        if (lo > hi) {
            uint32_t t = lo;
            lo = hi;
            hi = t;
        }
        if (!uid) {
            if (hi > v->n || lo == 0) {
                imap_bad(c, "Error in IMAP command %s: Invalid messageset", c->name);
                return -1;
            }
            for (uint32_t q = lo; q <= hi; q++)
                bits[(q - 1) / 8] |= (unsigned char)(1u << ((q - 1) % 8));
            continue;
        }
        /* UIDs: binary search the first >= lo */
        size_t a = 0, b = v->n;
        while (a < b) {
            size_t mid = (a + b) / 2;
            if (v->uids[mid] < lo)
                a = mid + 1;
            else
                b = mid;
        }
        for (size_t k = a; k < v->n && v->uids[k] <= hi; k++)
            bits[k / 8] |= (unsigned char)(1u << (k % 8));
    }
    size_t cnt = 0;
    for (size_t k = 0; k < v->n; k++)
        cnt += (bits[k / 8] >> (k % 8)) & 1;
    uint32_t *out = imap_pool_alloc(&c->pool, (cnt + 1) * sizeof(*out));
    if (out == NULL) {
        imap_no(c, "[LIMIT] Out of memory");
        return -1;
    }
    size_t j = 0;
    for (size_t k = 0; k < v->n; k++)
        if ((bits[k / 8] >> (k % 8)) & 1)
            out[j++] = v->uids[k];
    (void)cmp_u32;
    *uids_r = out;
    *n_r = j;
    return 0;
}

/* ---- expunges ---- */

void imap_view_expunged(struct imap_session *s, const uint32_t *uids, size_t n)
{
    struct imap_view *v = s->sel;
    if (v == NULL || n == 0)
        return;
    if (s->enabled & IMAP_EN_QRESYNC) {
        struct strbuf sb;
        strbuf_init(&sb, 1u << 24);
        uint32_t *present = malloc(n * sizeof(*present));
        size_t k = 0;
        for (size_t i = 0; present && i < n; i++)
            if (imap_view_seq(v, uids[i]))
                present[k++] = uids[i];
        imap_uidset_write(&sb, present ? present : uids, present ? k : n);
        if (sb.len > 0) {
            imap_send_raw(s, "* VANISHED ", 11);
            imap_send_raw(s, sb.data, sb.len);
            imap_send_raw(s, "\r\n", 2);
        }
        free(present);
        strbuf_free(&sb);
    }
    /* descending, so each number is valid when sent */
    for (size_t i = n; i-- > 0;) {
        uint32_t seq = imap_view_seq(v, uids[i]);
        if (seq == 0)
            continue;
        if (!(s->enabled & IMAP_EN_QRESYNC))
            imap_send(s, "* %u EXPUNGE", seq);
        memmove(&v->uids[seq - 1], &v->uids[seq], (v->n - seq) * sizeof(v->uids[0]));
        v->n--;
    }
}

/* Finds what disappeared: the view's UIDs (up to max_uid) missing from
 * the store's current list. */
static void sync_expunges(struct imap_session *s)
{
    struct imap_view *v = s->sel;
    uint32_t *cur = NULL;
    long nc = store_imap_uids(imap_store(s), v->id, 1, &cur);
    if (nc < 0)
        return;
    uint32_t *gone = malloc((v->n + 1) * sizeof(*gone));
    if (gone == NULL) {
        free(cur);
        return;
    }
    size_t ng = 0, j = 0;
    for (size_t i = 0; i < v->n; i++) {
        while (j < (size_t)nc && cur[j] < v->uids[i])
            j++;
        if (j >= (size_t)nc || cur[j] != v->uids[i])
            gone[ng++] = v->uids[i];
    }
    imap_view_expunged(s, gone, ng);
    free(gone);
    free(cur);
}

struct sync_flags_ctx {
    struct imap_session *s;
    uint32_t max_uid;
};

static int sync_flag_one(const struct store_imap_msg *m, void *arg)
{
    struct sync_flags_ctx *x = arg;
    struct imap_session *s = x->s;
    struct imap_view *v = s->sel;
    if (m->uid > x->max_uid || view_is_own(v, m->modseq))
        return 0;
    uint32_t seq = imap_view_seq(v, m->uid);
    if (seq == 0)
        return 0;
    struct strbuf sb;
    strbuf_init(&sb, 8192);
    strbuf_printf(&sb, "* %u FETCH (UID %u FLAGS ", seq, m->uid);
    imap_flags_write(s, m, &sb);
    if (s->enabled & (IMAP_EN_CONDSTORE | IMAP_EN_QRESYNC))
        strbuf_printf(&sb, " MODSEQ (%llu)", (unsigned long long)m->modseq);
    strbuf_append(&sb, ")\r\n", 3);
    if (sb.data)
        imap_send_raw(s, sb.data, sb.len);
    strbuf_free(&sb);
    return 0;
}

void imap_sync(struct imap_session *s, bool allow_expunge)
{
    struct imap_view *v = s->sel;
    if (v == NULL)
        return;
    uint32_t max_uid = v->n ? v->uids[v->n - 1] : 0, uidnext, count;
    uint64_t hms;
    int r = store_imap_sync_state(imap_store(s), v->id, max_uid, &hms, &uidnext, &count);
    if (r < 0)
        return;
    if (r == 0) {
        imap_close_with(s, "* BYE Selected mailbox was deleted, have to disconnect");
        return;
    }
    if (hms == v->modseq && count == v->n && uidnext == v->uidnext)
        return;
    if (count != v->n && allow_expunge)
        sync_expunges(s);
    if (hms > v->modseq) {
        struct sync_flags_ctx x = { s, max_uid };
        store_imap_changed(imap_store(s), v->id, v->modseq, sync_flag_one, &x);
    }
    if (uidnext != v->uidnext) {
        uint32_t *fresh = NULL;
        uint32_t last = v->n ? v->uids[v->n - 1] : 0;
        long nf = store_imap_uids(imap_store(s), v->id, last + 1, &fresh);
        if (nf > 0 && view_append(v, fresh, (size_t)nf) == 0) {
            imap_send(s, "* %zu EXISTS", v->n);
            if (!v->readonly) {
                uint32_t prev = imap_recent_claim(v->id, fresh[nf - 1], true);
                view_add_recent(v, prev + 1 > fresh[0] ? prev + 1 : fresh[0], fresh[nf - 1]);
            }
            if (!(s->enabled & IMAP_EN_REV2))
                imap_send(s, "* %u RECENT", view_recent_count(v));
        }
        free(fresh);
        v->uidnext = uidnext;
    }
    v->modseq = hms;
    v->n_own = 0;
}

/* ---- SELECT / EXAMINE ---- */

static int first_unseen_cb(const struct store_imap_msg *m, void *arg)
{
    uint32_t *uid = arg;
    if (!(m->flags & STORE_FLAG_SEEN)) {
        *uid = m->uid;
        return 1;
    }
    return 0;
}

int imap_view_open(struct imap_cmd *c, const struct store_imap_mbox *m, bool readonly)
{
    struct imap_session *s = c->s;
    imap_view_close(s);
    struct imap_view *v = calloc(1, sizeof(*v));
    if (v == NULL) {
        imap_no(c, "[SERVERBUG] Out of memory");
        return -1;
    }
    v->id = m->id;
    str_copy(v->name, m->name, sizeof(v->name));
    v->readonly = readonly;
    v->uidvalidity = m->uidvalidity;
    long n = store_imap_uids(imap_store(s), m->id, 1, &v->uids);
    uint64_t hms;
    uint32_t uidnext, cnt;
    if (n < 0 || store_imap_sync_state(imap_store(s), m->id, 0, &hms, &uidnext, &cnt) <= 0) {
        free(v->uids);
        free(v);
        imap_no_store(c, "Cannot open mailbox");
        return -1;
    }
    v->n = v->alloc = (size_t)n;
    v->modseq = hms;
    v->uidnext = uidnext;
    uint32_t last = uidnext > 0 ? uidnext - 1 : 0;
    uint32_t prev = imap_recent_claim(m->id, last, !readonly);
    if (!readonly && prev < last)
        view_add_recent(v, prev + 1, last);
    s->sel = v;
    s->state = IMAP_S_SELECTED;

    char kw[STORE_IMAP_KEYWORDS_MAX];
    store_imap_keywords(imap_store(s), m->id, kw, sizeof(kw));
    const char *sp = kw[0] ? " " : "";
    imap_send(s, "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft%s%s)", sp, kw);
    if (readonly)
        imap_send(s, "* OK [PERMANENTFLAGS ()] Read-only mailbox.");
    else
        imap_send(s, "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft%s%s \\*)]"
                     " Flags permitted.", sp, kw);
    imap_send(s, "* %zu EXISTS", v->n);
    if (!(s->enabled & IMAP_EN_REV2)) {
        uint32_t recent = 0;
        if (readonly) {
            for (size_t i = 0; i < v->n; i++)
                recent += v->uids[i] > prev;
        } else {
            recent = view_recent_count(v);
        }
        imap_send(s, "* %u RECENT", recent);
        uint32_t unseen = 0;
        store_imap_msgs(imap_store(s), m->id, 1, UINT32_MAX, first_unseen_cb, &unseen);
        if (unseen)
            imap_send(s, "* OK [UNSEEN %u] First unseen.", imap_view_seq(v, unseen));
    }
    imap_send(s, "* OK [UIDVALIDITY %u] UIDs valid", v->uidvalidity);
    imap_send(s, "* OK [UIDNEXT %u] Predicted next UID", v->uidnext);
    imap_send(s, "* OK [HIGHESTMODSEQ %llu] Highest", (unsigned long long)v->modseq);
    if (s->enabled & IMAP_EN_REV2) {
        struct strbuf sb;
        strbuf_init(&sb, 4096);
        strbuf_printf(&sb, "* LIST () \"%c\" ", IMAP_HIER_SEP);
        imap_write_astring(&sb, v->name);
        strbuf_append(&sb, "\r\n", 2);
        if (sb.data)
            imap_send_raw(s, sb.data, sb.len);
        strbuf_free(&sb);
    }
    return 0;
}

void imap_view_close(struct imap_session *s)
{
    if (s->sel == NULL)
        return;
    free(s->sel->uids);
    free(s->sel->searchres);
    free(s->sel);
    s->sel = NULL;
    if (s->state == IMAP_S_SELECTED)
        s->state = IMAP_S_AUTH;
}
