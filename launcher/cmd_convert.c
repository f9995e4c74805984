/* augur convert: llama2.c checkpoint -> Hugging Face model directory. */
#include <stdio.h>

#include "launcher/args.h"
#include "launcher/commands.h"
#include "runtime/model/convert_llama2c.h"

static const char convert_synopsis[] =
    "usage: augur convert --llama2c FILE --out DIR\n"
    "\n"
    "Writes DIR/config.json and DIR/model.safetensors (fp32, Hugging Face Llama\n"
    "names, q/k rows permuted to Hugging Face's rotary layout) from a llama2.c\n"
    "checkpoint, so that transformers and augur's Hugging Face loader can read it.\n"
    "The tokenizer is not converted: pass llama2.c's tokenizer.bin with --tokenizer.\n"
    "\n";

int cmd_convert(int argc, char **argv)
{
    augur_error err = {0};
    const char *src = NULL, *out = NULL;
    const arg_spec specs[] = {
        FLAG_REQUIRED("llama2c", &src, "FILE", "the llama2.c checkpoint (.bin) to read"),
        FLAG_REQUIRED("out", &out, "DIR", "the Hugging Face directory to write (created if missing)"),
        FLAG_HELP,
    };
    const arg_command cmd = {.name = "convert", .synopsis = convert_synopsis, .specs = specs,
                             .n_specs = sizeof specs / sizeof specs[0], .help_column = 21};
    int rc = args_parse(&cmd, argc, argv, NULL);
    if (rc != ARGS_RUN)
        return rc;
    augur_status st = convert_llama2c_to_hf(src, out, &err);
    if (st)
        return cli_report(&err);
    fprintf(stderr, "augur: wrote %s/config.json and %s/model.safetensors\n", out, out);
    return 0;
}
