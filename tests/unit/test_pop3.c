/*
 * POP3 tests: the command parser (a table of lines and expected results),
 * the RETR/TOP encoder (a table of messages and expected output, each fed
 * whole and byte by byte), UIDL values, and the store functions POP3
 * relies on (listing, atomic expunge with the expunged record, maildrop
 * lock, change watches) on a temporary store.
 */
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/util.h"
#include "pop3/pop3_parse.h"
#include "store/store.h"
#include "store/store_messages.h"
#include "unit.h"

/* ---- command parser ---- */

struct parse_case {
    const char *line;
    int rc;
    enum pop3_verb verb;
    bool has_msg;
    uint32_t msg, lines;
    const char *arg, *arg2;       /* NULL: not checked (arg2: "-" means NULL) */
    const char *error;            /* expected error text when rc < 0 (NULL: any) */
};

static const struct parse_case parse_cases[] = {
    { "USER alice@example.test", 0, POP3_VERB_USER, false, 0, 0, "alice@example.test", "-", NULL },
    { "user bob", 0, POP3_VERB_USER, false, 0, 0, "bob", "-", NULL },
    { "USER", -1, POP3_VERB_USER, false, 0, 0, NULL, NULL, "syntax: USER name" },
    { "USER a b", -1, POP3_VERB_USER, false, 0, 0, NULL, NULL, "syntax: USER name" },
    { "PASS secret with spaces ", 0, POP3_VERB_PASS, false, 0, 0, "secret with spaces ", "-", NULL },
    { "PASS  lead", 0, POP3_VERB_PASS, false, 0, 0, " lead", "-", NULL },
    { "PASS", -1, POP3_VERB_PASS, false, 0, 0, NULL, NULL, "syntax: PASS password" },
    { "PASS ", -1, POP3_VERB_PASS, false, 0, 0, NULL, NULL, "syntax: PASS password" },
    { "STAT", 0, POP3_VERB_STAT, false, 0, 0, "", "-", NULL },
    { "stat", 0, POP3_VERB_STAT, false, 0, 0, "", "-", NULL },
    { "STAT 1", -1, POP3_VERB_STAT, false, 0, 0, NULL, NULL, "syntax: STAT (no arguments)" },
    { "STAT ", 0, POP3_VERB_STAT, false, 0, 0, NULL, NULL, NULL },
    { "LIST", 0, POP3_VERB_LIST, false, 0, 0, NULL, NULL, NULL },
    { "LIST 3", 0, POP3_VERB_LIST, true, 3, 0, NULL, NULL, NULL },
    { "LIST 0", 0, POP3_VERB_LIST, true, 0, 0, NULL, NULL, NULL },
    { "LIST 1 2", -1, POP3_VERB_LIST, false, 0, 0, NULL, NULL, "syntax: LIST [msg]" },
    { "LIST x", -1, POP3_VERB_LIST, false, 0, 0, NULL, NULL, "invalid message number" },
    { "LIST -1", -1, POP3_VERB_LIST, false, 0, 0, NULL, NULL, "invalid message number" },
    { "LIST +1", -1, POP3_VERB_LIST, false, 0, 0, NULL, NULL, "invalid message number" },
    { "LIST 2147483647", 0, POP3_VERB_LIST, true, 2147483647u, 0, NULL, NULL, NULL },
    { "LIST 2147483648", -1, POP3_VERB_LIST, false, 0, 0, NULL, NULL, "invalid message number" },
    { "LIST 99999999999999999999", -1, POP3_VERB_LIST, false, 0, 0, NULL, NULL,
      "invalid message number" },
    { "RETR 1", 0, POP3_VERB_RETR, true, 1, 0, NULL, NULL, NULL },
    { "RETR 007", 0, POP3_VERB_RETR, true, 7, 0, NULL, NULL, NULL },
    { "RETR", -1, POP3_VERB_RETR, false, 0, 0, NULL, NULL, "syntax: RETR msg" },
    { "RETR 1x", -1, POP3_VERB_RETR, false, 0, 0, NULL, NULL, "invalid message number" },
    { "DELE 12", 0, POP3_VERB_DELE, true, 12, 0, NULL, NULL, NULL },
    { "DELE", -1, POP3_VERB_DELE, false, 0, 0, NULL, NULL, "syntax: DELE msg" },
    { "TOP 1 10", 0, POP3_VERB_TOP, true, 1, 10, NULL, NULL, NULL },
    { "TOP 1 0", 0, POP3_VERB_TOP, true, 1, 0, NULL, NULL, NULL },
    { "TOP 1", -1, POP3_VERB_TOP, false, 0, 0, NULL, NULL, "syntax: TOP msg lines" },
    { "TOP 1 x", -1, POP3_VERB_TOP, false, 0, 0, NULL, NULL, "invalid line count" },
    { "TOP 1 2 3", -1, POP3_VERB_TOP, false, 0, 0, NULL, NULL, "syntax: TOP msg lines" },
    { "UIDL", 0, POP3_VERB_UIDL, false, 0, 0, NULL, NULL, NULL },
    { "UIDL 5", 0, POP3_VERB_UIDL, true, 5, 0, NULL, NULL, NULL },
    { "NOOP", 0, POP3_VERB_NOOP, false, 0, 0, NULL, NULL, NULL },
    { "RSET", 0, POP3_VERB_RSET, false, 0, 0, NULL, NULL, NULL },
    { "QUIT", 0, POP3_VERB_QUIT, false, 0, 0, NULL, NULL, NULL },
    { "QUIT now", -1, POP3_VERB_QUIT, false, 0, 0, NULL, NULL, "syntax: QUIT (no arguments)" },
    { "CAPA", 0, POP3_VERB_CAPA, false, 0, 0, NULL, NULL, NULL },
    { "STLS", 0, POP3_VERB_STLS, false, 0, 0, NULL, NULL, NULL },
    { "AUTH", 0, POP3_VERB_AUTH, false, 0, 0, "", "-", NULL },
    { "AUTH PLAIN", 0, POP3_VERB_AUTH, false, 0, 0, "PLAIN", "-", NULL },
    { "AUTH PLAIN AGEAYg==", 0, POP3_VERB_AUTH, false, 0, 0, "PLAIN", "AGEAYg==", NULL },
    { "AUTH PLAIN =", 0, POP3_VERB_AUTH, false, 0, 0, "PLAIN", "=", NULL },
    { "AUTH PLAIN a b", -1, POP3_VERB_AUTH, false, 0, 0, NULL, NULL, NULL },
    { "AUTH PL@IN", -1, POP3_VERB_AUTH, false, 0, 0, NULL, NULL, NULL },
    { "APOP mrose c4c9334bac560ecc979e58001b3e22fb", 0, POP3_VERB_APOP, false, 0, 0, NULL, NULL,
      NULL },
    { "", -1, POP3_VERB_UNKNOWN, false, 0, 0, NULL, NULL, "unknown command" },
    { " STAT", -1, POP3_VERB_UNKNOWN, false, 0, 0, NULL, NULL, "unknown command" },
    { "HELO x", -1, POP3_VERB_UNKNOWN, false, 0, 0, NULL, NULL, "unknown command" },
    { "RETRIEVE 1", -1, POP3_VERB_UNKNOWN, false, 0, 0, NULL, NULL, "unknown command" },
    { "LAST", -1, POP3_VERB_UNKNOWN, false, 0, 0, NULL, NULL, "unknown command" },
    { "ST\x01T", -1, POP3_VERB_UNKNOWN, false, 0, 0, NULL, NULL, "bad character in command" },
    { "PASS a\x7f\x80\xff", 0, POP3_VERB_PASS, false, 0, 0, "a\x7f\x80\xff", "-", NULL },
    { "PASS tab\there", 0, POP3_VERB_PASS, false, 0, 0, "tab\there", "-", NULL },
};

static void test_parse(void)
{
    for (size_t i = 0; i < sizeof(parse_cases) / sizeof(parse_cases[0]); i++) {
        const struct parse_case *c = &parse_cases[i];
        char line[256];
        size_t len = strlen(c->line);
        memcpy(line, c->line, len + 1);
        struct pop3_command cmd;
        const char *err = NULL;
        int rc = pop3_command_parse(line, len, &cmd, &err);
        if (rc != c->rc)
            fprintf(stderr, "case \"%s\": rc %d err %s\n", c->line, rc, err ? err : "-");
        CHECK_EQ_INT(rc, c->rc);
        if (rc < 0) {
            CHECK(err != NULL);
            if (c->error)
                CHECK_EQ_STR(err, c->error);
            continue;
        }
        CHECK_EQ_INT(cmd.verb, c->verb);
        CHECK_EQ_INT(cmd.has_msg, c->has_msg);
        CHECK_EQ_INT(cmd.msg, c->msg);
        CHECK_EQ_INT(cmd.lines, c->lines);
        if (c->arg)
            CHECK_EQ_STR(cmd.arg, c->arg);
        if (c->arg2 && strcmp(c->arg2, "-") == 0)
            CHECK(cmd.arg2 == NULL);
        else if (c->arg2)
            CHECK_EQ_STR(cmd.arg2, c->arg2);
    }
    /* a NUL inside the line */
    char nul[] = "STAT\0x";
    struct pop3_command cmd;
    const char *err = NULL;
    CHECK_EQ_INT(pop3_command_parse(nul, 6, &cmd, &err), -1);
    CHECK_EQ_STR(pop3_verb_name(POP3_VERB_TOP), "TOP");
    CHECK_EQ_STR(pop3_verb_name(POP3_VERB_UNKNOWN), "?");
}

/* ---- RETR/TOP encoder ---- */

struct outbuf {
    char data[4096];
    size_t len;
    int calls;
};

static void out_fn(void *arg, const char *data, size_t len)
{
    struct outbuf *o = arg;
    if (o->len + len <= sizeof(o->data)) {
        memcpy(o->data + o->len, data, len);
        o->len += len;
    }
    o->calls++;
}

struct stuff_case {
    const char *in;
    bool top;
    uint32_t lines;
    const char *out;
};

static const struct stuff_case stuff_cases[] = {
    { "", false, 0, ".\r\n" },
    { "a\r\nb\r\n", false, 0, "a\r\nb\r\n.\r\n" },
    { ".\r\n", false, 0, "..\r\n.\r\n" },
    { ".a\r\n..b\r\nc.\r\n", false, 0, "..a\r\n...b\r\nc.\r\n.\r\n" },
    { "no end", false, 0, "no end\r\n.\r\n" },
    { "bare\nlf\n", false, 0, "bare\r\nlf\r\n.\r\n" },
    { "mix\r\n\n.x\n", false, 0, "mix\r\n\r\n..x\r\n.\r\n" },
    { "cr at end\r", false, 0, "cr at end\r\n.\r\n" },
    { "bare\rcr\r\n", false, 0, "bare\rcr\r\n.\r\n" },
    /* TOP: headers, the blank line, n body lines */
    { "H: 1\r\nH: 2\r\n\r\nb1\r\nb2\r\nb3\r\n", true, 0, "H: 1\r\nH: 2\r\n\r\n.\r\n" },
    { "H: 1\r\nH: 2\r\n\r\nb1\r\nb2\r\nb3\r\n", true, 2, "H: 1\r\nH: 2\r\n\r\nb1\r\nb2\r\n.\r\n" },
    { "H: 1\r\n\r\nb1\r\n", true, 10, "H: 1\r\n\r\nb1\r\n.\r\n" },
    { "H: 1\r\n\r\n.b1\r\nb2\r\n", true, 1, "H: 1\r\n\r\n..b1\r\n.\r\n" },
    { "H: 1\r\n\tfolded\r\n\r\nbody", true, 5, "H: 1\r\n\tfolded\r\n\r\nbody\r\n.\r\n" },
    { "only headers\r\nno body\r\n", true, 3, "only headers\r\nno body\r\n.\r\n" },
    { "H: 1\n\nb1\nb2\n", true, 1, "H: 1\r\n\r\nb1\r\n.\r\n" },
    { "H: 1\r\n\r\n\r\n\r\nx\r\n", true, 2, "H: 1\r\n\r\n\r\n\r\n.\r\n" },
};

static void run_stuff(const struct stuff_case *c, size_t step, struct outbuf *o)
{
    struct pop3_stuff s;
    pop3_stuff_init(&s, c->top, c->lines);
    memset(o, 0, sizeof(*o));
    size_t len = strlen(c->in);
    for (size_t off = 0; off < len && !s.done;) {
        size_t n = step == 0 || len - off < step ? len - off : step;
        size_t used = pop3_stuff_feed(&s, c->in + off, n, out_fn, o);
        CHECK(used <= n);
        if (used < n)
            CHECK(s.done);
        off += used;
    }
    pop3_stuff_end(&s, out_fn, o);
}

static void test_stuff(void)
{
    for (size_t i = 0; i < sizeof(stuff_cases) / sizeof(stuff_cases[0]); i++) {
        const struct stuff_case *c = &stuff_cases[i];
        static const size_t steps[] = { 0, 1, 2, 3, 7 };
        for (size_t k = 0; k < sizeof(steps) / sizeof(steps[0]); k++) {
            struct outbuf o;
            run_stuff(c, steps[k], &o);
            o.data[o.len] = '\0';
            if (strcmp(o.data, c->out) != 0)
                fprintf(stderr, "stuff case %zu step %zu\n", i, steps[k]);
            CHECK_EQ_STR(o.data, c->out);
        }
    }
    /* the common case is passed through in one piece */
    struct outbuf o;
    memset(&o, 0, sizeof(o));
    struct pop3_stuff s;
    pop3_stuff_init(&s, false, 0);
    const char *msg = "Subject: x\r\n\r\nline one\r\nline two\r\n";
    pop3_stuff_feed(&s, msg, strlen(msg), out_fn, &o);
    CHECK_EQ_INT(o.calls, 1);
    CHECK_EQ_INT(o.len, strlen(msg));
}

static void test_uidl(void)
{
    char buf[24];
    pop3_uidl(buf, sizeof(buf), 0x6b060008u, 1);
    CHECK_EQ_STR(buf, "6b06000800000001");
    pop3_uidl(buf, sizeof(buf), 0xffffffffu, 0xffffffffu);
    CHECK_EQ_STR(buf, "ffffffffffffffff");
    CHECK_EQ_INT(strlen(buf), 16);
}

/* ---- store: listing, expunge, lock, watches ---- */

static char dir[256];

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb; (void)flag; (void)ftw;
    return remove(path);
}

struct waiter {
    pthread_mutex_t m;
    pthread_cond_t c;
    bool done;
    int result;
};

static void waiter_done(void *arg, int result, const char *queue_id, const char *error)
{
    struct waiter *w = arg;
    pthread_mutex_lock(&w->m);
    w->done = true;
    w->result = result;
    pthread_cond_signal(&w->c);
    pthread_mutex_unlock(&w->m);
}

/* Delivers one message to an account's INBOX; 0 or -1. */
static int deliver(struct store *st, int64_t account, const char *address, const char *body)
{
    struct store_rcpt_target t = { .kind = STORE_RCPT_LOCAL, .account_id = account };
    str_copy(t.address, address, sizeof(t.address));
    struct store_tx_rcpt r = { .address = address, .target = &t, .mailbox = "INBOX" };
    struct store_envelope env = { .sender = "s@example.org", .rcpts = &r, .n_rcpts = 1 };
    const char *err = NULL;
    struct store_tx *tx = store_tx_begin(st, &env, &err);
    if (tx == NULL)
        return -1;
    store_tx_write(tx, body, strlen(body));
    struct waiter w = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, 0 };
    store_tx_commit(tx, waiter_done, &w);
    pthread_mutex_lock(&w.m);
    while (!w.done)
        pthread_cond_wait(&w.c, &w.m);
    pthread_mutex_unlock(&w.m);
    return w.result;
}

struct watch_log {
    int calls;
    struct store_change last;
};

static void watch_fn(void *arg, const struct store_change *change)
{
    struct watch_log *l = arg;
    l->calls++;
    l->last = *change;
}

static void collect_uid(uint32_t uid, uint64_t modseq, void *arg)
{
    uint32_t *sum = arg;
    *sum += uid;
    (void)modseq;
}

static bool rel_exists(const char *rel)
{
    char p[512];
    snprintf(p, sizeof(p), "%s/%s", dir, rel);
    return access(p, F_OK) == 0;
}

static void test_store(void)
{
    snprintf(dir, sizeof(dir), "/tmp/postel-test-pop3-%d", (int)getpid());
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    const char *err = NULL;
    struct store *st = store_open(dir, &err);
    CHECK(st != NULL);
    if (st == NULL)
        return;
    CHECK_EQ_INT(store_user_add(st, "pop@example.test", "pw", &err), 0);
    int64_t id = store_user_lookup(st, "pop@example.test");
    CHECK(id > 0);

    struct store_msg_list list;
    CHECK_EQ_INT(store_msg_list_load(st, id, "inbox", &list), 0);
    CHECK_EQ_INT(list.n, 0);
    CHECK(list.uidvalidity > 0);
    store_msg_list_free(&list);
    CHECK_EQ_INT(store_msg_list_load(st, id, "NoSuchBox", &list), -1);
    CHECK_EQ_INT(store_error_kind(), STORE_ERR_NOTFOUND);

    const char *body = "Subject: hi\r\n\r\nhello\r\n";
    for (int i = 0; i < 4; i++)
        CHECK_EQ_INT(deliver(st, id, "pop@example.test", body), 0);
    CHECK_EQ_INT(store_msg_list_load(st, id, "INBOX", &list), 4);
    for (size_t i = 0; i < list.n; i++) {
        CHECK_EQ_INT(list.msgs[i].uid, i + 1);
        int fd = store_msg_open(st, list.msgs[i].file);
        CHECK(fd >= 0);
        struct stat sb;
        if (fd >= 0 && fstat(fd, &sb) == 0)
            CHECK_EQ_INT((uint64_t)sb.st_size, list.msgs[i].size);
        if (fd >= 0)
            close(fd);
    }
    CHECK_EQ_INT(store_msg_open(st, "../etc/passwd"), -1);
    CHECK_EQ_INT(store_msg_open(st, "index.db"), -1);
    uint64_t modseq_before = list.highestmodseq;
    char file1[128], file3[128];
    str_copy(file1, list.msgs[0].file, sizeof(file1));
    str_copy(file3, list.msgs[2].file, sizeof(file3));

    /* a watch on the mailbox, one on another mailbox, one on the account */
    struct watch_log on_box = { 0 }, on_other = { 0 }, on_account = { 0 };
    struct store_watch *w1 = store_watch_add(st, id, list.mailbox_id, watch_fn, &on_box);
    struct store_watch *w2 = store_watch_add(st, id, list.mailbox_id + 1000, watch_fn, &on_other);
    struct store_watch *w3 = store_watch_add(st, id, 0, watch_fn, &on_account);
    CHECK(w1 && w2 && w3);

    uint32_t uids[] = { 1, 3, 99 };
    uint64_t modseq = 0;
    CHECK_EQ_INT(store_msg_expunge(st, id, "INBOX", uids, 3, &modseq, &err), 2);
    CHECK(modseq > modseq_before);
    CHECK(!rel_exists(file1));
    CHECK(!rel_exists(file3));
    CHECK_EQ_INT(on_box.calls, 1);
    CHECK_EQ_INT(on_other.calls, 0);
    CHECK_EQ_INT(on_account.calls, 1);
    CHECK_EQ_INT(on_box.last.what, STORE_CHANGE_EXPUNGE);
    CHECK_EQ_INT(on_box.last.modseq, modseq);
    CHECK_EQ_INT(on_box.last.mailbox_id, list.mailbox_id);
    store_watch_remove(w1);
    store_watch_remove(w2);
    store_watch_remove(w3);
    store_watch_remove(NULL);

    /* the removed file of a listed message cannot be opened any more */
    CHECK_EQ_INT(store_msg_open(st, file1), -1);
    CHECK_EQ_INT(store_error_kind(), STORE_ERR_NOTFOUND);

    struct store_msg_list after;
    CHECK_EQ_INT(store_msg_list_load(st, id, "INBOX", &after), 2);
    CHECK_EQ_INT(after.msgs[0].uid, 2);
    CHECK_EQ_INT(after.msgs[1].uid, 4);
    CHECK_EQ_INT(after.highestmodseq, modseq);
    CHECK_EQ_INT(after.uidvalidity, list.uidvalidity);
    uint32_t sum = 0;
    CHECK_EQ_INT(store_msg_expunged_since(st, list.mailbox_id, modseq_before, collect_uid, &sum), 2);
    CHECK_EQ_INT(sum, 4);
    sum = 0;
    CHECK_EQ_INT(store_msg_expunged_since(st, list.mailbox_id, modseq, collect_uid, &sum), 0);
    store_msg_list_free(&after);
    store_msg_list_free(&list);

    /* again: nothing left to remove, nothing notified, modseq kept */
    on_box.calls = 0;
    modseq_before = modseq;
    CHECK_EQ_INT(store_msg_expunge(st, id, "INBOX", uids, 2, &modseq, &err), 0);
    CHECK_EQ_INT(modseq, modseq_before);
    CHECK_EQ_INT(store_msg_expunge(st, id, "INBOX", uids, 0, NULL, &err), 0);
    CHECK_EQ_INT(store_msg_expunge(st, id, "Nope", uids, 1, NULL, &err), -1);
    CHECK_EQ_INT(store_error_kind(), STORE_ERR_NOTFOUND);

    /* maildrop lock */
    CHECK(!store_maildrop_locked(st, id));
    CHECK_EQ_INT(store_maildrop_lock(st, id), 0);
    CHECK(store_maildrop_locked(st, id));
    CHECK_EQ_INT(store_maildrop_lock(st, id), -1);
    CHECK_EQ_INT(store_maildrop_lock(st, id + 1), 0);
    store_maildrop_unlock(st, id);
    CHECK(!store_maildrop_locked(st, id));
    CHECK_EQ_INT(store_maildrop_lock(st, id), 0);
    store_maildrop_unlock(st, id);
    store_maildrop_unlock(st, id + 1);
    store_maildrop_unlock(st, id + 1); /* not held: no-op */

    /* reopen: UIDs and UIDVALIDITY (so UIDL values) survive */
    store_close(st);
    st = store_open(dir, &err);
    CHECK(st != NULL);
    if (st != NULL) {
        CHECK_EQ_INT(store_msg_list_load(st, id, "INBOX", &list), 2);
        CHECK_EQ_INT(list.msgs[1].uid, 4);
        CHECK_EQ_INT(list.highestmodseq, modseq);
        store_msg_list_free(&list);
        store_close(st);
    }
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

int main(void)
{
    RUN(test_parse);
    RUN(test_stuff);
    RUN(test_uidl);
    RUN(test_store);
    return unit_report("pop3");
}
