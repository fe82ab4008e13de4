/* postel config check: report every configuration error with file:line. */
#include <stdio.h>
#include <string.h>
#include <sysexits.h>

#include "cli/cli.h"

int cli_config_report(const struct config *cfg, int load_rc, const char *errors, int argc,
                      char **argv)
{
    if (argc < 1 || strcmp(argv[0], "check") != 0) {
        fprintf(stderr, "usage: postel [-c FILE] config check\n");
        return EX_USAGE;
    }
    if (load_rc < 0) {
        fprintf(stderr, "%s", errors);
        return EX_CONFIG;
    }
    if (cfg->dev_defaults)
        printf("no configuration file: embedded development defaults (data in %s)\n", cfg->data_dir);
    else
        printf("%s: ok\n", cfg->path);
    for (int r = 0; r < ROLE_COUNT; r++)
        for (int i = 0; i < cfg->n_listen[r]; i++)
            printf("  listen %-12s %s:%d\n", listen_role_names[r], cfg->listen[r][i].host,
                   cfg->listen[r][i].port);
    return 0;
}

int cli_config(const struct config *cfg, int argc, char **argv)
{
    return cli_config_report(cfg, 0, "", argc, argv);
}
