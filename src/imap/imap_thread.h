/*
 * The pure parts of SORT and THREAD (RFC 5256): base subject extraction,
 * the sent date, message-id lists and both threading algorithms.  Nothing
 * here touches the session or the store, so the unit tests and the fuzz
 * target drive it directly.
 */
#ifndef POSTEL_IMAP_THREAD_H
#define POSTEL_IMAP_THREAD_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/util.h"

/* The base subject of a Subject field value (raw, possibly folded, with
 * RFC 2047 words) per RFC 5256 2.1: decoded to UTF-8, white space
 * collapsed, trailing "(fwd)", leading "Re:", "Fw:", "Fwd:" with their
 * "[blob]"s, leading blobs and the "[fwd: ...]" wrapper removed.  The
 * result is appended to out (never NUL-containing); *reply_r (optional)
 * is set when a reply or forward marker was removed.  0, or -1 when out's
 * cap is reached. */
int imap_base_subject(const char *value, size_t len, struct strbuf *out, bool *reply_r);

/* Parses an RFC 5322 date-time (obsolete forms too: two-digit years,
 * named zones, missing seconds and weekday) into Unix time in UTC.
 * 0 on success, -1 when it cannot be parsed. */
int imap_parse_rfc5322_date(const char *s, size_t len, int64_t *t_r);

/* Appends the msg-ids "<...>" found in a Message-ID, References or
 * In-Reply-To value to out as NUL-separated strings without the angle
 * brackets (only ids holding an '@' count, as most servers do).  Returns
 * the number of ids, or -1 at the cap. */
int imap_msgid_list(const char *value, size_t len, struct strbuf *out);

/* One message as the threading algorithms see it. */
struct imap_thread_msg {
    uint32_t num;           /* what the response shows: UID or sequence */
    uint32_t seq;           /* mailbox order, the final tie-breaker */
    int64_t date;           /* sent date (INTERNALDATE when no Date:) */
    const char *subject;    /* base subject (NUL-terminated) */
    bool reply;             /* the subject had Re:/Fwd: markers */
    const char *msgid;      /* Message-ID without <>, or NULL */
    const char *refs;       /* References (or the first In-Reply-To id) as
                               NUL-separated ids, n_refs of them */
    size_t n_refs;
};

enum imap_thread_alg { IMAP_THREAD_ORDEREDSUBJECT, IMAP_THREAD_REFERENCES };

/* Threads msgs[0..n) and appends the thread-list data of the THREAD
 * response ("(1 2)(3 (4)(5))", without "* THREAD") to out.  0, or -1
 * when out of memory or at out's cap. */
int imap_thread(enum imap_thread_alg alg, const struct imap_thread_msg *msgs, size_t n,
                struct strbuf *out);
#endif
