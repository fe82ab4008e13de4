/*
 * Outbound queue: retry timing, reply classification, ESMTP parameters,
 * SMTPUTF8 needs, destinations, RFC 3464 reports, the store's delivery
 * calls (due, load, update) and local injection.
 */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "queue/queue_int.h"
#include "unit.h"

/* ---- timing ---- */

static void test_backoff(void)
{
    unsetenv("POSTEL_QUEUE_BACKOFF");
    unsetenv("POSTEL_QUEUE_DELAY_WARNING");
    struct queue_timing t;
    queue_timing_init(&t);
    CHECK_EQ_INT(t.backoff_min, 300);
    CHECK_EQ_INT(t.delay_warning, 4 * 3600);
    static const int64_t want[] = { 300, 600, 1200, 2400, 4800, 9600, 14400, 14400 };
    for (int i = 0; i < 8; i++)
        CHECK_EQ_INT(queue_backoff(&t, i + 1), want[i]);
    CHECK_EQ_INT(queue_backoff(&t, 1000), 14400);
    setenv("POSTEL_QUEUE_BACKOFF", "2", 1);
    setenv("POSTEL_QUEUE_DELAY_WARNING", "1m", 1);
    queue_timing_init(&t);
    CHECK_EQ_INT(t.backoff_min, 2);
    CHECK_EQ_INT(t.backoff_max, 96);
    CHECK_EQ_INT(t.delay_warning, 60);
    CHECK_EQ_INT(queue_backoff(&t, 3), 8);
    setenv("POSTEL_QUEUE_BACKOFF", "garbage", 1);
    queue_timing_init(&t);
    CHECK_EQ_INT(t.backoff_min, 300);
    unsetenv("POSTEL_QUEUE_BACKOFF");
    unsetenv("POSTEL_QUEUE_DELAY_WARNING");
}

/* ---- results ---- */

static struct smtp_client_reply reply_of(const char *text)
{
    struct smtp_reply_parser p;
    smtp_reply_parser_init(&p);
    size_t used;
    smtp_reply_parse(&p, text, strlen(text), &used);
    return p.reply;
}

static void test_results(void)
{
    struct queue_result r;
    struct smtp_client_reply rep = reply_of("550 5.1.1 <x@y>: no such user\r\n");
    queue_result_from_reply(&r, &rep, "mx.y.test");
    CHECK_EQ_INT(r.outcome, Q_FAILED);
    CHECK_EQ_STR(r.status, "5.1.1");
    CHECK_EQ_STR(r.remote_mta, "mx.y.test");
    CHECK_EQ_STR(r.diag, "smtp; 550 5.1.1 <x@y>: no such user");

    rep = reply_of("451 try again\r\n");
    queue_result_from_reply(&r, &rep, "mx");
    CHECK_EQ_INT(r.outcome, Q_DEFERRED);
    CHECK_EQ_STR(r.status, "4.0.0");

    rep = reply_of("421-4.3.2 going\r\n421 4.3.2 down\r\n");
    queue_result_from_reply(&r, &rep, "mx");
    CHECK_EQ_INT(r.outcome, Q_DEFERRED);
    CHECK_EQ_STR(r.diag, "smtp; 421 4.3.2 going 4.3.2 down");

    rep = reply_of("250 2.0.0 Ok: queued\r\n");
    queue_result_from_reply(&r, &rep, "mx");
    CHECK_EQ_INT(r.outcome, Q_DELIVERED);
    CHECK_EQ_STR(r.status, "2.0.0");

    queue_result_local(&r, Q_FAILED, "5.1.10", NULL, "null MX for %s", "x.test");
    CHECK_EQ_STR(r.diag, "X-Postel; null MX for x.test");
    CHECK_EQ_STR(r.remote_mta, "");

    char note[512];
    rep = reply_of("452 4.2.2 mailbox full\r\n");
    queue_result_from_reply(&r, &rep, "mx.z.test");
    queue_result_encode(&r, note, sizeof(note));
    struct queue_result back;
    queue_result_decode(&back, note);
    CHECK_EQ_STR(back.status, "4.2.2");
    CHECK_EQ_STR(back.remote_mta, "mx.z.test");
    CHECK_EQ_STR(back.diag, "smtp; 452 4.2.2 mailbox full");
    queue_result_decode(&back, "");
    CHECK_EQ_STR(back.diag, "");
    queue_result_decode(&back, "free text");
    CHECK_EQ_STR(back.diag, "X-Postel; free text");
}

/* ---- parameters ---- */

static void test_params(void)
{
    struct store_queue_msg m;
    memset(&m, 0, sizeof(m));
    m.e.size = 1234;
    m.body_8bit = true;
    str_copy(m.ret, "HDRS", sizeof(m.ret));
    str_copy(m.envid, "id+1=x", sizeof(m.envid));
    struct smtp_ext ext = { .esmtp = true, .size = true, .eightbitmime = true, .smtputf8 = true,
                            .dsn = true };
    char buf[600];
    queue_mail_params(&m, &ext, true, buf, sizeof(buf));
    CHECK_EQ_STR(buf, " SIZE=1234 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=id+2B1+3Dx");
    struct smtp_ext plain = { .esmtp = true };
    queue_mail_params(&m, &plain, true, buf, sizeof(buf));
    CHECK_EQ_STR(buf, "");

    struct store_queue_rcpt r;
    memset(&r, 0, sizeof(r));
    r.notify = STORE_NOTIFY_SUCCESS | STORE_NOTIFY_DELAY | STORE_NOTIFY_DELAY_SENT;
    str_copy(r.orcpt, "rfc822;a+b=c@x.test", sizeof(r.orcpt));
    queue_rcpt_params(&r, &ext, buf, sizeof(buf));
    CHECK_EQ_STR(buf, " NOTIFY=SUCCESS,DELAY ORCPT=rfc822;a+2Bb+3Dc@x.test");
    r.notify = STORE_NOTIFY_NEVER;
    r.orcpt[0] = '\0';
    queue_rcpt_params(&r, &ext, buf, sizeof(buf));
    CHECK_EQ_STR(buf, " NOTIFY=NEVER");
    r.notify = 0;
    queue_rcpt_params(&r, &ext, buf, sizeof(buf));
    CHECK_EQ_STR(buf, "");
    r.notify = STORE_NOTIFY_FAILURE;
    queue_rcpt_params(&r, &plain, buf, sizeof(buf));
    CHECK_EQ_STR(buf, "");
}

static void test_smtputf8_needed(void)
{
    struct store_queue_msg m;
    struct store_queue_rcpt r[1];
    memset(&m, 0, sizeof(m));
    memset(r, 0, sizeof(r));
    m.rcpts = r;
    m.n_rcpts = 1;
    str_copy(m.e.sender, "a@x.test", sizeof(m.e.sender));
    str_copy(r[0].address, "b@y.test", sizeof(r[0].address));
    bool env;
    const char *ascii = "Subject: hi\r\n";
    const char *utf8 = "Subject: h\xc3\xa9\r\n";
    CHECK(!queue_needs_smtputf8(&m, utf8, strlen(utf8), &env)); /* not sent with SMTPUTF8 */
    m.smtputf8 = true;
    CHECK(!queue_needs_smtputf8(&m, ascii, strlen(ascii), &env));
    CHECK(queue_needs_smtputf8(&m, utf8, strlen(utf8), &env) && !env);
    str_copy(r[0].address, "j\xc3\xb6ran@y.test", sizeof(r[0].address));
    CHECK(queue_needs_smtputf8(&m, ascii, strlen(ascii), &env) && env);
}

static void test_domains(void)
{
    char d[300];
    CHECK_EQ_INT(queue_rcpt_domain("User@Example.COM", d, sizeof(d)), 0);
    CHECK_EQ_STR(d, "example.com");
    CHECK_EQ_INT(queue_rcpt_domain("x@[192.0.2.1]", d, sizeof(d)), 0);
    CHECK_EQ_STR(d, "[192.0.2.1]");
    CHECK_EQ_INT(queue_rcpt_domain("\"a@b\"@host.test.", d, sizeof(d)), 0);
    CHECK_EQ_STR(d, "host.test");
    CHECK_EQ_INT(queue_rcpt_domain("nodomain", d, sizeof(d)), -1);
    CHECK_EQ_INT(queue_rcpt_domain("x@", d, sizeof(d)), -1);
}

/* ---- reports ---- */

static size_t count(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

static bool lines_short(const char *s, size_t max)
{
    size_t col = 0;
    for (; *s; s++) {
        col = *s == '\n' ? 0 : col + 1;
        if (col > max)
            return false;
    }
    return true;
}

static void test_dsn_failure(void)
{
    struct queue_result r1, r2;
    struct smtp_client_reply rep = reply_of("550 5.1.1 no such user here, and this text goes on "
                                            "long enough to need folding in the report field\r\n");
    queue_result_from_reply(&r1, &rep, "mx.remote.test");
    queue_result_local(&r2, Q_FAILED, "5.1.10", NULL, "null MX");
    struct dsn_rcpt rc[2] = {
        { .address = "gone@remote.test", .orcpt = "rfc822;orig@remote.test", .action = "failed",
          .res = &r1 },
        { .address = "x@null.test", .action = "failed", .res = &r2 },
    };
    const char *orig = "From: a@x.test\r\nSubject: hello\r\n\r\nbody\r\n";
    struct dsn_info in = { .kind = DSN_FAILURE, .reporting_mta = "mx.example.test",
                           .sender = "a@x.test", .envid = "ENV1", .queue_id = "abc123",
                           .arrival = 1700000000, .now = 1700000100, .rcpts = rc, .n_rcpts = 2,
                           .orig = orig, .orig_len = strlen(orig), .orig_full = true };
    struct strbuf sb;
    strbuf_init(&sb, 1u << 20);
    CHECK_EQ_INT(dsn_build(&in, &sb), 0);
    strbuf_append(&sb, "", 1);
    const char *t = sb.data;
    CHECK(strstr(t, "Content-Type: multipart/report; report-type=delivery-status;") != NULL);
    CHECK(strstr(t, "To: <a@x.test>\r\n") != NULL);
    CHECK(strstr(t, "Auto-Submitted: auto-replied\r\n") != NULL);
    CHECK(strstr(t, "Subject: Undelivered Mail Returned to Sender\r\n") != NULL);
    CHECK(strstr(t, "Content-Type: message/delivery-status\r\n") != NULL);
    CHECK(strstr(t, "Reporting-MTA: dns; mx.example.test\r\n") != NULL);
    CHECK(strstr(t, "Original-Envelope-Id: ENV1\r\n") != NULL);
    CHECK(strstr(t, "Original-Recipient: rfc822; orig@remote.test\r\n") != NULL);
    CHECK(strstr(t, "Final-Recipient: rfc822; gone@remote.test\r\n") != NULL);
    CHECK_EQ_INT(count(t, "Action: failed\r\n"), 2);
    CHECK(strstr(t, "Status: 5.1.1\r\n") != NULL);
    CHECK(strstr(t, "Status: 5.1.10\r\n") != NULL);
    CHECK(strstr(t, "Remote-MTA: dns; mx.remote.test\r\n") != NULL);
    CHECK_EQ_INT(count(t, "Remote-MTA:"), 1);
    CHECK(strstr(t, "Diagnostic-Code: smtp; 550 5.1.1 no such user") != NULL);
    CHECK(strstr(t, "Diagnostic-Code: X-Postel; null MX\r\n") != NULL);
    CHECK(strstr(t, "Content-Type: message/rfc822\r\n\r\nFrom: a@x.test\r\n") != NULL);
    CHECK(lines_short(t, 78));
    /* boundary: 3 part openers and one closer */
    const char *b = strstr(t, "boundary=\"");
    CHECK(b != NULL);
    if (b) {
        char bound[80];
        const char *e = strchr(b + 10, '"');
        snprintf(bound, sizeof(bound), "\r\n--%.*s", (int)(e - b - 10), b + 10);
        CHECK_EQ_INT(count(t, bound), 4);
        strcat(bound, "--\r\n");
        CHECK_EQ_INT(count(t, bound), 1);
    }
    strbuf_free(&sb);
}

static void test_dsn_headers_and_utf8(void)
{
    struct queue_result r;
    queue_result_local(&r, Q_DEFERRED, "4.4.1", NULL, "connection refused");
    struct dsn_rcpt rc = { .address = "j\xc3\xb6ran@y.test", .action = "delayed", .res = &r };
    const char *orig = "Subject: h\xc3\xa9\r\n";
    struct dsn_info in = { .kind = DSN_DELAY, .reporting_mta = "mx", .sender = "a@x.test",
                           .queue_id = "q", .arrival = 1, .now = 2, .retry_until = 3,
                           .utf8 = true, .rcpts = &rc, .n_rcpts = 1, .orig = orig,
                           .orig_len = strlen(orig), .orig_full = false };
    struct strbuf sb;
    strbuf_init(&sb, 1u << 20);
    CHECK_EQ_INT(dsn_build(&in, &sb), 0);
    strbuf_append(&sb, "", 1);
    const char *t = sb.data;
    CHECK(strstr(t, "report-type=global-delivery-status") != NULL);
    CHECK(strstr(t, "Content-Type: message/global-delivery-status\r\n") != NULL);
    CHECK(strstr(t, "Final-Recipient: utf-8; j\xc3\xb6ran@y.test\r\n") != NULL);
    CHECK(strstr(t, "Action: delayed\r\n") != NULL);
    CHECK(strstr(t, "Will-Retry-Until: ") != NULL);
    CHECK(strstr(t, "Content-Type: message/global-headers\r\n") != NULL);
    CHECK(strstr(t, "Subject: Delayed Mail") != NULL);
    strbuf_free(&sb);
}

/* ---- store: due, load, update; injection ---- */

struct waiter {
    bool done;
    int result;
    char id[32];
};

static void commit_done(void *arg, int result, const char *id, const char *error)
{
    struct waiter *w = arg;
    w->result = result;
    str_copy(w->id, id ? id : "", sizeof(w->id));
    __atomic_store_n(&w->done, true, __ATOMIC_RELEASE);
}

static void wait_done(struct waiter *w)
{
    for (int i = 0; i < 5000 && !__atomic_load_n(&w->done, __ATOMIC_ACQUIRE); i++)
        usleep(1000);
}

static void collect_id(const char *id, void *arg)
{
    char *out = arg;
    if (out[0] == '\0')
        str_copy(out, id, 32);
}

static int files_in(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *de;
    while (d && (de = readdir(d)) != NULL)
        n += de->d_name[0] != '.';
    if (d)
        closedir(d);
    return n;
}

static void test_store_queue(void)
{
    char dir[] = "/tmp/postel-unit-queueXXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    const char *err = NULL;
    struct store *st = store_open(dir, &err);
    CHECK(st != NULL);
    if (st == NULL)
        return;
    struct store_rcpt_target t[2] = { { .kind = STORE_RCPT_REMOTE }, { .kind = STORE_RCPT_REMOTE } };
    str_copy(t[0].address, "one@remote.test", sizeof(t[0].address));
    str_copy(t[1].address, "two@remote.test", sizeof(t[1].address));
    struct store_tx_rcpt rc[2] = {
        { .address = "one@remote.test", .target = &t[0], .notify = STORE_NOTIFY_DELAY },
        { .address = "two@remote.test", .target = &t[1], .orcpt = "rfc822;x@y.test" },
    };
    struct store_envelope env = { .sender = "a@x.test", .envid = "E1", .ret = "HDRS",
                                  .rcpts = rc, .n_rcpts = 2 };
    struct store_tx *tx = store_tx_begin(st, &env, &err);
    CHECK(tx != NULL);
    const char *msg = "Subject: q\r\n\r\nbody\r\n";
    store_tx_write(tx, msg, strlen(msg));
    struct waiter w = { 0 };
    store_tx_commit(tx, commit_done, &w);
    wait_done(&w);
    CHECK_EQ_INT(w.result, 0);

    char id[32] = "";
    CHECK_EQ_INT(store_queue_due(st, time(NULL) + 1, 10, collect_id, id), 1);
    CHECK_EQ_STR(id, w.id);
    struct store_queue_msg *m = NULL;
    CHECK_EQ_INT(store_queue_load(st, id, &m), 1);
    CHECK(m != NULL);
    if (m == NULL)
        return;
    CHECK_EQ_STR(m->e.sender, "a@x.test");
    CHECK_EQ_STR(m->envid, "E1");
    CHECK_EQ_STR(m->ret, "HDRS");
    CHECK_EQ_INT(m->n_rcpts, 2);
    CHECK_EQ_STR(m->rcpts[0].address, "one@remote.test");
    CHECK_EQ_INT(m->rcpts[0].notify, STORE_NOTIFY_DELAY);
    CHECK_EQ_STR(m->rcpts[1].orcpt, "rfc822;x@y.test");
    CHECK_EQ_STR(m->rcpts[1].status, "pending");
    CHECK_EQ_INT(m->e.size, strlen(msg));

    /* one delivered, one deferred: the entry stays, later */
    int64_t later = time(NULL) + 600;
    struct store_queue_rcpt_update ru[2] = {
        { .address = "one@remote.test", .status = "pending", .last_error = "4.0.0\tmx\tsmtp; 451",
          .notify_set = STORE_NOTIFY_DELAY_SENT },
        { .address = "two@remote.test", .status = "delivered" },
    };
    struct store_queue_update u = { .id = id, .rcpts = ru, .n_rcpts = 2, .attempted = true,
                                    .next_attempt = later };
    CHECK_EQ_INT(store_queue_update(st, &u, 1, &err), 0);
    CHECK_EQ_INT(u.removed, 0);
    char none[32] = "";
    CHECK_EQ_INT(store_queue_due(st, time(NULL) + 1, 10, collect_id, none), 0);
    struct store_queue_msg *m2 = NULL;
    CHECK_EQ_INT(store_queue_load(st, id, &m2), 1);
    if (m2 != NULL) {
        CHECK_EQ_INT(m2->e.attempts, 1);
        CHECK_EQ_STR(m2->e.state, "deferred");
        CHECK_EQ_INT(m2->e.next_attempt, later);
        CHECK_EQ_INT(m2->rcpts[0].notify, STORE_NOTIFY_DELAY | STORE_NOTIFY_DELAY_SENT);
        CHECK_EQ_STR(m2->rcpts[0].last_error, "4.0.0\tmx\tsmtp; 451");
        CHECK_EQ_STR(m2->rcpts[1].status, "delivered");
    }
    struct store_queue_entry e;
    CHECK_EQ_INT(store_queue_get(st, id, &e), 1);
    CHECK_EQ_STR(e.rcpts, "one@remote.test");

    /* the last one bounced: the entry and its file go */
    char qdir[600];
    snprintf(qdir, sizeof(qdir), "%s/queue", dir);
    CHECK_EQ_INT(files_in(qdir), 1);
    struct store_queue_rcpt_update ru2 = { .address = "one@remote.test", .status = "bounced" };
    struct store_queue_update u2 = { .id = id, .rcpts = &ru2, .n_rcpts = 1, .attempted = true,
                                     .next_attempt = later };
    CHECK_EQ_INT(store_queue_update(st, &u2, 1, &err), 0);
    CHECK_EQ_INT(u2.removed, 1);
    CHECK_EQ_INT(store_queue_get(st, id, &e), 0);
    CHECK_EQ_INT(files_in(qdir), 0);
    /* an entry deleted meanwhile is skipped */
    CHECK_EQ_INT(store_queue_update(st, &u2, 1, &err), 0);
    CHECK_EQ_INT(u2.removed, 0);
    store_queue_msg_free(m);
    store_queue_msg_free(m2);

    /* injection: local rcpt into INBOX, remote one queued, unknown refused */
    CHECK_EQ_INT(store_user_add(st, "alice@example.test", "pw-Secret-1", &err), 0);
    const char *to[] = { "alice@example.test", "far@remote.test" };
    const char *dsn = "From: MAILER-DAEMON@x\r\nSubject: report\r\n\r\nhi\r\n";
    char qid[32] = "";
    CHECK_EQ_INT(queue_inject(st, "", to, 2, dsn, strlen(dsn), qid, sizeof(qid)), 0);
    CHECK(qid[0] != '\0');
    CHECK_EQ_INT(files_in(qdir), 1);
    const char *unknown[] = { "nobody@example.test" };
    CHECK_EQ_INT(queue_inject(st, "", unknown, 1, dsn, strlen(dsn), NULL, 0), -2);
    int64_t acct = store_user_lookup(st, "alice@example.test");
    int fd = store_message_open(st, acct, "INBOX", 1);
    CHECK(fd >= 0);
    if (fd >= 0) {
        char buf[256] = "";
        ssize_t n = read(fd, buf, sizeof(buf) - 1);
        buf[n > 0 ? n : 0] = '\0';
        CHECK(strstr(buf, "Return-Path: <>\r\n") == buf);
        CHECK(strstr(buf, "Subject: report") != NULL);
        close(fd);
    }
    store_close(st);
    char cmd[700];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    CHECK_EQ_INT(system(cmd), 0);
}

int main(void)
{
    RUN(test_backoff);
    RUN(test_results);
    RUN(test_params);
    RUN(test_smtputf8_needed);
    RUN(test_domains);
    RUN(test_dsn_failure);
    RUN(test_dsn_headers_and_utf8);
    RUN(test_store_queue);
    return unit_report("queue");
}
