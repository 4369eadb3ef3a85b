/* The `acpiread` command (see acpiread.c). */
#ifndef TESTGUEST_ACPIREAD_H
#define TESTGUEST_ACPIREAD_H

/* Runs `acpiread start` or `acpiread rest` (args: after "acpiread "); every
 * output line goes through say(). */
void acpiread(const char *args, void (*say)(const char *line));

#endif
