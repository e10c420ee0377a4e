/* The oprm command: one file per subcommand (src/cli/cmd_NAME.c), each
 * defining `int cmd_NAME(int argc, char **argv)` where argv[0] is the
 * subcommand name. Exit codes: 0 success, 1 runtime error, 2 usage error. */
#ifndef OPRM_CLI_H
#define OPRM_CLI_H

#define OPRM_VERSION "0.1.0"

enum { EXIT_OK = 0, EXIT_RUNTIME = 1, EXIT_USAGE = 2 };

int cmd_train(int argc, char **argv);
int cmd_score(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_bon(int argc, char **argv);
int cmd_audit(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_demo(int argc, char **argv);
int cmd_init(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_bench(int argc, char **argv);

#endif
