/*
 * The capture REST API with Mailpit's API v1 paths and JSON field names
 * (docs/capture-api.md), the message views for the UI's iframe, the
 * embedded UI files and the live event stream.
 *
 * Store calls run on the worker loop: the capture account holds at most
 * --max messages (500 by default), so a listing is one small SQLite read;
 * sending to the relay (release) runs on the pool.
 */
#include "http/capture.h"

#include <ctype.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "core/log.h"
#include "core/pool.h"
#include "http/http_server.h"
#include "mime/mime.h"
#include "mime/mime_codec.h"
#include "store/store.h"
#include "store/store_imap.h"
#include "store/store_messages.h"

#define CACHE_BUCKETS 1024
#define LIST_LIMIT_DEFAULT 50

static struct capture_settings cs;
static time_t started_at;
static atomic_ullong stat_accepted, stat_accepted_size, stat_deleted;

/* ---- the meta cache (id -> meta), one lock ---- */

struct cache_node {
    struct cache_node *next;
    struct capture_meta *meta;
};
static struct cache_node *cache[CACHE_BUCKETS];
static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;

static unsigned id_hash(const char *id)
{
    unsigned h = 5381;
    for (; *id; id++)
        h = h * 33 + (unsigned char)*id;
    return h % CACHE_BUCKETS;
}

/* Under cache_lock. */
static struct capture_meta *cache_find(const char *id)
{
    for (struct cache_node *n = cache[id_hash(id)]; n; n = n->next)
        if (strcmp(n->meta->id, id) == 0)
            return n->meta;
    return NULL;
}

/* Under cache_lock; takes m (freed if the id is already there). */
static struct capture_meta *cache_insert(struct capture_meta *m)
{
    struct capture_meta *old = cache_find(m->id);
    if (old) {
        capture_meta_free(m);
        return old;
    }
    struct cache_node *n = malloc(sizeof(*n));
    if (n == NULL) {
        capture_meta_free(m);
        return NULL;
    }
    unsigned h = id_hash(m->id);
    n->meta = m;
    n->next = cache[h];
    cache[h] = n;
    return m;
}

static void cache_remove(const char *id)
{
    pthread_mutex_lock(&cache_lock);
    for (struct cache_node **pp = &cache[id_hash(id)]; *pp; pp = &(*pp)->next) {
        if (strcmp((*pp)->meta->id, id) == 0) {
            struct cache_node *n = *pp;
            *pp = n->next;
            capture_meta_free(n->meta);
            free(n);
            break;
        }
    }
    pthread_mutex_unlock(&cache_lock);
}

static const char *file_id(const char *file)
{
    const char *s = strrchr(file, '/');
    return s ? s + 1 : file;
}

/* The meta of a listed message, built from its file when not cached.
 * Under cache_lock. */
static struct capture_meta *meta_get(const struct store_msg *sm)
{
    const char *id = file_id(sm->file);
    struct capture_meta *m = cache_find(id);
    if (m)
        return m;
    char *data;
    size_t len;
    if (capture_file_read(cs.store, sm->file, &data, &len) < 0)
        return NULL;
    m = capture_meta_build(id, sm->file, data, len, sm->internaldate, sm->size);
    free(data);
    return m ? cache_insert(m) : NULL;
}

int capture_cache_warm(void)
{
    struct store_msg_list list;
    int n = store_msg_list_load(cs.store, cs.account_id, "INBOX", &list);
    if (n < 0)
        return -1;
    pthread_mutex_lock(&cache_lock);
    for (size_t i = 0; i < list.n; i++)
        meta_get(&list.msgs[i]);
    pthread_mutex_unlock(&cache_lock);
    store_msg_list_free(&list);
    return n;
}

/* ---- helpers ---- */

static int list_load(struct http_exchange *x, struct store_msg_list *list)
{
    if (store_msg_list_load(cs.store, cs.account_id, "INBOX", list) < 0) {
        http_reply_text(x, 500, "store error: %s", store_error_text());
        return -1;
    }
    return 0;
}

/* Index in list of the message with API id ("latest": the newest), or -1. */
static long list_find(const struct store_msg_list *list, const char *id)
{
    if (strcmp(id, "latest") == 0)
        return list->n > 0 ? (long)list->n - 1 : -1;
    for (size_t i = 0; i < list->n; i++)
        if (strcmp(file_id(list->msgs[i].file), id) == 0)
            return (long)i;
    return -1;
}

/* One message loaded and parsed for a handler. */
struct loaded {
    struct store_msg_list list;
    const struct store_msg *sm;
    char *data;
    size_t len;
    struct mime_message *msg;
};

static void loaded_free(struct loaded *l)
{
    mime_message_free(l->msg);
    free(l->data);
    store_msg_list_free(&l->list);
}

/* Loads message x->params[0]; replies 404/500 itself and returns -1. */
static int load_message(struct http_exchange *x, struct loaded *l)
{
    memset(l, 0, sizeof(*l));
    if (list_load(x, &l->list) < 0)
        return -1;
    long i = list_find(&l->list, x->params[0]);
    if (i < 0) {
        store_msg_list_free(&l->list);
        http_reply_text(x, 404, "message not found");
        return -1;
    }
    l->sm = &l->list.msgs[i];
    if (capture_file_read(cs.store, l->sm->file, &l->data, &l->len) < 0 ||
        (l->msg = mime_parse(l->data, l->len)) == NULL) {
        loaded_free(l);
        http_reply_text(x, 404, "message not found");
        return -1;
    }
    return 0;
}

static void broadcast_json(const char *event, json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT | JSON_ENSURE_ASCII);
    json_decref(j);
    if (s) {
        http_sse_broadcast(event, s);
        free(s);
    }
}

static json_t *ids_json(const char *const *ids, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, json_string(ids[i]));
    return a;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* Expunges the listed messages at the given indexes; updates the cache
 * and tells the UIs.  Returns the count or -1. */
static int delete_indexes(struct store_msg_list *list, const size_t *idx, size_t n)
{
    if (n == 0)
        return 0;
    uint32_t *uids = malloc(n * sizeof(*uids));
    const char **ids = malloc(n * sizeof(*ids));
    if (uids == NULL || ids == NULL) {
        free(uids);
        free(ids);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        uids[i] = list->msgs[idx[i]].uid;
        ids[i] = file_id(list->msgs[idx[i]].file);
    }
    qsort(uids, n, sizeof(*uids), cmp_u32);
    const char *err = NULL;
    int rc = store_msg_expunge(cs.store, cs.account_id, "INBOX", uids, n, NULL, &err);
    if (rc >= 0) {
        for (size_t i = 0; i < n; i++)
            cache_remove(ids[i]);
        atomic_fetch_add(&stat_deleted, (unsigned long long)rc);
        broadcast_json("delete", json_pack("{s:o}", "IDs", ids_json(ids, n)));
    } else {
        log_error(NULL, "event=capture_delete_failed error=\"%s\"", err ? err : "?");
    }
    free(uids);
    free(ids);
    return rc;
}

/* The IDs array of a JSON body ({"IDs": [...]}); NULL when absent. */
static json_t *body_ids(const json_t *body)
{
    json_t *ids = body ? json_object_get(body, "IDs") : NULL;
    if (ids == NULL)
        ids = body ? json_object_get(body, "ids") : NULL;
    return json_is_array(ids) && json_array_size(ids) > 0 ? ids : NULL;
}

static json_t *parse_body(struct http_exchange *x, bool *bad_r)
{
    *bad_r = false;
    if (x->req->body_len == 0)
        return NULL;
    json_error_t e;
    json_t *j = json_loadb(x->req->body, x->req->body_len, 0, &e);
    if (j == NULL || !json_is_object(j)) {
        json_decref(j);
        *bad_r = true;
        http_reply_text(x, 400, "invalid JSON body");
    }
    return j;
}

static long query_long(struct http_exchange *x, const char *name, long def)
{
    char v[32];
    if (!http_query_get(x->req->query, name, v, sizeof(v)) || v[0] == '\0')
        return def;
    char *end;
    long n = strtol(v, &end, 10);
    return *end == '\0' && n >= 0 ? n : def;
}

/* ---- listing and search ---- */

/* GET /api/v1/messages and /api/v1/search: newest first. */
static void list_reply(struct http_exchange *x, const struct capture_query *q)
{
    struct store_msg_list list;
    if (list_load(x, &list) < 0)
        return;
    long start = query_long(x, "start", 0), limit = query_long(x, "limit", LIST_LIMIT_DEFAULT);
    if (limit == 0)
        limit = LIST_LIMIT_DEFAULT;
    json_t *msgs = json_array();
    long matched = 0, unread = 0, matched_unread = 0;
    pthread_mutex_lock(&cache_lock);
    for (size_t k = list.n; k-- > 0;) {
        const struct store_msg *sm = &list.msgs[k];
        bool read = (sm->flags & STORE_FLAG_SEEN) != 0;
        unread += !read;
        /* without a query every message matches: only the page's
         * messages need their meta (built and cached on first use) */
        bool on_page = matched >= start && json_array_size(msgs) < (size_t)limit;
        struct capture_meta *m = q || on_page ? meta_get(sm) : NULL;
        if ((q || on_page) && (m == NULL || (q && !capture_query_match(q, m, read))))
            continue;
        matched_unread += !read;
        if (matched++ < start || json_array_size(msgs) >= (size_t)limit)
            continue;
        json_t *s = json_deep_copy(m->summary);
        json_object_set_new(s, "Read", json_boolean(read));
        json_array_append_new(msgs, s);
    }
    pthread_mutex_unlock(&cache_lock);
    json_t *o = json_object();
    json_object_set_new(o, "total", json_integer((json_int_t)list.n));
    json_object_set_new(o, "unread", json_integer(unread));
    json_object_set_new(o, "count", json_integer((json_int_t)json_array_size(msgs)));
    json_object_set_new(o, "messages_count", json_integer(matched));
    json_object_set_new(o, "messages_unread", json_integer(matched_unread));
    json_object_set_new(o, "start", json_integer(start));
    json_object_set_new(o, "tags", json_array());
    json_object_set_new(o, "messages", msgs);
    store_msg_list_free(&list);
    http_reply_json(x, 200, o);
}

static void h_messages_get(struct http_exchange *x)
{
    list_reply(x, NULL);
}

static void h_search_get(struct http_exchange *x)
{
    char qs[2048] = "";
    http_query_get(x->req->query, "query", qs, sizeof(qs));
    const char *why;
    struct capture_query *q = capture_query_parse(qs, &why);
    if (q == NULL) {
        http_reply_text(x, strcmp(why, "out of memory") == 0 ? 500 : 400, "bad query: %s", why);
        return;
    }
    list_reply(x, q);
    capture_query_free(q);
}

/* DELETE /api/v1/messages ({"IDs": [...]} or no body: all). */
static void h_messages_delete(struct http_exchange *x)
{
    bool bad;
    json_t *body = parse_body(x, &bad);
    if (bad)
        return;
    json_t *ids = body_ids(body);
    struct store_msg_list list;
    if (list_load(x, &list) < 0) {
        json_decref(body);
        return;
    }
    size_t *idx = calloc(list.n + 1, sizeof(*idx)), n = 0;
    for (size_t i = 0; i < list.n && idx; i++) {
        if (ids == NULL) {
            idx[n++] = i;
            continue;
        }
        size_t k;
        json_t *v;
        json_array_foreach(ids, k, v)
            if (json_is_string(v) && strcmp(json_string_value(v), file_id(list.msgs[i].file)) == 0) {
                idx[n++] = i;
                break;
            }
    }
    int rc = idx ? delete_indexes(&list, idx, n) : -1;
    free(idx);
    store_msg_list_free(&list);
    json_decref(body);
    if (rc < 0)
        http_reply_text(x, 500, "store error");
    else
        http_reply(x, 200, "text/plain; charset=utf-8", "ok", 2);
}

/* DELETE /api/v1/search?query=... */
static void h_search_delete(struct http_exchange *x)
{
    char qs[2048] = "";
    http_query_get(x->req->query, "query", qs, sizeof(qs));
    if (qs[strspn(qs, " \t")] == '\0') {
        http_reply_text(x, 400, "a query is required (DELETE /api/v1/messages deletes all)");
        return;
    }
    const char *why;
    struct capture_query *q = capture_query_parse(qs, &why);
    if (q == NULL) {
        http_reply_text(x, strcmp(why, "out of memory") == 0 ? 500 : 400, "bad query: %s", why);
        return;
    }
    struct store_msg_list list;
    if (list_load(x, &list) < 0) {
        capture_query_free(q);
        return;
    }
    size_t *idx = calloc(list.n + 1, sizeof(*idx)), n = 0;
    pthread_mutex_lock(&cache_lock);
    for (size_t i = 0; i < list.n && idx; i++) {
        struct capture_meta *m = meta_get(&list.msgs[i]);
        if (m && capture_query_match(q, m, (list.msgs[i].flags & STORE_FLAG_SEEN) != 0))
            idx[n++] = i;
    }
    pthread_mutex_unlock(&cache_lock);
    int rc = idx ? delete_indexes(&list, idx, n) : -1;
    free(idx);
    store_msg_list_free(&list);
    capture_query_free(q);
    if (rc < 0)
        http_reply_text(x, 500, "store error");
    else
        http_reply(x, 200, "text/plain; charset=utf-8", "ok", 2);
}

static void flag_done(const struct store_imap_msg *m, enum store_imap_flag_result r, void *arg)
{
}

/* Sets or clears \Seen on the given uids (ascending). */
static int set_read(const struct store_msg_list *list, uint32_t *uids, size_t n, bool read)
{
    if (n == 0)
        return 0;
    qsort(uids, n, sizeof(*uids), cmp_u32);
    uint64_t modseq = 0;
    long rc = store_imap_flags(cs.store, list->mailbox_id, uids, n,
                               read ? STORE_IMAP_FLAGS_ADD : STORE_IMAP_FLAGS_REMOVE,
                               STORE_FLAG_SEEN, "", 0, flag_done, NULL, &modseq);
    return rc < 0 ? -1 : (int)rc;
}

/* PUT /api/v1/messages {"IDs": [...], "Read": bool} (no IDs: all). */
static void h_messages_put(struct http_exchange *x)
{
    bool bad;
    json_t *body = parse_body(x, &bad);
    if (bad)
        return;
    if (body == NULL || !json_is_boolean(json_object_get(body, "Read"))) {
        json_decref(body);
        http_reply_text(x, 400, "expected {\"IDs\": [...], \"Read\": true|false}");
        return;
    }
    bool read = json_is_true(json_object_get(body, "Read"));
    json_t *ids = body_ids(body);
    /* newer Mailpit: {"Read": true, "Search": "query"} marks the matches */
    const char *search = json_string_value(json_object_get(body, "Search"));
    struct capture_query *q = NULL;
    if (search && search[strspn(search, " \t")] != '\0' && ids == NULL) {
        const char *why;
        if ((q = capture_query_parse(search, &why)) == NULL) {
            json_decref(body);
            http_reply_text(x, strcmp(why, "out of memory") == 0 ? 500 : 400, "bad query: %s",
                            why);
            return;
        }
    }
    struct store_msg_list list;
    if (list_load(x, &list) < 0) {
        capture_query_free(q);
        json_decref(body);
        return;
    }
    uint32_t *uids = calloc(list.n + 1, sizeof(*uids));
    json_t *changed = json_array();
    size_t n = 0;
    for (size_t i = 0; i < list.n && uids; i++) {
        const char *id = file_id(list.msgs[i].file);
        bool want = ids == NULL;
        size_t k;
        json_t *v;
        if (ids)
            json_array_foreach(ids, k, v)
                if (json_is_string(v) && strcmp(json_string_value(v), id) == 0)
                    want = true;
        if (want && q) {
            pthread_mutex_lock(&cache_lock);
            struct capture_meta *m = meta_get(&list.msgs[i]);
            want = m && capture_query_match(q, m, (list.msgs[i].flags & STORE_FLAG_SEEN) != 0);
            pthread_mutex_unlock(&cache_lock);
        }
        if (want) {
            uids[n++] = list.msgs[i].uid;
            json_array_append_new(changed, json_string(id));
        }
    }
    int rc = uids ? set_read(&list, uids, n, read) : -1;
    free(uids);
    store_msg_list_free(&list);
    capture_query_free(q);
    json_decref(body);
    if (rc < 0) {
        json_decref(changed);
        http_reply_text(x, 500, "store error: %s", store_error_text());
        return;
    }
    broadcast_json("update", json_pack("{s:o,s:b}", "IDs", changed, "Read", read));
    http_reply(x, 200, "text/plain; charset=utf-8", "ok", 2);
}

/* ---- one message ---- */

/* GET /api/v1/message/{ID}: the full message; marks it read (as Mailpit). */
static void h_message_get(struct http_exchange *x)
{
    struct loaded l;
    if (load_message(x, &l) < 0)
        return;
    pthread_mutex_lock(&cache_lock);
    struct capture_meta *m = meta_get(l.sm);
    json_t *o = m ? capture_message_json(m, l.msg, true) : NULL;
    pthread_mutex_unlock(&cache_lock);
    if (o && !(l.sm->flags & STORE_FLAG_SEEN)) {
        uint32_t uid = l.sm->uid;
        if (set_read(&l.list, &uid, 1, true) > 0)
            broadcast_json("update", json_pack("{s:[s],s:b}", "IDs", file_id(l.sm->file), "Read", 1));
    }
    loaded_free(&l);
    if (o == NULL)
        http_reply_text(x, 500, "cannot read message");
    else
        http_reply_json(x, 200, o);
}

static void h_message_headers(struct http_exchange *x)
{
    struct loaded l;
    if (load_message(x, &l) < 0)
        return;
    json_t *o = capture_headers_json(l.msg);
    loaded_free(&l);
    http_reply_json(x, 200, o);
}

/* GET /api/v1/message/{ID}/raw (?dl=1: as a download). */
static void h_message_raw(struct http_exchange *x)
{
    struct loaded l;
    if (load_message(x, &l) < 0)
        return;
    char dl[8];
    if (http_query_get(x->req->query, "dl", dl, sizeof(dl)) && strcmp(dl, "1") == 0)
        http_header(x, "Content-Disposition", "attachment; filename=\"%s.eml\"", file_id(l.sm->file));
    http_reply(x, 200, "text/plain; charset=utf-8", l.data, l.len);
    loaded_free(&l);
}

/* A Content-Type safe to send back: type/subtype from the part, never one
 * a browser would run in our origin without the sandbox CSP. */
static void part_reply(struct http_exchange *x, const struct mime_message *msg,
                       const struct mime_part *p)
{
    struct strbuf body, fname;
    strbuf_init(&body, CAPTURE_DECODE_MAX);
    strbuf_init(&fname, 4096);
    mime_part_decode(msg, p, false, &body);
    capture_part_filename(p, &fname);
    char ct[128];
    mime_part_content_type(p, ct, sizeof(ct));
    const char *cs_param = mime_part_charset(p);
    char ctype[256];
    if (cs_param && strncmp(ct, "text/", 5) == 0 && strspn(cs_param,
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:") == strlen(cs_param))
        snprintf(ctype, sizeof(ctype), "%s; charset=%s", ct, cs_param);
    else
        snprintf(ctype, sizeof(ctype), "%s", ct);
    if (fname.len > 0) {
        /* RFC 6266 filename*: UTF-8 percent-encoded */
        struct strbuf enc;
        strbuf_init(&enc, 16384);
        for (size_t i = 0; i < fname.len; i++) {
            unsigned char c = (unsigned char)fname.data[i];
            if (isalnum(c) || strchr("-._~", c))
                strbuf_append(&enc, &fname.data[i], 1);
            else
                strbuf_printf(&enc, "%%%02X", c);
        }
        char dl[8];
        bool attach = http_query_get(x->req->query, "dl", dl, sizeof(dl)) && strcmp(dl, "1") == 0;
        http_header(x, "Content-Disposition", "%s; filename*=UTF-8''%s", attach ? "attachment" : "inline",
                    enc.data ? enc.data : "");
        strbuf_free(&enc);
    }
    http_reply(x, 200, ctype, body.data ? body.data : "", body.len);
    strbuf_free(&body);
    strbuf_free(&fname);
}

/* GET /api/v1/message/{ID}/part/{PartID} and .../part/{PartID}/thumb
 * (the thumbnail is the image itself: no image scaling here). */
static void h_message_part(struct http_exchange *x)
{
    struct loaded l;
    if (load_message(x, &l) < 0)
        return;
    const struct mime_part *p = capture_part_find(l.msg, x->params[1]);
    if (p == NULL)
        http_reply_text(x, 404, "part not found");
    else
        part_reply(x, l.msg, p);
    loaded_free(&l);
}

/* ---- checks ---- */

typedef json_t *check_fn(const struct mime_message *msg);

static void check_reply(struct http_exchange *x, check_fn *fn)
{
    struct loaded l;
    if (load_message(x, &l) < 0)
        return;
    json_t *o = fn(l.msg);
    loaded_free(&l);
    http_reply_json(x, 200, o);
}

static void h_html_check(struct http_exchange *x) { check_reply(x, capture_check_html); }
static void h_link_check(struct http_exchange *x) { check_reply(x, capture_check_links); }
static void h_sa_check(struct http_exchange *x) { check_reply(x, capture_check_spam); }
/* With --dns the authentication part is finished on the pool (DNS). */
struct verify_job {
    struct http_exchange *x;
    json_t *reply;                /* what is sent */
    json_t *auth;                 /* borrowed: the Auth object inside reply */
    char *data;
    size_t len;
};

static void verify_work(void *arg)
{
    struct verify_job *j = arg;
    capture_check_auth_verify(j->auth, j->data, j->len, cs.dns);
}

static void verify_done(void *arg)
{
    struct verify_job *j = arg;
    http_reply_json(j->x, 200, j->reply);
    free(j->data);
    free(j);
}

/* Replies reply, after the DNS checks of auth when --dns is on; takes
 * reply and the loaded message. */
static void auth_reply(struct http_exchange *x, json_t *reply, json_t *auth, struct loaded *l)
{
    if (cs.dns[0] == '\0' || reply == NULL || auth == NULL) {
        loaded_free(l);
        http_reply_json(x, 200, reply);
        return;
    }
    struct verify_job *j = calloc(1, sizeof(*j));
    if (j == NULL) {
        loaded_free(l);
        http_reply_json(x, 200, reply);
        return;
    }
    j->x = x;
    j->reply = reply;
    j->auth = auth;
    j->data = l->data;            /* the job owns the bytes now */
    j->len = l->len;
    l->data = NULL;
    loaded_free(l);
    http_defer(x);
    pool_submit(http_exchange_base(x), verify_work, verify_done, j);
}

static void h_auth_check(struct http_exchange *x)
{
    struct loaded l;
    if (load_message(x, &l) < 0)
        return;
    json_t *a = capture_check_auth(l.msg);
    auth_reply(x, a, a, &l);
}

/* GET /api/v1/message/{ID}/checks: every check in one object (postel). */
static void h_checks(struct http_exchange *x)
{
    struct loaded l;
    if (load_message(x, &l) < 0)
        return;
    json_t *o = json_object();
    json_t *a = capture_check_auth(l.msg);
    json_object_set_new(o, "HTML", capture_check_html(l.msg));
    json_object_set_new(o, "Links", capture_check_links(l.msg));
    json_object_set_new(o, "Spam", capture_check_spam(l.msg));
    json_object_set_new(o, "Auth", a);
    json_object_set_new(o, "Size", capture_check_size(l.sm->size));
    auth_reply(x, o, a, &l);
}

/* ---- release ---- */

struct release_job {
    struct http_exchange *x;
    const struct capture_relay *relay;
    char from[300];
    char **rcpts;
    size_t n_rcpts;
    char *data;
    size_t len;
    int rc;
    char err[300];
};

static void release_work(void *arg)
{
    struct release_job *j = arg;
    j->rc = capture_smtp_send(j->relay, "postel-capture", j->from, (const char *const *)j->rcpts,
                              j->n_rcpts, j->data, j->len, j->err, sizeof(j->err));
}

static void release_done(void *arg)
{
    struct release_job *j = arg;
    if (j->rc == 0) {
        log_info(NULL, "event=capture_release relay=%s rcpts=%zu", j->relay->addr, j->n_rcpts);
        http_reply(j->x, 200, "text/plain; charset=utf-8", "ok", 2);
    } else {
        log_warn(NULL, "event=capture_release_failed relay=%s error=\"%s\"", j->relay->addr, j->err);
        http_reply_text(j->x, 502, "release failed: %s", j->err);
    }
    for (size_t i = 0; i < j->n_rcpts; i++)
        free(j->rcpts[i]);
    free(j->rcpts);
    free(j->data);
    free(j);
}

/* The data after our own "Return-Path"/"Delivered-To" prefix lines. */
static size_t skip_store_prefix(const char *d, size_t len, char *from, size_t from_size)
{
    size_t off = 0;
    from[0] = '\0';
    for (int k = 0; k < 2; k++) {
        const char *nl = memchr(d + off, '\n', len - off);
        if (nl == NULL)
            break;
        if (strncasecmp(d + off, "Return-Path:", 12) == 0) {
            const char *lt = memchr(d + off, '<', (size_t)(nl - d - (long)off));
            const char *gt = lt ? memchr(lt, '>', (size_t)(nl - lt)) : NULL;
            if (lt && gt)
                snprintf(from, from_size, "%.*s", (int)(gt - lt - 1), lt + 1);
        } else if (strncasecmp(d + off, "Delivered-To:", 13) != 0) {
            break;
        }
        off = (size_t)(nl - d) + 1;
    }
    return off;
}

/* A release recipient: local@domain, printable ASCII or UTF-8, nothing
 * that could end the RCPT command or its path. */
static bool release_addr_ok(const char *a)
{
    size_t n = strlen(a);
    const char *at = strrchr(a, '@');
    if (n < 3 || n > 254 || at == NULL || at == a || at[1] == '\0')
        return false;
    for (const unsigned char *c = (const unsigned char *)a; *c; c++)
        if (*c <= ' ' || *c == 0x7f || *c == '<' || *c == '>' || *c == ',')
            return false;
    return true;
}

/* POST /api/v1/message/{ID}/release {"To": ["a@b", ...]} */
static void h_release(struct http_exchange *x)
{
    if (cs.relay.addr[0] == '\0') {
        http_reply_text(x, 400, "message release is not configured (start with --relay HOST:PORT)");
        return;
    }
    bool bad;
    json_t *body = parse_body(x, &bad);
    if (bad)
        return;
    json_t *to = body ? json_object_get(body, "To") : NULL;
    bool to_ok = json_is_array(to) && json_array_size(to) > 0 && json_array_size(to) <= 100;
    size_t k;
    json_t *v;
    json_array_foreach(to_ok ? to : NULL, k, v) {
        const char *a = json_string_value(v);
        if (a == NULL || !release_addr_ok(a))
            to_ok = false;
    }
    if (!to_ok) {
        json_decref(body);
        http_reply_text(x, 400, "expected {\"To\": [\"address\", ...]} with 1 to 100 addresses");
        return;
    }
    struct loaded l;
    if (load_message(x, &l) < 0) {
        json_decref(body);
        return;
    }
    struct release_job *j = calloc(1, sizeof(*j));
    j->x = x;
    j->relay = &cs.relay;
    size_t off = skip_store_prefix(l.data, l.len, j->from, sizeof(j->from));
    j->len = l.len - off;
    j->data = malloc(j->len + 1);
    memcpy(j->data, l.data + off, j->len);
    j->rcpts = calloc(json_array_size(to), sizeof(char *));
    json_array_foreach(to, k, v)
        j->rcpts[j->n_rcpts++] = strdup(json_string_value(v));
    json_decref(body);
    loaded_free(&l);
    http_defer(x);
    pool_submit(http_exchange_base(x), release_work, release_done, j);
}

/* ---- send ---- */

/* "Name <addr>" from {"Email", "Name"} or a plain string; into sb. */
static int send_addr(json_t *v, struct strbuf *sb, struct strbuf *bare)
{
    const char *email = json_is_string(v) ? json_string_value(v)
                                          : json_string_value(json_object_get(v, "Email"));
    const char *name = json_is_object(v) ? json_string_value(json_object_get(v, "Name")) : NULL;
    if (email == NULL || email[0] == '\0' || strpbrk(email, "<>\r\n\" ,"))
        return -1;
    if (name && name[0] && !strpbrk(name, "\r\n")) {
        strbuf_append(sb, "\"", 1);
        for (const char *c = name; *c; c++) {
            if (*c == '"' || *c == '\\')
                strbuf_append(sb, "\\", 1);
            strbuf_append(sb, c, 1);
        }
        strbuf_printf(sb, "\" <%s>", email);
    } else {
        strbuf_printf(sb, "<%s>", email);
    }
    if (bare)
        strbuf_printf(bare, "%s", email);
    return 0;
}

static int send_addr_list(json_t *arr, const char *header, struct strbuf *out)
{
    if (!json_is_array(arr) || json_array_size(arr) == 0)
        return 0;
    strbuf_printf(out, "%s: ", header);
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v) {
        if (i > 0)
            strbuf_append(out, ",\r\n ", 4);
        if (send_addr(v, out, NULL) < 0)
            return -1;
    }
    strbuf_append(out, "\r\n", 2);
    return 0;
}

/* Encodes a header value as an RFC 2047 word when it is not plain ASCII. */
static void header_word(struct strbuf *out, const char *s)
{
    bool ascii = true;
    for (const char *c = s; *c; c++)
        if ((unsigned char)*c >= 0x80 || *c == '\r' || *c == '\n')
            ascii = false;
    if (ascii) {
        strbuf_append(out, s, strlen(s));
        return;
    }
    strbuf_append(out, "=?UTF-8?B?", 10);
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const unsigned char *d = (const unsigned char *)s;
    size_t len = strlen(s);
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)d[i] << 16 | (i + 1 < len ? (uint32_t)d[i + 1] << 8 : 0) |
                     (i + 2 < len ? d[i + 2] : 0);
        char q[4] = { b64[(v >> 18) & 63], b64[(v >> 12) & 63],
                      i + 1 < len ? b64[(v >> 6) & 63] : '=', i + 2 < len ? b64[v & 63] : '=' };
        strbuf_append(out, q, 4);
    }
    strbuf_append(out, "?=", 2);
}

static void append_b64_lines(struct strbuf *out, const unsigned char *d, size_t len)
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t col = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)d[i] << 16 | (i + 1 < len ? (uint32_t)d[i + 1] << 8 : 0) |
                     (i + 2 < len ? d[i + 2] : 0);
        char q[4] = { b64[(v >> 18) & 63], b64[(v >> 12) & 63],
                      i + 1 < len ? b64[(v >> 6) & 63] : '=', i + 2 < len ? b64[v & 63] : '=' };
        strbuf_append(out, q, 4);
        col += 4;
        if (col >= 76) {
            strbuf_append(out, "\r\n", 2);
            col = 0;
        }
    }
    if (col)
        strbuf_append(out, "\r\n", 2);
}

static void text_part(struct strbuf *out, const char *subtype, const char *text)
{
    strbuf_printf(out, "Content-Type: text/%s; charset=utf-8\r\n"
                       "Content-Transfer-Encoding: base64\r\n\r\n", subtype);
    append_b64_lines(out, (const unsigned char *)text, strlen(text));
}

/* Builds the message of a POST /api/v1/send body.  0 or -1 (bad input). */
static int send_build(json_t *b, struct strbuf *out, const char **why)
{
    const char *subject = json_string_value(json_object_get(b, "Subject"));
    const char *text = json_string_value(json_object_get(b, "Text"));
    const char *html = json_string_value(json_object_get(b, "HTML"));
    json_t *att = json_object_get(b, "Attachments");
    json_t *hdrs = json_object_get(b, "Headers");
    char boundary[40], alt[40], date[64], mid[64];
    random_hex(boundary, 24);
    random_hex(alt, 24);
    random_hex(mid, 24);
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
    strbuf_printf(out, "Date: %s\r\nMessage-ID: <%s@postel.capture>\r\nMIME-Version: 1.0\r\nFrom: ",
                  date, mid);
    *why = "From: an {\"Email\", \"Name\"} object is required";
    if (send_addr(json_object_get(b, "From"), out, NULL) < 0)
        return -1;
    strbuf_append(out, "\r\n", 2);
    *why = "bad address in To, Cc, Bcc or ReplyTo";
    if (send_addr_list(json_object_get(b, "To"), "To", out) < 0 ||
        send_addr_list(json_object_get(b, "Cc"), "Cc", out) < 0 ||
        send_addr_list(json_object_get(b, "Bcc"), "Bcc", out) < 0 ||
        send_addr_list(json_object_get(b, "ReplyTo"), "Reply-To", out) < 0)
        return -1;
    strbuf_append(out, "Subject: ", 9);
    header_word(out, subject ? subject : "");
    strbuf_append(out, "\r\n", 2);
    const char *k;
    json_t *v;
    *why = "Headers: values must be strings without line breaks";
    if (json_is_object(hdrs))
        json_object_foreach(hdrs, k, v) {
            if (!json_is_string(v) || strpbrk(json_string_value(v), "\r\n") || strpbrk(k, ": \r\n"))
                return -1;
            strbuf_printf(out, "%s: ", k);
            header_word(out, json_string_value(v));
            strbuf_append(out, "\r\n", 2);
        }
    bool has_att = json_is_array(att) && json_array_size(att) > 0;
    if (has_att)
        strbuf_printf(out, "Content-Type: multipart/mixed; boundary=\"%s\"\r\n\r\n--%s\r\n", boundary,
                      boundary);
    if (text && html) {
        strbuf_printf(out, "Content-Type: multipart/alternative; boundary=\"%s\"\r\n\r\n--%s\r\n",
                      alt, alt);
        text_part(out, "plain", text);
        strbuf_printf(out, "--%s\r\n", alt);
        text_part(out, "html", html);
        strbuf_printf(out, "--%s--\r\n", alt);
    } else {
        text_part(out, html ? "html" : "plain", html ? html : text ? text : "");
    }
    if (!has_att)
        return out->len > 0 ? 0 : -1;
    size_t i;
    json_array_foreach(att, i, v) {
        const char *content = json_string_value(json_object_get(v, "Content"));
        const char *fname = json_string_value(json_object_get(v, "Filename"));
        const char *ctype = json_string_value(json_object_get(v, "ContentType"));
        const char *cid = json_string_value(json_object_get(v, "ContentID"));
        *why = "Attachments: Content (base64) and Filename are required";
        if (content == NULL || fname == NULL || strpbrk(fname, "\"\r\n") ||
            (ctype && strpbrk(ctype, "\r\n;")) || (cid && strpbrk(cid, "<>\r\n")))
            return -1;
        strbuf_printf(out, "--%s\r\nContent-Type: %s; name=\"%s\"\r\n"
                           "Content-Disposition: %s; filename=\"%s\"\r\n"
                           "Content-Transfer-Encoding: base64\r\n", boundary,
                      ctype && ctype[0] ? ctype : "application/octet-stream", fname,
                      cid && cid[0] ? "inline" : "attachment", fname);
        if (cid && cid[0])
            strbuf_printf(out, "Content-ID: <%s>\r\n", cid);
        strbuf_append(out, "\r\n", 2);
        struct strbuf raw;
        strbuf_init(&raw, CAPTURE_DECODE_MAX);
        struct mime_b64 st;
        mime_b64_init(&st);
        mime_b64_decode(&st, content, strlen(content), &raw);
        append_b64_lines(out, (const unsigned char *)(raw.data ? raw.data : ""), raw.len);
        strbuf_free(&raw);
    }
    strbuf_printf(out, "--%s--\r\n", boundary);
    return 0;
}

static void capture_indexed(const char *id, const char *file, const char *data, size_t len,
                            uint64_t size, uint64_t accepted_size);

/* POST /api/v1/send: builds the message and stores it as if received. */
static void h_send(struct http_exchange *x)
{
    bool bad;
    json_t *body = parse_body(x, &bad);
    if (bad)
        return;
    if (body == NULL) {
        http_reply_text(x, 400, "expected a JSON body");
        return;
    }
    struct strbuf msg;
    strbuf_init(&msg, HTTP_BODY_MAX_DEFAULT * 2);
    const char *why = "";
    if (send_build(body, &msg, &why) < 0) {
        json_decref(body);
        strbuf_free(&msg);
        http_reply_text(x, 400, "%s", why);
        return;
    }
    json_decref(body);
    struct store_imap_mbox mb;
    uint32_t uid = 0, uidvalidity = 0;
    if (store_imap_mailbox_get(cs.store, cs.account_id, "INBOX", &mb) != 1 ||
        store_imap_append(cs.store, cs.account_id, mb.id, msg.data, msg.len, 0, "", 0, &uid,
                          &uidvalidity) < 0) {
        strbuf_free(&msg);
        http_reply_text(x, 500, "store error: %s", store_error_text());
        return;
    }
    struct store_msg_list list;
    char id[CAPTURE_ID_MAX] = "";
    if (store_msg_list_load(cs.store, cs.account_id, "INBOX", &list) >= 0) {
        for (size_t i = 0; i < list.n; i++)
            if (list.msgs[i].uid == uid) {
                snprintf(id, sizeof(id), "%s", file_id(list.msgs[i].file));
                capture_indexed(id, list.msgs[i].file, msg.data, msg.len, list.msgs[i].size,
                                msg.len);
            }
        store_msg_list_free(&list);
    }
    strbuf_free(&msg);
    http_reply_json(x, 200, json_pack("{s:s}", "ID", id));
}

/* ---- info ---- */

static void h_info(struct http_exchange *x)
{
    struct store_msg_list list;
    if (list_load(x, &list) < 0)
        return;
    long unread = 0;
    uint64_t bytes = 0;
    for (size_t i = 0; i < list.n; i++) {
        unread += !(list.msgs[i].flags & STORE_FLAG_SEEN);
        bytes += list.msgs[i].size;
    }
    json_t *o = json_pack(
        "{s:s,s:s,s:s,s:I,s:I,s:I,s:{},s:{s:I,s:I,s:I,s:I,s:I,s:I,s:I}}", "Version",
        cs.version ? cs.version : "", "LatestVersion", "", "Database", "index.db", "DatabaseSize",
        (json_int_t)bytes, "Messages", (json_int_t)list.n, "Unread", (json_int_t)unread, "Tags",
        "RuntimeStats", "Uptime", (json_int_t)(time(NULL) - started_at), "Memory", (json_int_t)0,
        "MessagesDeleted", (json_int_t)atomic_load(&stat_deleted), "SMTPAccepted",
        (json_int_t)atomic_load(&stat_accepted), "SMTPAcceptedSize",
        (json_int_t)atomic_load(&stat_accepted_size), "SMTPRejected", (json_int_t)0, "SMTPIgnored",
        (json_int_t)0);
    store_msg_list_free(&list);
    http_reply_json(x, 200, o);
}

static void h_webui(struct http_exchange *x)
{
    json_t *o = json_pack("{s:s,s:{s:b,s:s,s:s,s:s,s:s,s:s,s:b},s:b,s:b,s:b,s:b,s:s,s:I}",
                          "Label", "postel capture", "MessageRelay", "Enabled", cs.relay.addr[0] != '\0',
                          "SMTPServer", cs.relay.addr, "ReturnPath", "", "AllowedRecipients", "",
                          "BlockedRecipients", "", "OverrideFrom", "", "PreserveMessageIDs", 1,
                          "SpamAssassin", 1, "ChaosEnabled", 0, "DuplicatesIgnored", 0,
                          "HideDeleteAllButton", 0, "SMTPServer", cs.smtp_addr, "MaxMessages",
                          (json_int_t)cs.max_messages);
    http_reply_json(x, 200, o);
}

static void h_events(struct http_exchange *x)
{
    http_sse_start(x);
}

static void h_ok(struct http_exchange *x)
{
    http_reply(x, 200, "text/plain; charset=utf-8", "ok", 2);
}

/* ---- the message views (for the UI's sandboxed iframe) ---- */

/* CSP of a message's HTML: no script ever; remote content only when the
 * user allowed it (?remote=1); inline images come as data: URIs. */
static void view_csp(struct http_exchange *x, bool remote)
{
    if (remote)
        http_header(x, "Content-Security-Policy",
                    "default-src 'none'; script-src 'none'; object-src 'none'; form-action 'none'; "
                    "img-src data: http: https:; style-src 'unsafe-inline' data: http: https:; "
                    "font-src data: http: https:; media-src data: http: https:; "
                    "frame-ancestors 'self'; sandbox allow-popups allow-popups-to-escape-sandbox");
    else
        http_header(x, "Content-Security-Policy",
                    "default-src 'none'; script-src 'none'; object-src 'none'; form-action 'none'; "
                    "img-src data:; style-src 'unsafe-inline' data:; font-src data:; "
                    "frame-ancestors 'self'; sandbox allow-popups allow-popups-to-escape-sandbox");
}

/* GET /view/{ID}.html and /view/{ID}.txt */
static void h_view(struct http_exchange *x)
{
    char id[CAPTURE_ID_MAX];
    snprintf(id, sizeof(id), "%s", x->params[0]);
    char *dot = strrchr(id, '.');
    if (dot == NULL || (strcmp(dot, ".html") != 0 && strcmp(dot, ".txt") != 0)) {
        http_reply_text(x, 404, "not found");
        return;
    }
    bool html = strcmp(dot, ".html") == 0;
    *dot = '\0';
    x->params[0] = id;
    struct loaded l;
    if (load_message(x, &l) < 0)
        return;
    struct strbuf out;
    strbuf_init(&out, CAPTURE_DECODE_MAX * 2);
    char rv[8];
    bool remote = http_query_get(x->req->query, "remote", rv, sizeof(rv)) && strcmp(rv, "1") == 0;
    view_csp(x, remote);
    http_header(x, "X-Frame-Options", "SAMEORIGIN");
    if (html) {
        strbuf_append(&out, "<base target=\"_blank\">", 22);
        if (capture_html_for_view(l.msg, &out) < 0)
            strbuf_append(&out, "<p>(no HTML part)</p>", 21);
        http_reply(x, 200, "text/html; charset=utf-8", out.data ? out.data : "", out.len);
    } else {
        const struct mime_part *p = capture_body_part(l.msg, "plain");
        if (p)
            mime_part_decode(l.msg, p, true, &out);
        http_reply(x, 200, "text/plain; charset=utf-8", out.data ? out.data : "", out.len);
    }
    strbuf_free(&out);
    loaded_free(&l);
}

/* GET /api/v1/tags: tags are not implemented, so there are none. */
static void h_tags(struct http_exchange *x)
{
    http_reply_json(x, 200, json_array());
}

/* ---- static UI ---- */

#define UI_CSP "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " \
               "connect-src 'self'; frame-src 'self'; object-src 'none'; base-uri 'none'; "    \
               "form-action 'none'; frame-ancestors 'none'"

static void h_static(struct http_exchange *x)
{
    const char *path = x->req->path;
    if (strcmp(path, "/") == 0 || strncmp(path, "/view/", 6) == 0 || strcmp(path, "/search") == 0)
        path = "/index.html";
    const struct web_asset *a = web_asset_find(path);
    if (a == NULL) {
        http_reply_text(x, 404, "not found");
        return;
    }
    http_header(x, "Content-Security-Policy", UI_CSP);
    http_header(x, "Cache-Control", "no-cache");
    http_reply(x, 200, a->content_type, a->data, a->len);
}

/* ---- commit hook: a message arrived over SMTP ---- */

/* Messages in INBOX when prune() last looked, plus those added since; -1
 * before the first look.  Deletions only make it high, which costs one
 * needless look, so a new message loads the list only near --max. */
static atomic_long prune_known = -1;

static void prune(void)
{
    if (cs.max_messages <= 0)
        return;
    long known = atomic_fetch_add(&prune_known, 1);
    if (known >= 0 && known + 1 <= (long)cs.max_messages)
        return;
    struct store_msg_list list;
    if (store_msg_list_load(cs.store, cs.account_id, "INBOX", &list) < 0)
        return;
    if (list.n > (size_t)cs.max_messages) {
        size_t n = list.n - (size_t)cs.max_messages;
        size_t *idx = calloc(n, sizeof(*idx));
        for (size_t i = 0; i < n && idx; i++)
            idx[i] = i; /* ascending UID: the oldest first */
        if (idx && delete_indexes(&list, idx, n) > 0)
            log_info(NULL, "event=capture_pruned messages=%zu max=%d", n, cs.max_messages);
        free(idx);
    }
    atomic_store(&prune_known, (long)(list.n < (size_t)cs.max_messages ? list.n
                                                                         : (size_t)cs.max_messages));
    store_msg_list_free(&list);
}

/* Caches a new message's meta and tells the UIs. */
static void capture_indexed(const char *id, const char *file, const char *data, size_t len,
                            uint64_t size, uint64_t accepted_size)
{
    struct capture_meta *m = capture_meta_build(id, file, data, len, (int64_t)time(NULL), size);
    if (m == NULL)
        return;
    pthread_mutex_lock(&cache_lock);
    m = cache_insert(m);
    json_t *s = m ? json_deep_copy(m->summary) : NULL;
    pthread_mutex_unlock(&cache_lock);
    atomic_fetch_add(&stat_accepted, 1);
    atomic_fetch_add(&stat_accepted_size, accepted_size);
    prune();
    if (s)
        broadcast_json("new", s);
}

void capture_on_commit(void *arg, const char *queue_id, uint64_t size)
{
    if (http_sse_clients() == 0) {
        /* nobody to tell now: the meta is built when the API first lists
         * the message (meta_get), not on the path of every 250 */
        atomic_fetch_add(&stat_accepted, 1);
        atomic_fetch_add(&stat_accepted_size, size);
        prune();
        return;
    }
    char file[160];
    snprintf(file, sizeof(file), "mail/%lld/%s", (long long)cs.account_id, queue_id);
    char *data;
    size_t len;
    if (capture_file_read(cs.store, file, &data, &len) < 0) {
        log_warn(NULL, "event=capture_index_failed id=%s", queue_id);
        return;
    }
    capture_indexed(queue_id, file, data, len, len, size);
    free(data);
}

/* ---- routes ---- */

void capture_api_register(const struct capture_settings *settings)
{
    cs = *settings;
    started_at = time(NULL);
    http_route("GET", "/api/v1/messages", h_messages_get, NULL);
    http_route("DELETE", "/api/v1/messages", h_messages_delete, NULL);
    http_route("PUT", "/api/v1/messages", h_messages_put, NULL);
    http_route("GET", "/api/v1/search", h_search_get, NULL);
    http_route("DELETE", "/api/v1/search", h_search_delete, NULL);
    http_route("GET", "/api/v1/message/{}", h_message_get, NULL);
    http_route("GET", "/api/v1/message/{}/headers", h_message_headers, NULL);
    http_route("GET", "/api/v1/message/{}/raw", h_message_raw, NULL);
    http_route("GET", "/api/v1/message/{}/part/{}", h_message_part, NULL);
    http_route("GET", "/api/v1/message/{}/part/{}/thumb", h_message_part, NULL);
    http_route("GET", "/api/v1/message/{}/html-check", h_html_check, NULL);
    http_route("GET", "/api/v1/message/{}/link-check", h_link_check, NULL);
    http_route("GET", "/api/v1/message/{}/sa-check", h_sa_check, NULL);
    http_route("GET", "/api/v1/message/{}/auth-check", h_auth_check, NULL);
    http_route("GET", "/api/v1/message/{}/checks", h_checks, NULL);
    http_route("POST", "/api/v1/message/{}/release", h_release, NULL);
    http_route("POST", "/api/v1/send", h_send, NULL);
    http_route("GET", "/api/v1/tags", h_tags, NULL);
    http_route("GET", "/api/v1/info", h_info, NULL);
    http_route("GET", "/api/v1/webui", h_webui, NULL);
    http_route("GET", "/api/v1/events", h_events, NULL);
    http_route("GET", "/api/events", h_events, NULL);
    http_route("GET", "/livez", h_ok, NULL);
    http_route("GET", "/readyz", h_ok, NULL);
    http_route("GET", "/view/{}", h_view, NULL);
    http_route("GET", "*", h_static, NULL);
}
