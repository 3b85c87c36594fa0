// SPDX-License-Identifier: MIT
#include <stdarg.h>
#include <stdio.h>

#include "internal.h"

int pinfer_fail(struct pinfer_err *err, int code, const char *fmt, ...)
{
	va_list ap;

	if (code > 0)
		code = -code;
	if (err) {
		err->code = code;
		err->file_off = -1;
		va_start(ap, fmt);
		vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
		va_end(ap);
	}
	return code;
}
