/* augur tokenize: text to ids (one line, space-separated), or ids back to text. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "launcher/args.h"
#include "launcher/commands.h"
#include "launcher/model_files.h"

static const char tokenize_usage[] =
    "usage: augur tokenize --model PATH [--tokenizer FILE] [--no-special] TEXT\n"
    "       augur tokenize --model PATH [--tokenizer FILE] --decode ID [ID ...]\n"
    "\n"
    "Prints the token ids of TEXT on one line, space-separated; with --decode, prints\n"
    "the text of the given ids.\n"
    "\n"
    "  --model PATH       model directory whose tokenizer.json to use\n"
    "  --tokenizer FILE   tokenizer.json or llama2.c tokenizer.bin (instead of, or\n"
    "                     overriding, the model's)\n"
    "  --no-special       do not add BOS/EOS as the tokenizer's post-processor says\n"
    "  --decode           turn ids back into text (special tokens are kept)\n"
    "  -h, --help         show this help\n";

enum { OPT_MODEL = 1000, OPT_TOKENIZER, OPT_DECODE, OPT_NO_SPECIAL };

static const struct option tokenize_options[] = {
    {"model", required_argument, NULL, OPT_MODEL},
    {"tokenizer", required_argument, NULL, OPT_TOKENIZER},
    {"decode", no_argument, NULL, OPT_DECODE},
    {"no-special", no_argument, NULL, OPT_NO_SPECIAL},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

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

int cmd_tokenize(int argc, char **argv)
{
    augur_error err = {0};
    const char *model_path = NULL, *tok_path = NULL;
    bool decode = false, add_special = true;
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "+h", tokenize_options, NULL)) != -1) {
        switch (c) {
        case OPT_MODEL: model_path = optarg; break;
        case OPT_TOKENIZER: tok_path = optarg; break;
        case OPT_DECODE: decode = true; break;
        case OPT_NO_SPECIAL: add_special = false; break;
        case 'h': fputs(tokenize_usage, stdout); return 0;
        default:
            augur_fail(&err, AUGUR_E_INPUT, "unknown or incomplete option '%s' (see augur tokenize --help)",
                       argv[optind - 1]);
            return cli_report(&err);
        }
    }
    if (!model_path && !tok_path) {
        augur_fail(&err, AUGUR_E_INPUT, "--model PATH or --tokenizer FILE is required (see augur tokenize --help)");
        return cli_report(&err);
    }
    if (optind >= argc) {
        augur_fail(&err, AUGUR_E_INPUT, decode ? "--decode needs token ids" : "no TEXT to tokenize");
        return cli_report(&err);
    }
    char path[1024];
    tokenizer *tok = NULL;
    augur_status st = resolve_tokenizer_path(model_path, tok_path, path, sizeof path, &err);
    if (!st)
        st = tokenizer_load(&tok, path, 0, &err);
    if (!st && decode) {
        st = decode_ids(tok, argc - optind, argv + optind, &err);
    } else if (!st) {
        if (optind + 1 < argc) {
            st = augur_fail(&err, AUGUR_E_INPUT, "tokenize takes one TEXT argument (quote it), got %d",
                            argc - optind);
        } else {
            int32_t *ids = NULL;
            size_t n = 0;
            const char *text = argv[optind];
            st = tokenizer_encode(tok, text, strlen(text), add_special, &ids, &n, &err);
            for (size_t i = 0; !st && i < n; i++)
                printf(i ? " %d" : "%d", ids[i]);
            if (!st)
                putchar('\n');
            free(ids);
        }
    }
    tokenizer_free(tok);
    return st ? cli_report(&err) : 0;
}
