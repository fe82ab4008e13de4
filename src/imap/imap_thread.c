/*
 * SORT and THREAD helpers (RFC 5256): base subjects, sent dates,
 * message-id lists and the ORDEREDSUBJECT and REFERENCES algorithms.
 *
 * REFERENCES builds containers (one per message and per id referenced)
 * held in one array and linked by index, so the whole tree is freed at
 * once and no step recurses: a thread 10,000 messages deep costs heap,
 * not stack.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "imap/imap_thread.h"
#include "mime/mime.h"
#include "mime/mime_codec.h"

/* ---- base subject (RFC 5256 2.1) ---- */

/* End of a subj-blob ("[" *BLOBCHAR "]" *WSP) starting at s[p], or 0. */
static size_t blob_end(const char *s, size_t p, size_t e)
{
    if (p >= e || s[p] != '[')
        return 0;
    size_t i = p + 1;
    while (i < e && s[i] != '[' && s[i] != ']')
        i++;
    if (i >= e || s[i] != ']')
        return 0;
    i++;
    while (i < e && s[i] == ' ')
        i++;
    return i;
}

/* End of a subj-refwd ("re" / "fw" ["d"]) *WSP [subj-blob] ":") at s[p],
 * or 0. */
static size_t refwd_end(const char *s, size_t p, size_t e)
{
    size_t q;
    if (e - p >= 3 && strncasecmp(s + p, "fwd", 3) == 0)
        q = p + 3;
    else if (e - p >= 2 && (strncasecmp(s + p, "fw", 2) == 0 || strncasecmp(s + p, "re", 2) == 0))
        q = p + 2;
    else
        return 0;
    while (q < e && s[q] == ' ')
        q++;
    size_t b = blob_end(s, q, e);
    if (b)
        q = b;
    return q < e && s[q] == ':' ? q + 1 : 0;
}

/* Steps 3 and 4, repeated until nothing changes (step 5). */
static size_t strip_leaders(const char *s, size_t b, size_t e, bool *reply)
{
    for (bool changed = true; changed;) {
        changed = false;
        for (;;) {
            if (b < e && s[b] == ' ') {
                b++;
                continue;
            }
            size_t p = b, q;
            while ((q = blob_end(s, p, e)) != 0)
                p = q;
            size_t r = refwd_end(s, p, e);
            if (r == 0)
                break;
            b = r;
            *reply = true;
            changed = true;
        }
        size_t q = blob_end(s, b, e);
        if (q) {
            bool rest = false;
            for (size_t i = q; i < e && !rest; i++)
                rest = s[i] != ' ';
            if (rest) {
                b = q;
                changed = true;
            }
        }
    }
    return b;
}

int imap_base_subject(const char *value, size_t len, struct strbuf *out, bool *reply_r)
{
    struct strbuf raw, dec;
    bool reply = false;
    strbuf_init(&raw, 1u << 20);
    strbuf_init(&dec, 1u << 21);
    mime_header_unfold(value, len, true, &raw);
    mime_rfc2047_decode(raw.data ? raw.data : "", raw.len, &dec);
    strbuf_free(&raw);
    /* step 1: tabs and line breaks become spaces, runs of spaces one */
    char *s = dec.data ? dec.data : (char *)"";
    size_t n = 0;
    for (size_t i = 0; i < dec.len; i++) {
        char ch = s[i];
        if (ch == '\t' || ch == '\r' || ch == '\n' || ch == '\0')
            ch = ' ';
        if (ch == ' ' && n > 0 && s[n - 1] == ' ')
            continue;
        s[n++] = ch;
    }
    size_t b = 0, e = n;
    for (;;) {
        /* step 2: trailing "(fwd)" and white space */
        for (;;) {
            if (e > b && s[e - 1] == ' ')
                e--;
            else if (e - b >= 5 && strncasecmp(s + e - 5, "(fwd)", 5) == 0) {
                e -= 5;
                reply = true;
            } else
                break;
        }
        b = strip_leaders(s, b, e, &reply);
        /* step 6: "[fwd:" ... "]" */
        if (e - b >= 6 && strncasecmp(s + b, "[fwd:", 5) == 0 && s[e - 1] == ']') {
            b += 5;
            e--;
            reply = true;
            continue;
        }
        break;
    }
    int rc = strbuf_append(out, s + b, e - b);
    strbuf_free(&dec);
    if (reply_r)
        *reply_r = reply;
    return rc < 0 ? -1 : 0;
}

/* ---- dates (RFC 5322 3.3 and 4.3) ---- */

/* Skips white space and (nested) comments. */
static size_t date_skip(const char *s, size_t i, size_t len)
{
    int depth = 0;
    for (; i < len; i++) {
        if (s[i] == '(')
            depth++;
        else if (s[i] == ')' && depth > 0)
            depth--;
        else if (depth == 0 && s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
            break;
    }
    return i;
}

static int date_number(const char *s, size_t *i, size_t len, int max_digits, int *v_r, int *digits_r)
{
    int v = 0, d = 0;
    while (*i < len && isdigit((unsigned char)s[*i]) && d < max_digits) {
        v = v * 10 + (s[*i] - '0');
        (*i)++;
        d++;
    }
    if (d == 0 || (*i < len && isdigit((unsigned char)s[*i])))
        return -1;
    *v_r = v;
    if (digits_r)
        *digits_r = d;
    return 0;
}

static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* The zone's offset in minutes east of UTC; unknown names count as 0
 * (RFC 5322 4.3: military zones are to be taken as -0000). */
static int date_zone(const char *s, size_t i, size_t len, int *off_r)
{
    static const struct { const char *name; int off; } zones[] = {
        { "UT", 0 }, { "GMT", 0 }, { "UTC", 0 }, { "Z", 0 },
        { "EST", -300 }, { "EDT", -240 }, { "CST", -360 }, { "CDT", -300 },
        { "MST", -420 }, { "MDT", -360 }, { "PST", -480 }, { "PDT", -420 },
    };
    *off_r = 0;
    if (i >= len)
        return 0;
    if (s[i] == '+' || s[i] == '-') {
        int sign = s[i] == '-' ? -1 : 1, v, d;
        i++;
        if (date_number(s, &i, len, 4, &v, &d) < 0 || d != 4 || v % 100 > 59)
            return -1;
        *off_r = sign * (v / 100 * 60 + v % 100);
        return 0;
    }
    size_t j = i;
    while (j < len && isalpha((unsigned char)s[j]))
        j++;
    for (size_t k = 0; k < sizeof(zones) / sizeof(zones[0]); k++)
        if (strlen(zones[k].name) == j - i && strncasecmp(s + i, zones[k].name, j - i) == 0)
            *off_r = zones[k].off;
    return 0;
}

int imap_parse_rfc5322_date(const char *s, size_t len, int64_t *t_r)
{
    static const char months[] = "janfebmaraprmayjunjulaugsepoctnovdec";
    size_t i = date_skip(s, 0, len);
    /* optional day-of-week "," */
    if (i < len && isalpha((unsigned char)s[i])) {
        while (i < len && isalpha((unsigned char)s[i]))
            i++;
        i = date_skip(s, i, len);
        if (i < len && s[i] == ',')
            i++;
        i = date_skip(s, i, len);
    }
    int day, mon = -1, year, yd, hh, mm, ss = 0;
    if (date_number(s, &i, len, 2, &day, NULL) < 0 || day < 1 || day > 31)
        return -1;
    i = date_skip(s, i, len);
    if (len - i < 3)
        return -1;
    for (int k = 0; k < 12; k++)
        if (strncasecmp(s + i, months + 3 * k, 3) == 0)
            mon = k + 1;
    if (mon < 0)
        return -1;
    i += 3;
    while (i < len && isalpha((unsigned char)s[i]))     /* "June" */
        i++;
    i = date_skip(s, i, len);
    if (date_number(s, &i, len, 4, &year, &yd) < 0)
        return -1;
    if (yd <= 2)
        year += year < 50 ? 2000 : 1900;
    else if (yd == 3)
        year += 1900;
    i = date_skip(s, i, len);
    if (date_number(s, &i, len, 2, &hh, NULL) < 0 || hh > 23)
        return -1;
    i = date_skip(s, i, len);
    if (i >= len || s[i] != ':')
        return -1;
    i = date_skip(s, i + 1, len);
    if (date_number(s, &i, len, 2, &mm, NULL) < 0 || mm > 59)
        return -1;
    i = date_skip(s, i, len);
    if (i < len && s[i] == ':') {
        i = date_skip(s, i + 1, len);
        if (date_number(s, &i, len, 2, &ss, NULL) < 0 || ss > 60)
            return -1;
        i = date_skip(s, i, len);
    }
    int off;
    if (date_zone(s, i, len, &off) < 0)
        return -1;
    int64_t days = days_from_civil(year, mon, day);
    *t_r = days * 86400 + hh * 3600 + mm * 60 + ss - (int64_t)off * 60;
    return 0;
}

/* ---- message ids ---- */

int imap_msgid_list(const char *value, size_t len, struct strbuf *out)
{
    int count = 0;
    size_t i = 0;
    while (i < len) {
        const char *lt = memchr(value + i, '<', len - i);
        if (lt == NULL)
            break;
        size_t a = (size_t)(lt - value) + 1;
        const char *gt = memchr(value + a, '>', len - a);
        if (gt == NULL)
            break;
        size_t b = (size_t)(gt - value);
        size_t start = out->len;
        bool at = false;
        for (size_t k = a; k < b; k++) {
            unsigned char ch = (unsigned char)value[k];
            if (ch <= ' ' || ch == '<')
                continue;
            at |= ch == '@';
            if (strbuf_append(out, &value[k], 1) < 0)
                return -1;
        }
        if (at && out->len > start) {
            if (strbuf_append(out, "", 1) < 0)
                return -1;
            count++;
        } else
            out->len = start;
        i = b + 1;
    }
    return count;
}

/* ---- threading ---- */

struct tnode {
    int parent, child, next;        /* indices, -1 for none */
    int msg;                        /* index into msgs, -1 for a dummy */
};

struct tctx {
    const struct imap_thread_msg *msgs;
    size_t n;
    struct tnode *t;
    size_t nt, at;
};

static int tnode_new(struct tctx *x, int msg)
{
    if (x->nt == x->at) {
        size_t na = x->at ? x->at * 2 : 64;
        struct tnode *nt = realloc(x->t, na * sizeof(*nt));
        if (nt == NULL)
            return -1;
        x->t = nt;
        x->at = na;
    }
    x->t[x->nt] = (struct tnode){ -1, -1, -1, msg };
    return (int)x->nt++;
}

/* The message whose date and position stand for node i: itself, or for a
 * dummy its first child (RFC 5256 4 step 4). */
static const struct imap_thread_msg *tnode_msg(const struct tctx *x, int i)
{
    for (int guard = 0; i >= 0 && guard < 64; guard++) {
        if (x->t[i].msg >= 0)
            return &x->msgs[x->t[i].msg];
        i = x->t[i].child;
    }
    return NULL;
}

static int msg_date_cmp(const struct imap_thread_msg *a, const struct imap_thread_msg *b)
{
    if (a == NULL || b == NULL)
        return (a == NULL) - (b == NULL);
    if (a->date != b->date)
        return a->date < b->date ? -1 : 1;
    return a->seq < b->seq ? -1 : a->seq > b->seq;
}

static int node_date_cmp(const void *pa, const void *pb, void *arg)
{
    const struct tctx *x = arg;
    return msg_date_cmp(tnode_msg(x, *(const int *)pa), tnode_msg(x, *(const int *)pb));
}

static void tnode_unlink(struct tctx *x, int c)
{
    int p = x->t[c].parent;
    if (p < 0)
        return;
    for (int *pp = &x->t[p].child; *pp >= 0; pp = &x->t[*pp].next)
        if (*pp == c) {
            *pp = x->t[c].next;
            break;
        }
    x->t[c].parent = -1;
    x->t[c].next = -1;
}

static void tnode_add_child(struct tctx *x, int p, int c)
{
    x->t[c].parent = p;
    x->t[c].next = x->t[p].child;
    x->t[p].child = c;
}

/* Linking c under p makes a loop when c is p or one of p's ancestors. */
static bool would_loop(const struct tctx *x, int p, int c)
{
    for (int a = p; a >= 0; a = x->t[a].parent)
        if (a == c)
            return true;
    return false;
}

/* An open-addressing table of strings to node indices. */
struct idtab {
    const char **key;
    int *val;
    size_t mask;
    bool ci;                        /* ASCII case-insensitive keys */
};

static uint64_t id_hash(const char *s, bool ci)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)(ci ? tolower((unsigned char)*s) : *s)) * 1099511628211ull;
    return h;
}

static int idtab_init(struct idtab *t, size_t n, bool ci)
{
    size_t size = 16;
    while (size < n * 2)
        size <<= 1;
    t->key = calloc(size, sizeof(*t->key));
    t->val = calloc(size, sizeof(*t->val));
    t->mask = size - 1;
    t->ci = ci;
    return t->key && t->val ? 0 : -1;
}

static void idtab_free(struct idtab *t)
{
    free(t->key);
    free(t->val);
}

/* The slot for key: its entry, or the empty slot where it belongs. */
static size_t idtab_slot(const struct idtab *t, const char *key)
{
    size_t i = (size_t)id_hash(key, t->ci) & t->mask;
    while (t->key[i] && (t->ci ? strcasecmp(t->key[i], key) : strcmp(t->key[i], key)) != 0)
        i = (i + 1) & t->mask;
    return i;
}

/* Step 1: containers for every message and id, linked by references. */
static int refs_link(struct tctx *x, struct idtab *ids)
{
    for (size_t i = 0; i < x->n; i++) {
        const struct imap_thread_msg *m = &x->msgs[i];
        int c = -1;
        if (m->msgid && m->msgid[0]) {
            size_t slot = idtab_slot(ids, m->msgid);
            if (ids->key[slot] == NULL) {
                if ((c = tnode_new(x, (int)i)) < 0)
                    return -1;
                ids->key[slot] = m->msgid;
                ids->val[slot] = c;
            } else if (x->t[ids->val[slot]].msg < 0) {
                c = ids->val[slot];
                x->t[c].msg = (int)i;
            }
        }
        if (c < 0 && (c = tnode_new(x, (int)i)) < 0)   /* no id, or a duplicate */
            return -1;
        int prev = -1;
        const char *r = m->refs;
        for (size_t k = 0; k < m->n_refs; k++, r += strlen(r) + 1) {
            size_t slot = idtab_slot(ids, r);
            int rc;
            if (ids->key[slot] == NULL) {
                if ((rc = tnode_new(x, -1)) < 0)
                    return -1;
                ids->key[slot] = r;
                ids->val[slot] = rc;
            } else
                rc = ids->val[slot];
            if (prev >= 0 && prev != rc && x->t[rc].parent < 0 && !would_loop(x, prev, rc))
                tnode_add_child(x, prev, rc);
            prev = rc;
        }
        tnode_unlink(x, c);
        if (prev >= 0 && !would_loop(x, prev, c))
            tnode_add_child(x, prev, c);
    }
    return 0;
}

/* Step 3: dummies without children go; a dummy's children take its place,
 * except that a root dummy with several children stays.  Nodes are
 * processed after all their descendants (reverse pre-order). */
static int refs_prune(struct tctx *x, int **roots_r, size_t *n_roots_r)
{
    int *order = malloc((x->nt + 1) * sizeof(int)), *stack = malloc((x->nt + 1) * sizeof(int));
    int *roots = malloc((x->nt + 1) * sizeof(int));
    if (order == NULL || stack == NULL || roots == NULL) {
        free(order);
        free(stack);
        free(roots);
        return -1;
    }
    size_t no = 0, ns = 0, nr = 0;
    for (size_t i = 0; i < x->nt; i++)
        if (x->t[i].parent < 0)
            stack[ns++] = (int)i;
    while (ns > 0) {
        int c = stack[--ns];
        order[no++] = c;
        for (int k = x->t[c].child; k >= 0; k = x->t[k].next)
            stack[ns++] = k;
    }
    for (size_t o = no; o-- > 0;) {
        int c = order[o];
        int head = -1, *tail = &head;
        for (int k = x->t[c].child, next; k >= 0; k = next) {
            next = x->t[k].next;
            if (x->t[k].msg >= 0) {
                *tail = k;
                tail = &x->t[k].next;
                continue;
            }
            for (int g = x->t[k].child; g >= 0; g = x->t[g].next) {   /* splice */
                x->t[g].parent = c;
                *tail = g;
                tail = &x->t[g].next;
            }
        }
        *tail = -1;
        x->t[c].child = head;
    }
    size_t n0 = 0;
    for (size_t i = 0; i < x->nt; i++)
        if (x->t[i].parent < 0)
            order[n0++] = (int)i;
    for (size_t o = 0; o < n0; o++) {
        int i = order[o], k = x->t[i].child;
        if (x->t[i].msg >= 0 || (k >= 0 && x->t[k].next >= 0))
            roots[nr++] = i;
        else if (k >= 0) {              /* a dummy with one child: the child */
            x->t[k].parent = -1;
            x->t[i].child = -1;
            roots[nr++] = k;
        }
    }
    free(order);
    free(stack);
    *roots_r = roots;
    *n_roots_r = nr;
    return 0;
}

/* Sorts node c's children by sent date (step 6). */
static int sort_children(struct tctx *x, int c)
{
    size_t k = 0;
    for (int i = x->t[c].child; i >= 0; i = x->t[i].next)
        k++;
    if (k < 2)
        return 0;
    int *a = malloc(k * sizeof(int));
    if (a == NULL)
        return -1;
    k = 0;
    for (int i = x->t[c].child; i >= 0; i = x->t[i].next)
        a[k++] = i;
    qsort_r(a, k, sizeof(int), node_date_cmp, x);
    x->t[c].child = a[0];
    for (size_t i = 0; i + 1 < k; i++)
        x->t[a[i]].next = a[i + 1];
    x->t[a[k - 1]].next = -1;
    free(a);
    return 0;
}

/* Step 5: root threads with the same base subject are gathered. */
static int refs_gather(struct tctx *x, int *roots, size_t nr)
{
    struct idtab subj;
    if (idtab_init(&subj, nr + 1, true) < 0) {
        idtab_free(&subj);
        return -1;
    }
    for (size_t i = 0; i < nr; i++) {
        const struct imap_thread_msg *m = tnode_msg(x, roots[i]);
        if (m == NULL || m->subject[0] == '\0')
            continue;
        size_t slot = idtab_slot(&subj, m->subject);
        if (subj.key[slot] == NULL) {
            subj.key[slot] = m->subject;
            subj.val[slot] = (int)i;
            continue;
        }
        int t = roots[subj.val[slot]];
        bool cur_dummy = x->t[roots[i]].msg < 0, tab_dummy = x->t[t].msg < 0;
        if (!tab_dummy && (cur_dummy || (x->msgs[x->t[t].msg].reply && !m->reply)))
            subj.val[slot] = (int)i;
    }
    for (size_t i = 0; i < nr; i++) {
        int r = roots[i];
        const struct imap_thread_msg *m = r >= 0 ? tnode_msg(x, r) : NULL;
        if (m == NULL || m->subject[0] == '\0')
            continue;
        size_t slot = idtab_slot(&subj, m->subject);
        size_t ti = (size_t)subj.val[slot];
        int t = roots[ti];
        if (ti == i)
            continue;
        bool r_dummy = x->t[r].msg < 0, t_dummy = x->t[t].msg < 0;
        if (r_dummy && t_dummy) {
            for (int k = x->t[r].child, next; k >= 0; k = next) {
                next = x->t[k].next;
                tnode_add_child(x, t, k);
            }
            x->t[r].child = -1;
        } else if (t_dummy) {
            tnode_add_child(x, t, r);
        } else if (r_dummy) {
            tnode_add_child(x, r, t);
            roots[ti] = r;
        } else if (m->reply && !x->msgs[x->t[t].msg].reply) {
            tnode_add_child(x, t, r);
        } else {
            int d = tnode_new(x, -1);
            if (d < 0) {
                idtab_free(&subj);
                return -1;
            }
            tnode_add_child(x, d, t);
            tnode_add_child(x, d, r);
            roots[ti] = d;
        }
        roots[i] = -1;
    }
    idtab_free(&subj);
    return 0;
}

static int push(int **st, size_t *n, size_t *alloc, int v)
{
    if (*n == *alloc) {
        size_t na = *alloc ? *alloc * 2 : 32;
        int *nst = realloc(*st, na * sizeof(int));
        if (nst == NULL)
            return -1;
        *st = nst;
        *alloc = na;
    }
    (*st)[(*n)++] = v;
    return 0;
}

/* Writes one thread (RFC 5256 5 thread-list, inside its outer
 * parentheses): a chain of single children as "1 2 3", several children
 * as "(..)(..)".  The stack holds, per open parenthesis, the next sibling
 * still to write. */
static int write_thread(struct tctx *x, int root, struct strbuf *out)
{
    int *st = NULL;
    size_t ns = 0, as = 0;
    int cur = root, rc = 0;
    bool first = true;
    for (;;) {
        const struct tnode *t = &x->t[cur];
        if (t->msg >= 0) {
            strbuf_printf(out, first ? "%u" : " %u", x->msgs[t->msg].num);
            first = false;
        }
        if (t->child >= 0 && x->t[t->child].next < 0 && t->msg >= 0) {
            cur = t->child;
            continue;
        }
        if (t->child >= 0) {
            strbuf_append(out, first ? "(" : " (", first ? 1 : 2);
            if (push(&st, &ns, &as, x->t[t->child].next) < 0) {
                rc = -1;
                break;
            }
            cur = t->child;
            first = true;
            continue;
        }
        bool more = false;
        while (ns > 0) {
            strbuf_append(out, ")", 1);
            int sib = st[--ns];
            if (sib >= 0) {
                strbuf_append(out, "(", 1);
                st[ns++] = x->t[sib].next;
                cur = sib;
                first = true;
                more = true;
                break;
            }
        }
        if (!more)
            break;
    }
    free(st);
    return rc;
}

static int thread_references(struct tctx *x, struct strbuf *out)
{
    size_t total_refs = 0;
    for (size_t i = 0; i < x->n; i++)
        total_refs += x->msgs[i].n_refs;
    struct idtab ids;
    int *roots = NULL;
    size_t nr = 0;
    int rc = -1;
    if (idtab_init(&ids, x->n + total_refs + 1, false) < 0 || refs_link(x, &ids) < 0 ||
        refs_prune(x, &roots, &nr) < 0)
        goto out;
    for (size_t i = 0; i < nr; i++)     /* step 4 */
        if (x->t[roots[i]].msg < 0 && sort_children(x, roots[i]) < 0)
            goto out;
    qsort_r(roots, nr, sizeof(int), node_date_cmp, x);
    if (refs_gather(x, roots, nr) < 0)
        goto out;
    for (size_t i = 0; i < x->nt; i++)  /* step 6: dummies last */
        if (x->t[i].msg >= 0 && sort_children(x, (int)i) < 0)
            goto out;
    size_t k = 0;
    for (size_t i = 0; i < nr; i++)
        if (roots[i] >= 0) {
            if (x->t[roots[i]].msg < 0 && sort_children(x, roots[i]) < 0)
                goto out;
            roots[k++] = roots[i];
        }
    qsort_r(roots, k, sizeof(int), node_date_cmp, x);
    rc = 0;
    for (size_t i = 0; i < k && rc == 0; i++) {
        strbuf_append(out, "(", 1);
        rc = write_thread(x, roots[i], out);
        strbuf_append(out, ")", 1);
    }
out:
    idtab_free(&ids);
    free(roots);
    return rc;
}

static int subject_cmp(const void *pa, const void *pb, void *arg)
{
    const struct imap_thread_msg *msgs = arg;
    const struct imap_thread_msg *a = &msgs[*(const size_t *)pa];
    const struct imap_thread_msg *b = &msgs[*(const size_t *)pb];
    int c = strcasecmp(a->subject, b->subject);
    return c ? c : msg_date_cmp(a, b);
}

static int root_cmp(const void *pa, const void *pb, void *arg)
{
    const struct imap_thread_msg *msgs = arg;
    return msg_date_cmp(&msgs[*(const size_t *)pa], &msgs[*(const size_t *)pb]);
}

/* ORDEREDSUBJECT (RFC 5256 4): grouped by base subject; in a group the
 * oldest message is the parent of all the others; threads by the date of
 * their first message. */
static int thread_orderedsubject(const struct imap_thread_msg *msgs, size_t n, struct strbuf *out)
{
    size_t *idx = malloc((n + 1) * sizeof(size_t)), *start = malloc((n + 1) * sizeof(size_t));
    size_t *group_end = malloc((n + 1) * sizeof(size_t));
    if (idx == NULL || start == NULL || group_end == NULL) {
        free(idx);
        free(start);
        free(group_end);
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        idx[i] = i;
    qsort_r(idx, n, sizeof(size_t), subject_cmp, (void *)msgs);
    size_t ng = 0;
    for (size_t i = 0; i < n; i++) {
        if (i == 0 || strcasecmp(msgs[idx[i]].subject, msgs[idx[i - 1]].subject) != 0)
            start[ng++] = i;
    }
    for (size_t g = 0; g < ng; g++)
        group_end[start[g]] = g + 1 < ng ? start[g + 1] : n;
    /* threads ordered by their first message */
    size_t *firsts = malloc((ng + 1) * sizeof(size_t)), *pos = malloc((n + 1) * sizeof(size_t));
    if (firsts == NULL || pos == NULL) {
        free(idx);
        free(start);
        free(group_end);
        free(firsts);
        free(pos);
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        pos[idx[i]] = i;
    for (size_t g = 0; g < ng; g++)
        firsts[g] = idx[start[g]];
    qsort_r(firsts, ng, sizeof(size_t), root_cmp, (void *)msgs);
    for (size_t g = 0; g < ng; g++) {
        size_t a = pos[firsts[g]], e = group_end[a];
        strbuf_printf(out, "(%u", msgs[idx[a]].num);
        if (e - a == 2)
            strbuf_printf(out, " %u", msgs[idx[a + 1]].num);
        else if (e - a > 2) {
            strbuf_append(out, " ", 1);
            for (size_t i = a + 1; i < e; i++)
                strbuf_printf(out, "(%u)", msgs[idx[i]].num);
        }
        strbuf_append(out, ")", 1);
    }
    free(idx);
    free(start);
    free(group_end);
    free(firsts);
    free(pos);
    return 0;
}

int imap_thread(enum imap_thread_alg alg, const struct imap_thread_msg *msgs, size_t n,
                struct strbuf *out)
{
    int rc;
    if (alg == IMAP_THREAD_ORDEREDSUBJECT)
        rc = thread_orderedsubject(msgs, n, out);
    else {
        struct tctx x = { .msgs = msgs, .n = n };
        rc = thread_references(&x, out);
        free(x.t);
    }
    return rc;
}
