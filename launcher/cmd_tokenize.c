/* augur tokenize: text to ids (one line, space-separated), or ids back to text. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "launcher/args.h"
#include "launcher/commands.h"
#include "launcher/model_files.h"

static const char tokenize_synopsis[] =
    "usage: augur tokenize --model PATH [--tokenizer FILE] [--no-special] TEXT\n"
    "       augur tokenize --model PATH [--tokenizer FILE] --decode ID [ID ...]\n"
    "\n"
    "Prints the token ids of TEXT on one line, space-separated; with --decode, prints\n"
    "the text of the given ids.\n"
    "\n";

static augur_status decode_ids(const tokenizer *tok, int argc, char **argv, augur_error *err)
{
    int n = argc;
    int32_t *ids = malloc(((size_t)n + 1) * sizeof *ids);
    if (!ids)
        return augur_fail(err, AUGUR_E_NOMEM, "tokenize: out of memory");
    augur_status st = AUGUR_OK;
    for (int i = 0; !st && i < n; i++) {
        int v = 0;
        st = arg_int("--decode", argv[i], 0, tokenizer_vocab_size(tok) - 1, &v, err);
        ids[i] = v;
    }
    char *text = NULL;
    if (!st)
        st = tokenizer_decode(tok, ids, (size_t)n, false, &text, err);
    if (!st)
        printf("%s\n", text);
    free(text);
    free(ids);
    return st;
}

typedef struct {
    const char *model_path;
    const char *tokenizer_path;
    bool decode;
    bool no_special;
    int n_operands;          /* TEXT, or the ids after --decode */
    char **operands;
} tokenize_cli;

static augur_status check_tokenize(void *ctx, int n_operands, char **operands, augur_error *err)
{
    tokenize_cli *cli = ctx;
    cli->n_operands = n_operands;
    cli->operands = operands;
    if (!cli->model_path && !cli->tokenizer_path)
        return augur_fail(err, AUGUR_E_INPUT,
                          "--model PATH or --tokenizer FILE is required (see augur tokenize --help)");
    if (cli->n_operands < 1)
        return augur_fail(err, AUGUR_E_INPUT, cli->decode ? "--decode needs token ids" : "no TEXT to tokenize");
    if (!cli->decode && cli->n_operands > 1)
        return augur_fail(err, AUGUR_E_INPUT, "tokenize takes one TEXT argument (quote it), got %d",
                          cli->n_operands);
    return AUGUR_OK;
}

/* Returns ARGS_RUN to continue, else an exit code. */
static int parse_tokenize(int argc, char **argv, tokenize_cli *cli)
{
    *cli = (tokenize_cli){0};
    const arg_spec specs[] = {
        FLAG_STRING("model", &cli->model_path, "PATH", "model directory whose tokenizer.json to use"),
        FLAG_STRING("tokenizer", &cli->tokenizer_path, "FILE",
                    "tokenizer.json or llama2.c tokenizer.bin (instead of, or\n"
                    "overriding, the model's)"),
        FLAG_BOOL("no-special", &cli->no_special, "do not add BOS/EOS as the tokenizer's post-processor says"),
        FLAG_BOOL("decode", &cli->decode, "turn ids back into text (special tokens are kept)"),
        FLAG_HELP,
    };
    /* The ids after --decode may look like flags ("-1"): the first operand ends the flags. */
    const arg_command cmd = {.name = "tokenize", .synopsis = tokenize_synopsis, .specs = specs,
                             .n_specs = sizeof specs / sizeof specs[0], .help_column = 21,
                             .operands = ARGS_OPERANDS_LAST, .check = check_tokenize, .cli = cli};
    return args_parse(&cmd, argc, argv, NULL);
}

static augur_status encode_text(const tokenizer *tok, const char *text, bool add_special, augur_error *err)
{
    int32_t *ids = NULL;
    size_t n = 0;
    augur_status st = tokenizer_encode(tok, text, strlen(text), add_special, &ids, &n, err);
    for (size_t i = 0; !st && i < n; i++)
        printf(i ? " %d" : "%d", ids[i]);
    if (!st)
        putchar('\n');
    free(ids);
    return st;
}

int cmd_tokenize(int argc, char **argv)
{
    augur_error err = {0};
    tokenize_cli cli;
    int rc = parse_tokenize(argc, argv, &cli);
    if (rc != ARGS_RUN)
        return rc;
    char path[1024];
    tokenizer *tok = NULL;
    augur_status st = resolve_tokenizer_path(cli.model_path, cli.tokenizer_path, path, sizeof path, &err);
    if (!st)
        st = tokenizer_load(&tok, path, 0, &err);
    if (!st && cli.decode)
        st = decode_ids(tok, cli.n_operands, cli.operands, &err);
    else if (!st)
        st = encode_text(tok, cli.operands[0], !cli.no_special, &err);
    tokenizer_free(tok);
    return st ? cli_report(&err) : 0;
}
