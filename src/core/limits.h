/*
 * Every cap in one place.  Values users may need to change are also
 * configuration keys (see core/config.h); these are the defaults and the
 * hard limits the parsers rely on.
 */
#ifndef POSTEL_LIMITS_H
#define POSTEL_LIMITS_H

#define SMTP_LINE_MAX          512      /* RFC 5321 4.5.3.1.4, CRLF included */
#define SMTP_AUTH_LINE_MAX     12288    /* SASL responses (RFC 4954 4) */
#define SMTP_PATH_MAX          256      /* RFC 5321 4.5.3.1.3 */
#define SMTP_LOCALPART_MAX     64       /* RFC 5321 4.5.3.1.1 */
#define SMTP_DOMAIN_MAX        255      /* RFC 5321 4.5.3.1.2 */
#define SMTP_MAX_ERRORS        20       /* junk commands before 421 */
#define SMTP_MAX_AUTH_FAILS    5        /* failed AUTHs before 421 */
#define SMTP_BDAT_CHUNK_MAX    (64u << 20)

#define DEFAULT_MESSAGE_SIZE   (25u << 20)
#define DEFAULT_RECIPIENTS     100
#define DEFAULT_CONN_PER_IP    20
#define DEFAULT_SMTP_TIMEOUT   300      /* seconds idle before 421 4.4.2 */
#define DEFAULT_PREAUTH_TIMEOUT 60

#define CONFIG_VALUE_MAX       1024
#define ADDRESS_MAX            (SMTP_PATH_MAX + 1)
#define HOSTNAME_MAX           256
#endif
