/* augur: command-line entry point dispatching to subcommands. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "launcher/commands.h"

static const char usage[] =
    "augur " "0.1.0" " - distributed speculative-decoding inference runtime\n"
    "\n"
    "usage: augur <command> [options]\n"
    "\n"
    "commands:\n"
    "  generate   generate text from a prompt (augur generate --help)\n"
    "  tokenize   print the token ids of a text, or decode ids (augur tokenize --help)\n"
    "  convert    convert a llama2.c checkpoint to a Hugging Face directory (augur convert --help)\n"
    "  trace      summarise a --trace file, or dump it as CSV (augur trace --help)\n"
    "  simulate   replay a --trace file under draft-length rules (augur simulate --help)\n"
    "  logits     write the logits of every prompt position to a file (augur logits --help)\n"
    "  bench      time one rank's forward pass against its memory-bandwidth floor (augur bench --help)\n"
    "  launch     place the ranks of a config's layout on hosts and run mpirun (augur launch --help)\n"
    "  project    project tokens/s and latency over nodes from measured inputs (augur project --help)\n"
    "  serve      an OpenAI-compatible HTTP server under mpirun (augur serve --help)\n"
    "\n"
    "Run `augur <command> --help` for the flags of a command.\n";

int main(int argc, char **argv)
{
    /* NVLink multicast (NVLS) stays off on every path that may start NCCL: its buffers
     * and the fabric state it needs are not available on the machines augur targets, and
     * it must never be switched on by default. Set before MPI or NCCL read the environment. */
    setenv("NCCL_NVLS_ENABLE", "0", 1);
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        fputs(usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "--version")) {
#ifdef AUGUR_HAVE_CUDA
        puts("augur 0.1.0 (backends: cpu, cuda)");
#else
        puts("augur 0.1.0 (backends: cpu)");
#endif
        return 0;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "generate"))
        return cmd_generate(argc - 1, argv + 1);
    if (!strcmp(cmd, "tokenize"))
        return cmd_tokenize(argc - 1, argv + 1);
    if (!strcmp(cmd, "convert"))
        return cmd_convert(argc - 1, argv + 1);
    if (!strcmp(cmd, "trace"))
        return cmd_trace(argc - 1, argv + 1);
    if (!strcmp(cmd, "simulate"))
        return cmd_simulate(argc - 1, argv + 1);
    if (!strcmp(cmd, "logits"))
        return cmd_logits(argc - 1, argv + 1);
    if (!strcmp(cmd, "bench"))
        return cmd_bench(argc - 1, argv + 1);
    if (!strcmp(cmd, "launch"))
        return cmd_launch(argc - 1, argv + 1);
    if (!strcmp(cmd, "project"))
        return cmd_project(argc - 1, argv + 1);
    if (!strcmp(cmd, "serve"))
        return cmd_serve(argc - 1, argv + 1);
    fprintf(stderr, "augur: unknown command '%s' (try augur --help)\n", cmd);
    return 2;
}
