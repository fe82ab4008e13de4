/*
 * libFuzzer target: one SMTP command line through smtp_command_parse, then
 * the argument through the MAIL / RCPT / BDAT parsers (with and without
 * SMTPUTF8).  Besides the sanitizers it checks the parsers' promises: a
 * parsed path is canonical (re-parsing its mailbox gives the same
 * mailbox), lengths stay within RFC 5321 4.5.3.1, errors carry a reply.
 */
#include "smtp/smtp_parse.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

static void check_reply(const struct smtp_reply *r)
{
    if (r->status == NULL || r->text == NULL
        || (r->code != 500 && r->code != 501 && r->code != 553 && r->code != 555))
        abort();
}

static void check_path(const struct smtp_path *p)
{
    size_t mlen = strlen(p->mailbox), llen = strlen(p->local), dlen = strlen(p->domain);
    if (p->is_null) {
        if (mlen || llen || dlen || p->is_postmaster || p->utf8)
            abort();
        return;
    }
    if (mlen > SMTP_PATH_MAX - 2 || llen == 0 || llen > SMTP_LOCALPART_MAX || dlen > SMTP_DOMAIN_MAX)
        abort();
    if (p->is_postmaster) {
        if (dlen != 0 || strcasecmp(p->mailbox, "postmaster") != 0)
            abort();
        return;
    }
    /* mailbox is exactly local "@" domain, the domain in lower case */
    if (mlen != llen + 1 + dlen || memcmp(p->mailbox, p->local, llen) != 0 || p->mailbox[llen] != '@'
        || strcmp(p->mailbox + llen + 1, p->domain) != 0)
        abort();
    bool high = false;
    for (size_t i = 0; i < mlen; i++)
        high |= (unsigned char)p->mailbox[i] >= 0x80;
    for (size_t i = 0; i < dlen; i++)
        if (p->domain[i] >= 'A' && p->domain[i] <= 'Z' && strncmp(p->domain, "[IPv6:", 6) != 0)
            abort();
    if (high && !p->utf8)   /* utf8 may also come from a dropped source route */
        abort();
    /* canonical: the mailbox parses again to itself */
    struct smtp_path again;
    if (smtp_address_parse(p->mailbox, &again) != 0 || strcmp(again.mailbox, p->mailbox) != 0
        || strcmp(again.local, p->local) != 0 || again.utf8 != high)
        abort();
}

static void fuzz_mail(const char *arg, bool utf8)
{
    struct smtp_path path;
    struct smtp_mail_params mp;
    struct smtp_reply reply;
    if (smtp_mail_parse(arg, utf8, &path, &mp, &reply) == 0) {
        check_path(&path);
        if (path.is_postmaster || (path.utf8 && !mp.smtputf8) || (mp.smtputf8 && !utf8))
            abort();
        if (strlen(mp.envid) > 100 || (mp.ret[0] && strcmp(mp.ret, "FULL") && strcmp(mp.ret, "HDRS")))
            abort();
    } else {
        check_reply(&reply);
        if (path.mailbox[0] || mp.size)
            abort();
    }
}

static void fuzz_rcpt(const char *arg, bool utf8)
{
    struct smtp_path path;
    struct smtp_rcpt_params rp;
    struct smtp_reply reply;
    if (smtp_rcpt_parse(arg, utf8, &path, &rp, &reply) == 0) {
        check_path(&path);
        if (path.is_null || (path.utf8 && !utf8))
            abort();
        if ((rp.notify & SMTP_NOTIFY_NEVER) && rp.notify != SMTP_NOTIFY_NEVER)
            abort();
        if (rp.orcpt[0] && strchr(rp.orcpt, ';') == NULL)
            abort();
    } else {
        check_reply(&reply);
    }
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    if (size > 4096)
        return 0;
    /* An exact-size copy plus the byte the parser writes its NUL into. */
    char *line = malloc(size + 1);
    memcpy(line, data, size);
    line[size] = '\r';
    struct smtp_command cmd;
    struct smtp_reply reply;
    if (smtp_command_parse(line, size, &cmd, &reply) == 0) {
        if (cmd.verb == SMTP_VERB_UNKNOWN || memchr(data, '\0', size) || memchr(data, '\r', size))
            abort();
        if (cmd.arg[0] && (cmd.arg < line || cmd.arg > line + size))
            abort();
        uint64_t n;
        bool last;
        switch (cmd.verb) {
        case SMTP_VERB_MAIL:
            fuzz_mail(cmd.arg, false);
            fuzz_mail(cmd.arg, true);
            break;
        case SMTP_VERB_RCPT:
            fuzz_rcpt(cmd.arg, false);
            fuzz_rcpt(cmd.arg, true);
            break;
        case SMTP_VERB_BDAT:
            if (smtp_bdat_parse(cmd.arg, &n, &last, &reply) < 0 && reply.code != 501)
                abort();
            break;
        default:
            break;
        }
    } else {
        if (reply.code != 500 || cmd.verb != SMTP_VERB_UNKNOWN)
            abort();
    }
    /* The argument parsers also see the raw bytes (up to a NUL). */
    memcpy(line, data, size);
    line[size] = '\0';
    fuzz_mail(line, true);
    fuzz_rcpt(line, false);
    free(line);
    return 0;
}
