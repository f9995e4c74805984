/* augur launch CONFIG [--hostfile FILE] [--dry-run] [-- flags]: one validated command
 * for any layout. Reads the config, places replicas x (T + 1) ranks on the hosts
 * (launch_layout.h), checks the models, writes an Open MPI rankfile so that every rank
 * lands where the table says, prints the mpirun command and runs it. */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kernels/backend.h"
#include "runtime/device_plan.h"
#include "launcher/args.h"
#include "launcher/commands.h"
#include "launcher/generate_cli.h"
#include "launcher/launch_config.h"
#include "launcher/launch_layout.h"
#include "launcher/launch_models.h"

static const char launch_synopsis[] =
    "usage: augur launch CONFIG [--hostfile FILE] [--dry-run] [-- FLAGS...]\n"
    "\n"
    "Runs the config's command (augur generate, bench or serve) under mpirun with its\n"
    "layout: replicas x (tp target ranks + 1 draft rank), each replica's target ranks\n"
    "first, then its draft (serve: one replica; bench: one rank). Checks the layout\n"
    "against the hosts' slots and GPUs and against the models (tp divides the heads, the\n"
    "draft shares the target's vocabulary), binds each rank to its host, GPU and cores\n"
    "through an Open MPI rankfile, sets the environment (NCCL_NVLS_ENABLE=0;\n"
    "--allow-run-as-root as root; --oversubscribe and mpi_yield_when_idle when ranks\n"
    "outnumber cores), prints the mpirun command and runs it. FLAGS after -- go to the\n"
    "command and override the config's (e.g. -- --prompt \"...\"). configs/README.md\n"
    "documents every key of CONFIG.\n"
    "\n";

static const char launch_epilogue[] =
    "\n"
    "Hostfile: Open MPI syntax, one host a line, \"NAME slots=N gpus=N cores=N\" (gpus= and\n"
    "cores= may also stand in a trailing comment, \"node-a slots=8 # gpus=8\"). Without\n"
    "one: this host, with a slot per online CPU and the GPUs visible here. Exit status:\n"
    "mpirun's, or 2 for a bad config, hostfile or layout.\n";

typedef struct {
    const char *config_path;
    const char *hostfile;
    bool dry_run;
    char **extra;            /* flags after -- for the command */
    int n_extra;
} launch_cli;

typedef struct {
    char **v;
    int n, cap;
} strv;

static augur_status strv_add(strv *a, const char *s, augur_error *err)
{
    if (a->n + 2 > a->cap) {
        int cap = a->cap ? 2 * a->cap : 32;
        char **v = realloc(a->v, (size_t)cap * sizeof *v);
        if (!v)
            return augur_fail(err, AUGUR_E_NOMEM, "launch: out of memory");
        a->v = v;
        a->cap = cap;
    }
    if (!(a->v[a->n] = strdup(s)))
        return augur_fail(err, AUGUR_E_NOMEM, "launch: out of memory");
    a->v[++a->n] = NULL;
    return AUGUR_OK;
}

static augur_status strv_addf(strv *a, augur_error *err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static augur_status strv_addf(strv *a, augur_error *err, const char *fmt, ...)
{
    char buf[PATH_MAX + 64];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return strv_add(a, buf, err);
}

static void strv_free(strv *a)
{
    for (int i = 0; i < a->n; i++)
        free(a->v[i]);
    free(a->v);
    *a = (strv){0};
}

/* The layout is the config's: a layout flag after -- would start ranks the layout did
 * not plan. */
static const char *const layout_flags[] = {"--tp", "--replicas", "--draft-placement", "--simulate-hosts"};

static augur_status check_launch(void *ctx, int n_operands, char **operands, augur_error *err)
{
    launch_cli *cli = ctx;
    if (n_operands < 1 || operands[0][0] == '-')
        return augur_fail(err, AUGUR_E_INPUT, "CONFIG is required: augur launch CONFIG [options] [-- flags]");
    cli->config_path = operands[0];
    cli->extra = operands + 1;
    cli->n_extra = n_operands - 1;
    for (int i = 0; i < cli->n_extra; i++) {
        for (size_t k = 0; k < sizeof layout_flags / sizeof layout_flags[0]; k++) {
            size_t n = strlen(layout_flags[k]);
            if (!strncmp(cli->extra[i], layout_flags[k], n) && (cli->extra[i][n] == '\0' || cli->extra[i][n] == '='))
                return augur_fail(err, AUGUR_E_INPUT,
                                  "%s after --: the layout comes from the config; set \"%s\" in %s instead",
                                  layout_flags[k], layout_flags[k] + 2, cli->config_path);
        }
    }
    return AUGUR_OK;
}

static augur_status check_flag(launch_command cmd, const char *key, const char *value, augur_error *err)
{
    return cmd == LAUNCH_BENCH   ? bench_check_flag(key, value, err)
           : cmd == LAUNCH_SERVE ? serve_check_flag(key, value, err)
                                 : generate_check_flag(key, value, err);
}

/* The hosts: the hostfile (flag, else config key), else this host. */
static augur_status load_hosts(const launch_cli *cli, const launch_config *c, launch_hosts *h, augur_error *err)
{
    const char *path = cli->hostfile ? cli->hostfile : c->hostfile;
    if (!path) {
        int gpus = strcmp(c->device, "cpu") ? backend_device_count(AUGUR_BACKEND_CUDA) : 0;
        return launch_hosts_local(h, online_cpus(), gpus, err);
    }
    FILE *f = fopen(path, "r");
    if (!f)
        return augur_fail(err, AUGUR_E_INPUT, "hostfile %s: cannot open: %s", path, strerror(errno));
    char *text = NULL;
    size_t cap = 0;
    ssize_t n = getdelim(&text, &cap, '\0', f);
    fclose(f);
    augur_status st = launch_hosts_parse(h, path, n >= 0 ? text : "", err);
    free(text);
    return st;
}

/* auto: cuda when the hosts have GPUs. */
static const char *resolve_device(const launch_config *c, const launch_hosts *h)
{
    if (strcmp(c->device, "auto"))
        return c->device;
    for (int i = 0; i < h->n; i++)
        if (h->hosts[i].gpus > 0)
            return "cuda";
    return "cpu";
}

/* The command every rank runs: augur <command> <config flags> --device D [layout] <extra>. */
static augur_status command_argv(const launch_cli *cli, const launch_config *c, const char *device, strv *out,
                                 augur_error *err)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0)
        return augur_fail(err, AUGUR_E_IO, "launch: cannot find augur's own path (/proc/self/exe)");
    self[n] = '\0';
    augur_status st = strv_add(out, self, err);
    if (!st)
        st = strv_add(out, launch_command_name(c->command), err);
    for (int i = 0; !st && i < c->n_flags; i++) {
        if (!strcmp(c->flags[i].key, "device"))
            continue; /* resolved below */
        st = strv_addf(out, err, "--%s", c->flags[i].key);
        if (!st && c->flags[i].value)
            st = strv_add(out, c->flags[i].value, err);
    }
    if (!st)
        st = strv_addf(out, err, "--device=%s", device);
    for (int i = 0; !st && i < cli->n_extra; i++)
        st = strv_add(out, cli->extra[i], err);
    return st;
}

/* The command's flags checked here, once, rather than on every rank. */
static int check_command_args(const launch_config *c, strv *cmd)
{
    /* argv[0] of a subcommand is its name */
    if (c->command == LAUNCH_BENCH)
        return bench_check_args(cmd->n - 1, cmd->v + 1);
    if (c->command == LAUNCH_SERVE)
        return serve_check_args(cmd->n - 1, cmd->v + 1);
    return generate_check_args(cmd->n - 1, cmd->v + 1);
}

static augur_status mpirun_argv(const launch_config *c, const launch_layout *l, const char *hostfile,
                                const char *rankfile, const strv *cmd, strv *out, augur_error *err)
{
    augur_status st = strv_add(out, c->mpirun, err);
    if (!st && geteuid() == 0)
        st = strv_add(out, "--allow-run-as-root", err);
    const char *files[] = {"--hostfile", hostfile, "--rankfile", rankfile, "-np"};
    for (size_t i = 0; !st && i < sizeof files / sizeof files[0]; i++)
        st = strv_add(out, files[i], err);
    if (!st)
        st = strv_addf(out, err, "%d", l->n);
    if (!st && l->oversubscribed) {
        /* ranks share cores: waiting ranks must yield them to the busy ones */
        const char *more[] = {"--oversubscribe", "--mca", "mpi_yield_when_idle", "1"};
        for (size_t i = 0; !st && i < sizeof more / sizeof more[0]; i++)
            st = strv_add(out, more[i], err);
    }
    const char *env[] = {"-x", "NCCL_NVLS_ENABLE=0"};
    for (size_t i = 0; !st && i < sizeof env / sizeof env[0]; i++)
        st = strv_add(out, env[i], err);
    for (int i = 0; !st && i < cmd->n; i++)
        st = strv_add(out, cmd->v[i], err);
    return st;
}

/* One word of a shell command line, quoted when it needs to be. */
static void print_word(FILE *f, const char *w)
{
    bool plain = w[0] != '\0';
    for (const char *p = w; *p && plain; p++)
        plain = strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_=./,:+@%", *p) != NULL;
    if (plain) {
        fputs(w, f);
        return;
    }
    fputc('\'', f);
    for (const char *p = w; *p; p++) {
        if (*p == '\'')
            fputs("'\\''", f);
        else
            fputc(*p, f);
    }
    fputc('\'', f);
}

static void print_command(FILE *f, const strv *a)
{
    for (int i = 0; i < a->n; i++) {
        if (i)
            fputc(' ', f);
        print_word(f, a->v[i]);
    }
    fputc('\n', f);
}

static void print_summary(FILE *f, const launch_config *c, const launch_layout *l, const launch_hosts *h,
                          const char *device)
{
    int used = 0;
    for (int i = 0; i < h->n; i++)
        used += l->host_ranks[i] > 0;
    if (c->command == LAUNCH_BENCH)
        fprintf(f, "augur launch: %s: bench of shard 0 of %d: 1 rank", c->path, c->tp);
    else
        fprintf(f, "augur launch: %s: %d replica%s x (%d target + 1 draft) = %d ranks", c->path, c->replicas,
                c->replicas == 1 ? "" : "s", c->tp, l->n);
    fprintf(f, " on %d of %d host%s (%s), device %s", used, h->n, h->n == 1 ? "" : "s", h->source, device);
    if (c->command != LAUNCH_BENCH && (!strcmp(device, "cuda") || c->draft == DRAFT_OWN_NODE))
        fprintf(f, ", draft-placement %s", draft_placement_name(c->draft));
    if (c->simulate_hosts)
        fprintf(f, ", %d simulated hosts", c->simulate_hosts);
    fprintf(f, "%s\n", l->oversubscribed ? ", oversubscribed (ranks share cores)" : "");
    launch_layout_print(f, l, h);
    if (l->notes[0])
        fprintf(f, "note: %s", l->notes);
}

/* ---- running ---- */

typedef struct {
    char dir[PATH_MAX];
    char hostfile[PATH_MAX + 16];
    char rankfile[PATH_MAX + 16];
} launch_files;

static augur_status write_files(launch_files *lf, const launch_layout *l, const launch_hosts *h, augur_error *err)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(lf->dir, sizeof lf->dir, "%s/augur-launch-XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
    if (!mkdtemp(lf->dir))
        return augur_fail(err, AUGUR_E_IO, "launch: cannot make a directory %s: %s", lf->dir, strerror(errno));
    snprintf(lf->hostfile, sizeof lf->hostfile, "%s/hostfile", lf->dir);
    snprintf(lf->rankfile, sizeof lf->rankfile, "%s/rankfile", lf->dir);
    FILE *hf = fopen(lf->hostfile, "w"), *rf = fopen(lf->rankfile, "w");
    if (hf)
        launch_hosts_write(hf, h, l);
    if (rf)
        launch_layout_write_rankfile(rf, l, h);
    bool ok = hf && rf;
    ok = (hf ? fclose(hf) == 0 : false) && ok;
    ok = (rf ? fclose(rf) == 0 : false) && ok;
    return ok ? AUGUR_OK : augur_fail(err, AUGUR_E_IO, "launch: cannot write the hostfile and rankfile in %s", lf->dir);
}

static void remove_files(const launch_files *lf)
{
    unlink(lf->hostfile);
    unlink(lf->rankfile);
    rmdir(lf->dir);
}

/* The one process launch waits for; the handler passes signals on to it. */
typedef struct {
    volatile sig_atomic_t child;
} launch_signals;

static launch_signals signals_ctx;

static void forward_signal(int sig)
{
    if (signals_ctx.child > 0)
        kill((pid_t)signals_ctx.child, sig);
}

/* Runs argv, waits, returns its exit status (128 + signal when killed). */
static int run_and_wait(const strv *argv, augur_error *err)
{
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        augur_fail(err, AUGUR_E_IO, "launch: fork failed: %s", strerror(errno));
        return -1;
    }
    if (pid == 0) {
        execvp(argv->v[0], argv->v);
        fprintf(stderr, "augur: launch: cannot run %s: %s (set \"mpirun\" in the config to its path)\n",
                argv->v[0], strerror(errno));
        _exit(127);
    }
    signals_ctx.child = pid;
    struct sigaction sa = {.sa_handler = forward_signal};
    sigemptyset(&sa.sa_mask);
    const int sigs[] = {SIGINT, SIGTERM, SIGHUP};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        sigaction(sigs[i], &sa, NULL);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    signals_ctx.child = 0;
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : 1;
}

/* ---- the command ---- */

/* A config without "device" takes augur's default: $AUGUR_DEVICE, else auto. */
static augur_status default_device(launch_config *c, augur_error *err)
{
    if (strcmp(c->device, "auto"))
        return AUGUR_OK;
    augur_device_kind k = AUGUR_DEVICE_AUTO;
    augur_status st = device_kind_default(&k, err);
    if (st || k == AUGUR_DEVICE_AUTO)
        return st;
    char *d = strdup(device_kind_name(k));
    if (!d)
        return augur_fail(err, AUGUR_E_NOMEM, "launch: out of memory");
    free(c->device);
    c->device = d;
    return AUGUR_OK;
}

static int launch(const launch_cli *cli)
{
    augur_error err = {0};
    launch_config c;
    launch_hosts hosts = {0};
    launch_layout layout = {0};
    strv cmd = {0}, mpirun = {0};
    launch_files files = {0};
    bool files_made = false;
    int rc = 0;
    augur_status st = launch_config_load(&c, cli->config_path, check_flag, &err);
    if (st)
        return cli_report(&err);
    if ((st = default_device(&c, &err))) {
        launch_config_free(&c);
        return cli_report(&err);
    }
    const char *device = "cpu";
    if (!(st = load_hosts(cli, &c, &hosts, &err)))
        device = resolve_device(&c, &hosts);
    if (!st)
        st = launch_check_models(&c, cli->dry_run, &err);
    if (!st) {
        launch_spec spec = {.tp = c.tp, .replicas = c.replicas, .draft = c.draft,
                            .use_gpus = !strcmp(device, "cuda"), .simulate_hosts = c.simulate_hosts,
                            .allow_oversubscribe = c.oversubscribe || (!cli->hostfile && !c.hostfile),
                            .single_rank = c.command == LAUNCH_BENCH};
        st = launch_layout_plan(&layout, &spec, &hosts, &err);
    }
    if (!st)
        st = command_argv(cli, &c, device, &cmd, &err);
    if (st) {
        rc = cli_report(&err);
        goto out;
    }
    if ((rc = check_command_args(&c, &cmd)) != ARGS_RUN) {
        if (rc)
            fprintf(stderr, "augur: launch: in the flags of augur %s from %s%s\n", launch_command_name(c.command),
                    c.path, cli->n_extra ? " and after --" : "");
        goto out;
    }
    rc = 0;
    if (cli->dry_run) {
        st = mpirun_argv(&c, &layout, "HOSTFILE", "RANKFILE", &cmd, &mpirun, &err);
        if (st) {
            rc = cli_report(&err);
            goto out;
        }
        print_summary(stdout, &c, &layout, &hosts, device);
        printf("RANKFILE:\n");
        launch_layout_write_rankfile(stdout, &layout, &hosts);
        printf("HOSTFILE:\n");
        launch_hosts_write(stdout, &hosts, &layout);
        printf("command:\n");
        print_command(stdout, &mpirun);
        goto out;
    }
    if (!(st = write_files(&files, &layout, &hosts, &err))) {
        files_made = true;
        st = mpirun_argv(&c, &layout, files.hostfile, files.rankfile, &cmd, &mpirun, &err);
    }
    if (st) {
        rc = cli_report(&err);
        goto out;
    }
    print_summary(stderr, &c, &layout, &hosts, device);
    fprintf(stderr, "augur launch: ");
    print_command(stderr, &mpirun);
    setenv("NCCL_NVLS_ENABLE", "0", 1);
    rc = run_and_wait(&mpirun, &err);
    if (rc < 0)
        rc = cli_report(&err);
out:
    if (files_made)
        remove_files(&files);
    strv_free(&cmd);
    strv_free(&mpirun);
    launch_layout_free(&layout);
    launch_hosts_free(&hosts);
    launch_config_free(&c);
    return rc;
}

int cmd_launch(int argc, char **argv)
{
    launch_cli cli = {0};
    const arg_spec specs[] = {
        FLAG_STRING("hostfile", &cli.hostfile, "FILE",
                    "hosts to place the ranks on (overrides the config's\n"
                    "\"hostfile\"; default: this host)"),
        FLAG_BOOL("dry-run", &cli.dry_run,
                  "print the layout table, the rankfile, the hostfile and the\n"
                  "mpirun command, then exit without running"),
        FLAG_HELP,
    };
    const arg_command cmd = {.name = "launch", .synopsis = launch_synopsis, .specs = specs,
                             .n_specs = sizeof specs / sizeof specs[0], .epilogue = launch_epilogue,
                             .help_column = 23, .operands = ARGS_OPERANDS, .check = check_launch, .cli = &cli};
    int rc = args_parse(&cmd, argc, argv, NULL);
    return rc == ARGS_RUN ? launch(&cli) : rc;
}
