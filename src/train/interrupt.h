/* Ctrl-C / SIGTERM for the training loop. The first signal only sets a flag
 * the loop polls between steps (it then saves a checkpoint and exits 130);
 * a second one exits at once with status 128 + signal number, for a user
 * who does not want to wait for the save. */
#ifndef OPRM_TRAIN_INTERRUPT_H
#define OPRM_TRAIN_INTERRUPT_H

/* Installs the SIGINT and SIGTERM handlers (saving the previous ones). */
void interrupt_install(void);
/* Restores the handlers that were there before interrupt_install. */
void interrupt_uninstall(void);
/* The signal number received (SIGINT or SIGTERM), 0 if none. */
int interrupt_requested(void);
/* Forgets a received signal (the next one again only sets the flag). */
void interrupt_clear(void);
/* The conventional exit status for a run stopped by signal sig (130 for SIGINT). */
int interrupt_exit_code(int sig);

#endif
