/*
 * DMARC aggregate data in the store's index: one row per evaluated message
 * (kept until its day is reported) and the bookkeeping of reports sent.
 * The store knows nothing of DMARC: rows are plain text columns that
 * src/auth/dmarc_report.c fills and reads back.
 *
 * The tables live in index.db next to the store's own and are created on
 * first use (CREATE TABLE IF NOT EXISTS), by whichever thread comes first.
 * Calls use the calling thread's connection; each is one short SQLite
 * statement or transaction (blocking: worker threads and the CLI only).
 */
#ifndef POSTEL_STORE_DMARC_H
#define POSTEL_STORE_DMARC_H
#include <stddef.h>
#include <stdint.h>

struct store;

struct store_dmarc_row {
    int64_t time;
    const char *policy_domain;    /* where the record was published */
    const char *header_from;
    const char *source_ip;
    const char *envelope_from;
    const char *disposition;      /* "none", "quarantine", "reject" */
    const char *dkim_eval;        /* aligned DKIM: "pass" / "fail" */
    const char *spf_eval;         /* aligned SPF: "pass" / "fail" */
    const char *reason;           /* "" or a PolicyOverride type ("sampled_out") */
    const char *dkim_auth;        /* one "domain selector result" line per signature */
    const char *spf_domain;
    const char *spf_scope;        /* "mfrom" / "helo" */
    const char *spf_result;
    const char *record;           /* the published record (policy_published) */
};

/* Adds a row (every string non-NULL).  0 or -1 (*error_r). */
int store_dmarc_add(struct store *st, const struct store_dmarc_row *row, const char **error_r);

struct store_dmarc_window {
    char domain[256];
    int64_t begin;                /* a multiple of period */
};
/* The distinct (policy domain, period start) pairs of rows whose whole
 * period ends at or before `before` (period in seconds, > 0).
 * *windows_r is malloc'ed (free()); returns the count or -1. */
int store_dmarc_windows(struct store *st, int64_t before, int64_t period,
                        struct store_dmarc_window **windows_r);

/* Calls fn once per group of equal rows (every column but time and record)
 * of domain in [begin, end], with the group's size, most frequent first.
 * fn must not call the store.  Returns the number of groups or -1. */
int store_dmarc_aggregate(struct store *st, const char *domain, int64_t begin, int64_t end,
                          void (*fn)(const struct store_dmarc_row *row, int64_t count, void *arg),
                          void *arg);
/* The record text of the newest row of domain in [begin, end] into buf.
 * 1 found, 0 none, -1 error. */
int store_dmarc_record(struct store *st, const char *domain, int64_t begin, int64_t end, char *buf,
                       size_t size);

/* 1 when a report for (domain, begin) was recorded as sent, 0 not, -1 error. */
int store_dmarc_reported(struct store *st, const char *domain, int64_t begin);
/* In one transaction: records the report (domain, begin, end, report_id,
 * how many recipients it reached), deletes the rows it covered, and
 * forgets bookkeeping older than 60 days.  0 or -1. */
int store_dmarc_finish(struct store *st, const char *domain, int64_t begin, int64_t end,
                       const char *report_id, int sent, const char **error_r);
/* Deletes rows older than before (never reported: no rua reachable). 0/-1. */
int store_dmarc_prune(struct store *st, int64_t before);
#endif
