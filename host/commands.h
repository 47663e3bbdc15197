/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * balloon13d's control commands (commands.c): what each request on the
 * control socket does to the device.  Uses device.h; the device reaches
 * them only through the hooks commands_init() installs.
 */
#ifndef BALLOON13_COMMANDS_H
#define BALLOON13_COMMANDS_H

#include "control.h"
#include "device.h"

/* Install the device hooks the commands need. */
void commands_init(struct b13d *d);
/* The control server's handler (data: the struct b13d). */
void on_control(struct ctl_conn *c, const struct ctl_req *req, void *data);
/* Answer every waiting command with an error; at exit. */
void commands_stop(struct b13d *d, const char *why);

#endif /* BALLOON13_COMMANDS_H */
