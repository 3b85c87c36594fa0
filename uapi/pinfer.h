/* SPDX-License-Identifier: (GPL-2.0 WITH Linux-syscall-note) OR MIT */
/*
 * pinfer: the contract between pinfer.ko (/dev/pinfer) and user space.
 *
 * Rules for growing it: structs have fixed sizes and explicit padding;
 * reserved fields must be zero and unknown flags are refused (-EINVAL), so a
 * later version can give them a meaning; capabilities are discovered through
 * PINFER_IOC_VERSION's feature bits, never assumed from the version number.
 */
#ifndef _UAPI_LINUX_PINFER_H
#define _UAPI_LINUX_PINFER_H

#include <linux/ioctl.h>
#include <linux/types.h>

#define PINFER_DEVICE_NAME	"pinfer"
#define PINFER_ABI_VERSION	1

#define PINFER_IOC_MAGIC	0xb7

/* PINFER_IOC_VERSION: what this module speaks. */
struct pinfer_version {
	__u32 abi_version;	/* out: PINFER_ABI_VERSION of the module */
	__u32 reserved;		/* in: 0 */
	__u64 features;		/* out: PINFER_FEAT_* bits */
};

#define PINFER_IOC_VERSION	_IOWR(PINFER_IOC_MAGIC, 0x00, struct pinfer_version)

#endif /* _UAPI_LINUX_PINFER_H */
