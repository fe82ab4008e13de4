/*
 * Logging: one line per event on stderr, key=value pairs.
 *   2026-11-24T20:00:00.123Z level=info sid=7f3a01 event=connect ip=127.0.0.1
 * log_msg() formats the tail (fmt) itself; values with spaces should be
 * written with log_quote() or the %q-free helper LOG_Q below.  Safe from
 * any thread: each line is one write(2).
 */
#ifndef POSTEL_LOG_H
#define POSTEL_LOG_H
#include <stdarg.h>
#include <stddef.h>

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

void log_set_level(enum log_level level);
enum log_level log_get_level(void);
/* sid may be NULL (no session); fmt is a printf format producing key=value text. */
void log_msg(enum log_level level, const char *sid, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void log_vmsg(enum log_level level, const char *sid, const char *fmt, va_list ap);

/* Quote a value for key="value" output into buf (escapes " \ and controls).
 * Returns buf. */
const char *log_quote(char *buf, size_t size, const char *value);

#define log_debug(sid, ...) do { if (log_get_level() <= LOG_DEBUG) log_msg(LOG_DEBUG, sid, __VA_ARGS__); } while (0)
#define log_info(sid, ...)  log_msg(LOG_INFO, sid, __VA_ARGS__)
#define log_warn(sid, ...)  log_msg(LOG_WARN, sid, __VA_ARGS__)
#define log_error(sid, ...) log_msg(LOG_ERROR, sid, __VA_ARGS__)

/* Broken invariant: log and abort. Never for environment failures. */
void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
#endif
