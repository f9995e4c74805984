/* augur convert: llama2.c checkpoint -> Hugging Face model directory. */
#include <getopt.h>
#include <stdio.h>

#include "launcher/args.h"
#include "launcher/commands.h"
#include "runtime/model/convert_llama2c.h"

static const char convert_usage[] =
    "usage: augur convert --llama2c FILE --out DIR\n"
    "\n"
    "Writes DIR/config.json and DIR/model.safetensors (fp32, Hugging Face Llama\n"
    "names, q/k rows permuted to Hugging Face's rotary layout) from a llama2.c\n"
    "checkpoint, so that transformers and augur's Hugging Face loader can read it.\n"
    "The tokenizer is not converted: pass llama2.c's tokenizer.bin with --tokenizer.\n";

enum { OPT_LLAMA2C = 1000, OPT_OUT };

static const struct option convert_options[] = {
    {"llama2c", required_argument, NULL, OPT_LLAMA2C},
    {"out", required_argument, NULL, OPT_OUT},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

int cmd_convert(int argc, char **argv)
{
    augur_error err = {0};
    const char *src = NULL, *out = NULL;
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "h", convert_options, NULL)) != -1) {
        switch (c) {
        case OPT_LLAMA2C: src = optarg; break;
        case OPT_OUT: out = optarg; break;
        case 'h': fputs(convert_usage, stdout); return 0;
        default:
            augur_fail(&err, AUGUR_E_INPUT, "unknown or incomplete option '%s' (see augur convert --help)",
                       argv[optind - 1]);
            return cli_report(&err);
        }
    }
    if (!src || !out) {
        augur_fail(&err, AUGUR_E_INPUT, "--llama2c FILE and --out DIR are required");
        return cli_report(&err);
    }
    augur_status st = convert_llama2c_to_hf(src, out, &err);
    if (st)
        return cli_report(&err);
    fprintf(stderr, "augur: wrote %s/config.json and %s/model.safetensors\n", out, out);
    return 0;
}
