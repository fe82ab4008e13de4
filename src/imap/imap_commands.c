/*
 * The command table: each IMAP command, the states it is valid in, and
 * its handler (one file per command, imap_cmd_*.c).
 */
#include <string.h>

#include "imap/imap_int.h"

#define ANY (IMAP_CMD_NOTAUTH | IMAP_CMD_AUTH)
#define AUTH IMAP_CMD_AUTH
#define SEL (IMAP_CMD_AUTH | IMAP_CMD_SELECTED)

static const struct imap_command_def commands[] = {
    { "CAPABILITY", ANY, imap_cmd_capability },
    { "NOOP", ANY, imap_cmd_noop },
    { "LOGOUT", ANY, imap_cmd_logout },
    { "ID", ANY, imap_cmd_id },
    { "STARTTLS", IMAP_CMD_NOTAUTH, imap_cmd_starttls },
    { "AUTHENTICATE", IMAP_CMD_NOTAUTH, imap_cmd_authenticate },
    { "LOGIN", IMAP_CMD_NOTAUTH, imap_cmd_login },
    { "ENABLE", AUTH, imap_cmd_enable },
    { "SELECT", AUTH, imap_cmd_select },
    { "EXAMINE", AUTH, imap_cmd_select },
    { "CREATE", AUTH, imap_cmd_create },
    { "DELETE", AUTH, imap_cmd_delete },
    { "RENAME", AUTH, imap_cmd_rename },
    { "SUBSCRIBE", AUTH, imap_cmd_subscribe },
    { "UNSUBSCRIBE", AUTH, imap_cmd_subscribe },
    { "LIST", AUTH, imap_cmd_list },
    { "LSUB", AUTH, imap_cmd_list },
    { "NAMESPACE", AUTH, imap_cmd_namespace },
    { "STATUS", AUTH, imap_cmd_status },
    { "APPEND", AUTH, imap_cmd_append },
    { "IDLE", AUTH, imap_cmd_idle },
    { "GETQUOTA", AUTH, imap_cmd_getquota },
    { "GETQUOTAROOT", AUTH, imap_cmd_getquotaroot },
    { "SETQUOTA", AUTH, imap_cmd_setquota },
    { "COMPRESS", AUTH, imap_cmd_compress },
    { "CHECK", SEL, imap_cmd_check },
    { "CLOSE", SEL, imap_cmd_close },
    { "UNSELECT", SEL, imap_cmd_unselect },
    { "EXPUNGE", SEL | IMAP_CMD_UID, imap_cmd_expunge },
    { "SEARCH", SEL | IMAP_CMD_UID | IMAP_CMD_NOEXP, imap_cmd_search },
    { "SORT", SEL | IMAP_CMD_UID | IMAP_CMD_NOEXP, imap_cmd_sort },
    { "THREAD", SEL | IMAP_CMD_UID | IMAP_CMD_NOEXP, imap_cmd_thread },
    { "FETCH", SEL | IMAP_CMD_UID | IMAP_CMD_NOEXP, imap_cmd_fetch },
    { "STORE", SEL | IMAP_CMD_UID | IMAP_CMD_NOEXP, imap_cmd_store },
    { "COPY", SEL | IMAP_CMD_UID, imap_cmd_copy },
    { "MOVE", SEL | IMAP_CMD_UID, imap_cmd_copy },
};

const struct imap_command_def *imap_command_find(const char *name)
{
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}
