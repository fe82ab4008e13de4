/*
 * A minimal unit-test harness: each tests/unit/test_*.c is one binary.
 * Use CHECK(cond) / CHECK_EQ_STR(a, b) / CHECK_EQ_INT(a, b) inside
 * functions registered with RUN(fn) from main(); finish with
 * return unit_report("name").  The report line is "N passed, N failed".
 */
#ifndef POSTEL_UNIT_H
#define POSTEL_UNIT_H
#include <stdio.h>
#include <string.h>

static int unit_passed, unit_failed;

#define CHECK(cond) do { if (cond) unit_passed++; else { unit_failed++; \
    fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond); } } while (0)
#define CHECK_EQ_INT(a, b) do { long long a_ = (long long)(a), b_ = (long long)(b); \
    if (a_ == b_) unit_passed++; else { unit_failed++; \
    fprintf(stderr, "FAIL %s:%d: %s == %lld, expected %lld\n", __FILE__, __LINE__, #a, a_, b_); } } while (0)
#define CHECK_EQ_STR(a, b) do { const char *a_ = (a), *b_ = (b); \
    if (a_ && b_ && strcmp(a_, b_) == 0) unit_passed++; else { unit_failed++; \
    fprintf(stderr, "FAIL %s:%d: %s == \"%s\", expected \"%s\"\n", __FILE__, __LINE__, #a, \
            a_ ? a_ : "(null)", b_ ? b_ : "(null)"); } } while (0)
#define RUN(fn) do { fn(); } while (0)

static inline int unit_report(const char *name)
{
    printf("%s: %d passed, %d failed\n", name, unit_passed, unit_failed);
    return unit_failed ? 1 : 0;
}
#endif
