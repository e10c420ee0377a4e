#include "train/interrupt.h"

#include <signal.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t pending_signal = 0;
static struct sigaction old_int, old_term;
static int installed = 0;

static void on_signal(int sig) {
    if (pending_signal) {
        /* Second signal: the user insists. Only async-signal-safe calls here. */
        static const char msg[] = "\noprm: second interrupt, exiting without saving\n";
        ssize_t w = write(STDERR_FILENO, msg, sizeof msg - 1);
        (void)w;
        _exit(128 + sig);
    }
    pending_signal = sig;
}

void interrupt_install(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    /* SA_RESTART: a signal during a blocking write of a checkpoint must not
     * turn into an EINTR failure of the save. */
    sa.sa_flags = SA_RESTART;
    pending_signal = 0;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    installed = 1;
}

void interrupt_uninstall(void) {
    if (!installed) return;
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    installed = 0;
}

int interrupt_requested(void) { return (int)pending_signal; }

void interrupt_clear(void) { pending_signal = 0; }

int interrupt_exit_code(int sig) { return 128 + sig; }
